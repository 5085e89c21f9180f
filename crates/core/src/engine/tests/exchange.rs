//! Token exchange (`Engine::exchange_token`): the user's current provider token for a user
//! token of the key's environment on a `token_exchange` connector, each refusal its own, and
//! an event per exchange.

use super::{CONFIG, Harness};
use crate::auth::Credential;
use crate::engine::exchange::Refusal;
use crate::event::EventKind;
use crate::secret::AccessToken;
use crate::store::EventFilter;
use crate::token::TokenSet;
use crate::{Env, ErrorCode};

fn reason(e: &crate::CallError) -> &str {
    e.details["reason"].as_str().unwrap_or_default()
}

/// [`CONFIG`] with `token_exchange = true` on `gh`; `ann` connected there with a token that
/// lives an hour; a user token for `ann` and one for `bob` (no connection).
async fn connected() -> (Harness, String, String) {
    let config = CONFIG.replace("[connectors.gh.auth]", "token_exchange = true\n[connectors.gh.auth]");
    let h = Harness::start(&config).await;
    h.engine.identity().ensure_signing_key().await.unwrap();
    let row = h.connection("ann").await;
    let conn = h.engine.connector("gh").unwrap();
    let Credential::User(auth) = &conn.credential(Env::Live).unwrap().credential else { panic!("gh is per-user") };
    let set = TokenSet {
        access_token: AccessToken::from("provider-at-ann".to_owned()),
        refresh_token: None,
        token_secret: None,
        token_type: Some("bearer".into()),
        expires_at: Some(h.now() + 3_600_000),
        scope: None,
        extra: serde_json::Map::new(),
        obtained_at: h.now(),
        grant: None,
    };
    h.engine.tokens.install(&auth.for_connection(&row.id), set).await.unwrap();
    let mut tokens = Vec::new();
    for user in ["ann", "bob"] {
        h.engine.identity().upsert_user(Env::Live, user, None, serde_json::Value::Null).await.unwrap();
        tokens.push(h.engine.identity().mint_tokens(Env::Live, user).await.unwrap().access_token);
    }
    let bob = tokens.pop().unwrap();
    (h, tokens.pop().unwrap(), bob)
}

#[tokio::test(start_paused = true)]
async fn the_users_provider_token_is_handed_out_with_its_lifetime_and_an_event() {
    let (h, ann, _) = connected().await;
    let x = h.engine.exchange_token(Env::Live, "key_1", &ann, "gh").await.unwrap();
    assert_eq!(secrecy::ExposeSecret::expose_secret(&x.access_token), "provider-at-ann");
    assert_eq!(x.token_type, "bearer");
    assert_eq!(x.expires_in, Some(3600));
    assert_eq!(x.user, "ann");
    let events = h.store_events().await;
    let exchanged: Vec<_> = events.iter().filter(|e| e.kind == EventKind::TokenExchanged).collect();
    assert_eq!(exchanged.len(), 1);
    assert!(
        exchanged[0].detail.contains("key_1") && !exchanged[0].detail.contains("provider-at"),
        "{}",
        exchanged[0].detail
    );
}

#[tokio::test(start_paused = true)]
async fn each_refusal_is_its_own() {
    let (h, ann, bob) = connected().await;
    let e = h.engine.exchange_token(Env::Dev, "key_dev", &ann, "gh").await.unwrap_err();
    assert_eq!((e.code, reason(&e)), (ErrorCode::Forbidden, Refusal::WrongEnvironment.as_str()));
    let e = h.engine.exchange_token(Env::Live, "key_1", &ann, "other").await.unwrap_err();
    assert_eq!((e.code, reason(&e)), (ErrorCode::Forbidden, Refusal::NotExchangeable.as_str()));
    let e = h.engine.exchange_token(Env::Live, "key_1", &ann, "nope").await.unwrap_err();
    assert_eq!((e.code, reason(&e)), (ErrorCode::Forbidden, Refusal::NotExchangeable.as_str()));
    let e = h.engine.exchange_token(Env::Live, "key_1", &bob, "gh").await.unwrap_err();
    assert_eq!((e.code, reason(&e)), (ErrorCode::NotFound, Refusal::NoConnection.as_str()));
    // The user token expires (900 s, and the verifier's minute of leeway): refused, though the
    // provider's token still lives.
    h.clock.advance(961_000);
    let e = h.engine.exchange_token(Env::Live, "key_1", &ann, "gh").await.unwrap_err();
    assert_eq!((e.code, reason(&e)), (ErrorCode::Unauthenticated, Refusal::InvalidSubject.as_str()));
    assert!(!h.store_events().await.iter().any(|e| e.kind == EventKind::TokenExchanged));
}

impl Harness {
    async fn store_events(&self) -> Vec<crate::store::EventRow> {
        use crate::store::TokenStore as _;
        self.store.list_events(&EventFilter { limit: 100, ..EventFilter::default() }).await.unwrap()
    }
}
