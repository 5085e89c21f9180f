//! `oauth2_password`, `oauth2_client_credentials` and `oauth2_custom_token`: their grants with
//! secrets resolved. The requests themselves are built in `grant.rs`.

use http::HeaderValue;
use latchkey_vault::Fingerprint;
use secrecy::{ExposeSecret, SecretString};

use super::client_assertion;
use super::grant::Grant;
use crate::config::{OAuth2ClientCredentials, OAuth2CustomToken, OAuth2Password};
use crate::secret::ClientSecret;
use crate::secrets::SecretSet;
use crate::template::Values;
use crate::token::TokenResponseShape;
use crate::{CallError, Env, ErrorCode};

pub(super) fn password(c: &OAuth2Password, env: Env, secrets: &SecretSet) -> Result<(Grant, Fingerprint), CallError> {
    let password = secrets.resolve(&c.password, env)?.clone();
    let client_secret =
        c.client_secret.as_ref().map(|r| secrets.resolve(r, env).cloned().map(ClientSecret::from)).transpose()?;
    let scope = c.scope.as_ref().map(|s| s.joined(" "));
    let mut id = Fingerprint::default();
    id.part(b"password")
        .part(c.token_url.as_str().as_bytes())
        .part(c.username.as_bytes())
        .part(password.expose_secret().as_bytes())
        .part(c.client_id.as_bytes())
        .opt(client_secret.as_ref().map(|s| s.expose_secret().as_bytes()))
        .opt(scope.as_ref().map(|s| s.as_bytes()))
        .part(&[c.client_auth as u8]);
    let client = client_assertion::client(c, &c.client_id, client_secret, env, secrets, &mut id)?;
    Ok((
        Grant::Password { token_url: c.token_url.to_string(), username: c.username.clone(), password, client, scope },
        id,
    ))
}

pub(super) fn client_credentials(
    c: &OAuth2ClientCredentials,
    env: Env,
    secrets: &SecretSet,
) -> Result<(Grant, Fingerprint), CallError> {
    let secret =
        c.client_secret.as_ref().map(|r| secrets.resolve(r, env).cloned().map(ClientSecret::from)).transpose()?;
    let scope = c.scope.as_ref().map(|s| s.joined(" "));
    let mut id = Fingerprint::default();
    id.part(b"client_credentials")
        .part(c.token_url.as_str().as_bytes())
        .part(c.client_id.as_bytes())
        .part(secret.as_ref().map_or(&b""[..], |s| s.expose_secret().as_bytes()))
        .opt(scope.as_ref().map(|s| s.as_bytes()))
        .opt(c.audience.as_ref().map(|s| s.as_bytes()))
        .part(&[c.client_auth as u8]);
    let client = client_assertion::client(c, &c.client_id, secret, env, secrets, &mut id)?;
    Ok((
        Grant::ClientCredentials { token_url: c.token_url.to_string(), client, scope, audience: c.audience.clone() },
        id,
    ))
}

pub(super) fn custom(c: &OAuth2CustomToken, env: Env, secrets: &SecretSet) -> Result<(Grant, Fingerprint), CallError> {
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
    let body = SecretString::from(serde_json::to_string(&c.token_body.body().render(&values)).unwrap_or_default());
    let mut headers = Vec::new();
    for (k, v) in &c.token_headers {
        let text = v.render_value(&values, "a token header")?.unwrap_or_default();
        let mut value = HeaderValue::from_str(&text).map_err(|_| {
            CallError::new(
                ErrorCode::SecretMissing,
                format!("oauth2_custom_token: header `{k}` would contain a line break"),
            )
        })?;
        value.set_sensitive(true);
        headers.push((k.value().clone(), value));
    }
    let mut id = Fingerprint::default();
    id.part(b"custom")
        .part(c.token_url.as_str().as_bytes())
        .part(c.token_name.as_bytes())
        .part(c.expires_in_name.as_bytes())
        .part(body.expose_secret().as_bytes());
    for (k, v) in &headers {
        id.part(k.as_str().as_bytes()).part(v.as_bytes());
    }
    let shape = TokenResponseShape { token_path: c.token_name.clone(), expires_in_path: c.expires_in_name.clone() };
    Ok((Grant::Custom { token_url: c.token_url.to_string(), headers, body, shape, secrets: sent }, id))
}
