//! `per_user = true` connectors on the call path, and the setting of a user's values: the
//! user's connection's prepared signer signs (a fixed header or parameter, or Digest with the
//! user's own kept challenge), boxed off the other methods' path; a user's new values are
//! checked, tried with the connector's `verify` call when it has one, and only then stored.

use std::pin::Pin;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::build::Outgoing;
use super::{UpstreamResponse, build, digest, send, sign};
use crate::auth::Prepared;
use crate::auth::per_user::{PerUserAuth, UserSigner, UserValues};
use crate::engine::runtime::ConnectorRuntime;
use crate::engine::{ConnectionView, Engine};
use crate::{CallError, Env, ErrorCode};

/// The most of a refusing upstream's body read, and the most of it shown (scrubbed).
const BODY_READ: usize = 4096;
const BODY_SHOWN: usize = 1024;

type Sent<'a> = Pin<Box<dyn Future<Output = Result<UpstreamResponse, CallError>> + Send + 'a>>;

/// Signs with `owner`'s prepared values and sends; boxed and built out of line, so neither
/// its state nor its code is in `sign_and_send` for the other methods.
#[inline(never)]
pub(super) fn boxed<'a>(
    engine: &'a Engine,
    conn: &'a ConnectorRuntime,
    prepared: &'a Prepared,
    auth: &'a PerUserAuth,
    env: Env,
    owner: &'a str,
    request: &'a mut Outgoing,
) -> Sent<'a> {
    Box::pin(async move {
        let signer = engine.connections.user_signer(env, &conn.name, owner, auth).await?;
        send_signed(engine, conn, prepared, &signer, request).await
    })
}

async fn send_signed(
    engine: &Engine,
    conn: &ConnectorRuntime,
    prepared: &Prepared,
    signer: &UserSigner,
    request: &mut Outgoing,
) -> Result<UpstreamResponse, CallError> {
    match signer {
        UserSigner::Static(s) => {
            sign(s.as_ref(), engine.clock.as_ref(), request)?;
            send::send_outgoing(conn, prepared, request).await
        }
        UserSigner::Digest(d) => digest::boxed(conn, prepared, d, request).await,
    }
}

impl Engine {
    /// A user's own values for a `per_user` connector (`PUT /v1/connections/{connector}`, and
    /// the connect page's form): checked (every field of the method, no other, each bounded
    /// and fit for an HTTP request), prepared, tried with the connector's `verify` call when
    /// it names one, and only then stored, sealed, as the user's connection (made, or its
    /// values replaced). Answers the connection as listings show it (never the values), and
    /// whether it was made now. Nothing is stored when a check or the verify call fails.
    pub async fn put_user_values(
        &self,
        env: Env,
        connector: &str,
        owner: &str,
        given: Vec<(String, SecretString)>,
    ) -> Result<(ConnectionView, bool), CallError> {
        let auth = self.connections.per_user_auth(connector, env)?;
        if owner.is_empty() || owner.len() > 200 {
            return Err(CallError::invalid_params("`user` must name the app's user (1 to 200 characters)"));
        }
        let values = auth.values(given)?;
        let signer = auth.prepare(&values).map_err(|e| CallError::invalid_params(e.message))?;
        let conn = self.connector_for(connector)?;
        if let Some(call) = &conn.config.verify {
            let prepared = conn.credential(env)?;
            self.verify(&conn, prepared, call, owner, &signer, &values).await?;
        }
        self.connections.store_values(env, connector, owner, &values).await
    }

    /// Makes the connector's `verify` call with the new values: an answer below 400 accepts
    /// them; a 4xx is the upstream refusing them (`credentials_refused`, with its status and
    /// its body without the values); a 5xx or no answer means they could not be checked.
    async fn verify(
        &self,
        conn: &ConnectorRuntime,
        prepared: &Prepared,
        call: &str,
        owner: &str,
        signer: &UserSigner,
        values: &UserValues,
    ) -> Result<(), CallError> {
        let compiled = conn.calls.get(call).ok_or_else(|| {
            CallError::new(
                ErrorCode::ConfigInvalid,
                format!("connector `{}`: `verify` names no call `{call}`", conn.name),
            )
        })?;
        let params = build::resolve_params(compiled, &Value::Object(serde_json::Map::new()))?;
        let mut request = build::named(conn, compiled, &params)?;
        build::check_origin(conn, &request.url)?;
        let refused = |status: u16, body: Option<String>| {
            let mut e = CallError::new(
                ErrorCode::CredentialsRefused,
                format!(
                    "the upstream refused the values of user `{owner}` on connector `{}`: its verify call `{call}` answered {status}; nothing was saved: check the values and send them again",
                    conn.name
                ),
            );
            e.details.insert("upstream_status".into(), status.into());
            if let Some(body) = body {
                e.details.insert("upstream_body".into(), body.into());
            }
            e
        };
        let response = match send_signed(self, conn, prepared, signer, &mut request).await {
            Ok(r) => r,
            // Digest's refusal: a 401 to the answer to the upstream's own challenge.
            Err(e) if e.code == ErrorCode::SecretMissing && matches!(signer, UserSigner::Digest(_)) => {
                return Err(refused(401, None));
            }
            Err(mut e) => {
                e.message = format!("{}; the values could not be checked and were not saved", e.message);
                return Err(e);
            }
        };
        let status = response.status.as_u16();
        if status < 400 {
            return Ok(());
        }
        let body = scrub(&read_bounded(response.body).await, values);
        if status >= 500 {
            let mut e = CallError::new(
                ErrorCode::UpstreamUnreachable,
                format!(
                    "the verify call `{call}` of connector `{}` answered {status}: the values could not be checked and were not saved; try again later",
                    conn.name
                ),
            );
            e.details.insert("upstream_status".into(), status.into());
            return Err(e);
        }
        Err(refused(status, Some(body)))
    }
}

/// The first [`BODY_READ`] bytes of a body (what arrives of it; a broken body ends it).
async fn read_bounded(mut body: super::UpstreamBody) -> Bytes {
    let mut out = Vec::new();
    while out.len() < BODY_READ {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    out.extend_from_slice(&data[..data.len().min(BODY_READ - out.len())]);
                }
            }
            _ => break,
        }
    }
    Bytes::from(out)
}

/// A refusing upstream's body as text, without the user's values in any form an upstream
/// could echo them in (as sent, URL-encoded, JSON-escaped, or the Basic pair in base64), at
/// most [`BODY_SHOWN`] characters.
pub(super) fn scrub(body: &[u8], values: &UserValues) -> String {
    let mut text = String::from_utf8_lossy(body).into_owned();
    let secrets: Vec<&SecretString> = values.secrets().collect();
    let mut forms: Vec<String> = Vec::new();
    for s in &secrets {
        let v = s.expose_secret();
        forms.push(v.to_owned());
        forms.push(url::form_urlencoded::byte_serialize(v.as_bytes()).collect());
        forms.push(percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string());
        if let Ok(json) = serde_json::to_string(v) {
            forms.push(json.trim_matches('"').to_owned());
        }
    }
    // Any pair, in either order (Basic's `username:password`), in base64.
    for a in &secrets {
        for b in &secrets {
            let pair = format!("{}:{}", a.expose_secret(), b.expose_secret());
            forms.push(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pair.as_bytes()));
        }
    }
    // Longest first, so that a value inside another's form goes with it.
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    for form in forms.iter().filter(|f| !f.is_empty()) {
        text = text.replace(form.as_str(), "[REDACTED]");
    }
    for f in &mut forms {
        zeroize::Zeroize::zeroize(f);
    }
    text.chars().take(BODY_SHOWN).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn a_refusing_upstreams_body_is_shown_without_the_values_in_any_echoed_form() {
        let config = Config::parse(
            "[connectors.c]\nbase_url = \"https://a.example\"\nper_user = true\nauth = { method = \"basic\" }\n",
            "t.toml",
        )
        .unwrap();
        let crate::auth::Credential::PerUser(auth) = crate::auth::prepare(
            "c",
            &config.connectors["c"],
            Env::Live,
            &Default::default(),
            &Default::default(),
            false,
        )
        .unwrap()
        .credential
        else {
            panic!("not per-user")
        };
        let given = vec![
            ("username".to_owned(), SecretString::from("canary-user")),
            ("password".to_owned(), SecretString::from("canary pw&\"x")),
        ];
        let values = auth.values(given).unwrap();
        let basic = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "canary-user:canary pw&\"x");
        let body = format!(
            r#"{{"raw": "canary pw&\"x", "form": "canary+pw%26%22x", "pct": "canary%20pw%26%22x", "auth": "Basic {basic}", "user": "canary-user", "ok": "refused"}}"#
        );
        let shown = scrub(body.as_bytes(), &values);
        assert!(!shown.contains("canary"), "{shown}");
        assert!(!shown.contains(&basic), "{shown}");
        assert!(shown.contains("\"ok\": \"refused\""), "{shown}");
        assert_eq!(scrub("x".repeat(5000).as_bytes(), &values).len(), BODY_SHOWN);
    }
}
