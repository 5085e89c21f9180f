//! `oauth2_password`, `oauth2_client_credentials` and `oauth2_custom_token`: their grants with
//! secrets resolved. The requests themselves are built in `grant.rs`.

use http::{HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};

use super::grant::{Client, Grant};
use crate::config::{OAuth2ClientCredentials, OAuth2CustomToken, OAuth2Password};
use crate::secrets::SecretSet;
use crate::template::{Body, Text, Values};
use crate::token::TokenResponseShape;
use crate::{CallError, Env, ErrorCode};

pub(super) fn password(c: &OAuth2Password, env: Env, secrets: &SecretSet) -> Result<(Grant, String), CallError> {
    let password = secrets.resolve(&c.password, env)?.clone();
    let client_secret = c.client_secret.as_ref().map(|r| secrets.resolve(r, env).cloned()).transpose()?;
    let scope = c.scope.as_ref().map(|s| s.joined(" "));
    let id = format!(
        "password|{}|{}|{}|{}|{:?}|{:?}|{}",
        c.token_url,
        c.username,
        password.expose_secret(),
        c.client_id,
        client_secret.as_ref().map(|s| s.expose_secret().to_owned()),
        scope,
        c.client_auth as u8
    );
    let client = Client { id: c.client_id.clone(), secret: client_secret, auth: c.client_auth };
    Ok((Grant::Password { token_url: c.token_url.clone(), username: c.username.clone(), password, client, scope }, id))
}

pub(super) fn client_credentials(
    c: &OAuth2ClientCredentials,
    env: Env,
    secrets: &SecretSet,
) -> Result<(Grant, String), CallError> {
    let secret = secrets.resolve(&c.client_secret, env)?.clone();
    let scope = c.scope.as_ref().map(|s| s.joined(" "));
    let id = format!(
        "client_credentials|{}|{}|{}|{:?}|{:?}|{}",
        c.token_url,
        c.client_id,
        secret.expose_secret(),
        scope,
        c.audience,
        c.client_auth as u8
    );
    let client = Client { id: c.client_id.clone(), secret: Some(secret), auth: c.client_auth };
    Ok((Grant::ClientCredentials { token_url: c.token_url.clone(), client, scope, audience: c.audience.clone() }, id))
}

pub(super) fn custom(c: &OAuth2CustomToken, env: Env, secrets: &SecretSet) -> Result<(Grant, String), CallError> {
    let mut values = Values::new();
    for (name, v) in &c.values {
        values.insert(name.clone(), v.clone());
    }
    let mut sent = Vec::new();
    for (name, r) in &c.secrets {
        let secret = secrets.resolve(r, env)?;
        values.insert(name.clone(), serde_json::Value::String(secret.expose_secret().to_owned()));
        sent.push(secret.clone());
    }
    let template = crate::config::validate::body_template(&c.token_body)
        .map_err(|e| CallError::new(ErrorCode::ConfigInvalid, format!("oauth2_custom_token: token_body {e}")))?;
    let body = SecretString::from(
        serde_json::to_string(&Body::new(template.render_json()).render(&values)).unwrap_or_default(),
    );
    let mut headers = Vec::new();
    for (k, v) in &c.token_headers {
        let text = Text::parse(v).render_value(&values, "a token header")?.unwrap_or_default();
        let mut value = HeaderValue::from_str(&text).map_err(|_| {
            CallError::new(
                ErrorCode::SecretMissing,
                format!("oauth2_custom_token: header `{k}` would contain a line break"),
            )
        })?;
        value.set_sensitive(true);
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| CallError::new(ErrorCode::ConfigInvalid, format!("`{k}` is not a header name")))?;
        headers.push((name, value));
    }
    let mut id = format!("custom|{}|{}|{}|{}", c.token_url, c.token_name, c.expires_in_name, body.expose_secret());
    for (k, v) in &headers {
        id.push_str(&format!("|{k}={}", String::from_utf8_lossy(v.as_bytes())));
    }
    let shape = TokenResponseShape { token_path: c.token_name.clone(), expires_in_path: c.expires_in_name.clone() };
    Ok((Grant::Custom { token_url: c.token_url.clone(), headers, body, shape, secrets: sent }, id))
}
