use http::{HeaderMap, Method};
use latchkey_vault::{MasterKey, Vault};
use url::Url;

use super::*;
use crate::Env;
use crate::auth::sign::Unsigned;
use crate::config::Config;

fn auth(method_table: &str) -> std::sync::Arc<PerUserAuth> {
    let toml = format!("[connectors.c]\nbase_url = \"https://api.example\"\nper_user = true\nauth = {method_table}\n");
    let config = Config::parse(&toml, "t.toml").unwrap();
    match prepare("c", &config.connectors["c"]).unwrap() {
        Credential::PerUser(a) => a,
        other => panic!("{other:?}"),
    }
}

fn given(pairs: &[(&str, &str)]) -> Vec<(String, SecretString)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), SecretString::from(*v))).collect()
}

fn signed(signer: &UserSigner) -> (String, HeaderMap) {
    let UserSigner::Static(s) = signer else { panic!("not static") };
    let mut url = Url::parse("https://api.example/x?a=1").unwrap();
    let mut headers = HeaderMap::new();
    s.sign(&mut Unsigned {
        method: &Method::GET,
        url: &mut url,
        headers: &mut headers,
        body: None,
        clock: &crate::clock::SystemClock,
    })
    .unwrap();
    (url.to_string(), headers)
}

#[test]
fn each_method_signs_with_the_users_values_where_the_method_says() {
    let q = auth(r#"{ method = "api_key_query", name = "appid" }"#);
    assert_eq!(q.fields(), ["key"]);
    assert_eq!(q.owned_header(), None);
    let s = q.prepare(&q.values(given(&[("key", "k&1")])).unwrap()).unwrap();
    assert_eq!(signed(&s).0, "https://api.example/x?a=1&appid=k%261");

    let h = auth(r#"{ method = "api_key_header", name = "X-Api-Key", prefix = "Token" }"#);
    let s = h.prepare(&h.values(given(&[("key", "k2")])).unwrap()).unwrap();
    let (_, headers) = signed(&s);
    assert_eq!(headers["x-api-key"], "Token k2");
    assert!(headers["x-api-key"].is_sensitive());
    assert_eq!(h.owned_header().map(HeaderName::as_str), Some("x-api-key"));

    let b = auth(r#"{ method = "basic" }"#);
    assert_eq!(b.fields(), ["username", "password"]);
    let s = b.prepare(&b.values(given(&[("username", "alice"), ("password", "pw")])).unwrap()).unwrap();
    assert_eq!(signed(&s).1["authorization"], "Basic YWxpY2U6cHc=");

    let d = auth(r#"{ method = "digest" }"#);
    let s = d.prepare(&d.values(given(&[("password", "pw"), ("username", "bob")])).unwrap()).unwrap();
    assert!(matches!(s, UserSigner::Digest(_)), "{s:?}");
}

#[test]
fn values_are_every_field_of_the_method_and_no_other_and_errors_never_show_a_value() {
    let b = auth(r#"{ method = "basic" }"#);
    let e = b.values(given(&[("username", "alice")])).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidParams);
    assert!(e.message.contains("`credentials.password` is missing"), "{}", e.message);
    let e = b.values(given(&[("username", "a"), ("password", "p"), ("key", "canary-k")])).unwrap_err();
    assert!(e.message.contains("`credentials.key` is not a field"), "{}", e.message);
    assert!(e.message.contains("`username` and `password`"), "{}", e.message);
    let e = b.values(given(&[("username", "a:b"), ("password", "p")])).unwrap_err();
    assert!(e.message.contains("cannot contain `:`"), "{}", e.message);
    for bad in ["canary\r\nX-Injected: 1", "canary\0", "canary\u{7f}"] {
        let e = b.values(given(&[("username", "a"), ("password", bad)])).unwrap_err();
        assert!(e.message.contains("`credentials.password` contains line breaks"), "{}", e.message);
        assert!(!e.message.contains("canary"), "{}", e.message);
    }
    let e = b.values(given(&[("username", "a"), ("password", "")])).unwrap_err();
    assert!(e.message.contains("is empty"), "{}", e.message);
    let long = "x".repeat(MAX_VALUE_LEN + 1);
    let e = b.values(given(&[("username", "a"), ("password", &long)])).unwrap_err();
    assert!(e.message.contains("longer than 4096 bytes"), "{}", e.message);
    assert!(b.values(given(&[("username", "a"), ("password", &long[1..])])).is_ok());

    let d = auth(r#"{ method = "digest" }"#);
    let e = d.values(given(&[("username", "a\"b"), ("password", "p")])).unwrap_err();
    assert!(e.message.contains("printable ASCII"), "{}", e.message);
    assert!(
        format!("{:?}", d.values(given(&[("username", "u"), ("password", "canary-p")])).unwrap()).contains("REDACTED")
    );
}

#[test]
fn sealed_values_open_only_for_their_connection_and_their_user() {
    let vault = Vault::new(&MasterKey::generate());
    let h = auth(r#"{ method = "api_key_header", name = "X-Key" }"#);
    let values = h.values(given(&[("key", "canary-sealed")])).unwrap();
    let key = TokenKey { connector: "c".into(), env: Env::Live, connection: "conn_1".into() };
    let sealed = values.seal(&vault, &key, "alice");
    assert!(!sealed.windows(6).any(|w| w == b"canary"));
    let opened = UserValues::open(&vault, &key, "alice", &sealed).unwrap();
    let (_, headers) = signed(&h.prepare(&opened).unwrap());
    assert_eq!(headers["x-key"], "canary-sealed");
    // Another user named on the row, another connection, another environment: not opened.
    assert_eq!(UserValues::open(&vault, &key, "bob", &sealed).unwrap_err(), OpenError::Unreadable);
    let other = TokenKey { connection: "conn_2".into(), ..key.clone() };
    assert!(matches!(UserValues::open(&vault, &other, "alice", &sealed), Err(OpenError::Sealed(_))));
    let dev = TokenKey { env: Env::Dev, ..key.clone() };
    assert!(UserValues::open(&vault, &dev, "alice", &sealed).is_err());
    // A token set sealed under the same key is no user's values.
    let set = crate::token::TokenSet {
        access_token: crate::secret::AccessToken::from("t".to_owned()),
        refresh_token: None,
        token_secret: None,
        token_type: None,
        expires_at: None,
        scope: None,
        extra: Default::default(),
        obtained_at: 0,
        grant: None,
    };
    let token = crate::token::seal(&vault, &key, &set);
    assert_eq!(UserValues::open(&vault, &key, "alice", &token).unwrap_err(), OpenError::Unreadable);
}
