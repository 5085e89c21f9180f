//! `oauth2_password`, `oauth2_client_credentials` and `oauth2_custom_token`: their grants with
//! secrets resolved. The requests themselves are built in `grant.rs`.

use latchkey_vault::Fingerprint;
use secrecy::{ExposeSecret, SecretString};

use super::grant::Grant;
use super::{client_assertion, signed_jwt};
use crate::config::{OAuth2ClientCredentials, OAuth2CustomToken, OAuth2Password};
use crate::secret::ClientSecret;
use crate::secrets::SecretSet;
use crate::template::Values;
use crate::token::TokenResponseShape;
use crate::{CallError, Env};

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
    let mut secret_values = Vec::new();
    for (name, r) in &c.secrets {
        let secret = secrets.resolve(r, env)?;
        values.insert(name.clone(), serde_json::Value::String(secret.expose_secret().to_owned()));
        sent.push(secret.clone());
        secret_values.push((name.clone(), secret.clone()));
    }
    let templates: Vec<_> = c.token_headers.iter().map(|(k, v)| (k.value().clone(), v.value().clone())).collect();
    // Rendered once here; with `auth.jwt` again per request, with a fresh `<jwt>` (this one,
    // without it, proves the secrets fit their headers and identifies the rest).
    let body = SecretString::from(serde_json::to_string(&c.token_body.body().render(&values)).unwrap_or_default());
    let headers = signed_jwt::render_headers(&templates, &values)?;
    let mut id = Fingerprint::default();
    id.part(b"custom")
        .part(c.token_url.as_str().as_bytes())
        .part(c.token_name.as_bytes())
        .part(c.expires_in_name.as_bytes())
        .part(body.expose_secret().as_bytes());
    for (k, v) in &headers {
        id.part(k.as_str().as_bytes()).part(v.as_bytes());
    }
    if let Some(at) = &c.expires_at_name {
        id.part(b"expires_at").part(at.as_bytes());
    }
    let jwt = match &c.jwt {
        Some(j) => {
            let jwt = signed_jwt::SignedJwt::new(j, secrets.resolve(&j.private_key, env)?, &mut id)?;
            let values = c.values.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            Some(Box::new(signed_jwt::JwtRequest {
                jwt,
                values,
                secret_values,
                headers: templates,
                body: c.token_body.body().clone(),
            }))
        }
        None => None,
    };
    let shape = TokenResponseShape {
        token_path: c.token_name.clone(),
        expires_in_path: c.expires_in_name.clone(),
        expires_at_path: c.expires_at_name.clone(),
        ..TokenResponseShape::default()
    };
    Ok((Grant::Custom { token_url: c.token_url.to_string(), headers, body, shape, secrets: sent, jwt }, id))
}
