//! `oauth2_authorization_code`: the browser flow's pieces that belong to the method: the
//! authorization URL (PKCE S256, `state`, scopes, offline access, extra parameters, `[name]`
//! parameters), the code exchange, the refresh grant, and revocation (RFC 7009).

use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretString};

use super::grant::{Client, Grant, TokenSource};
use crate::config::AuthorizationCode;
use crate::secret::{AccessToken, ClientSecret, PkceVerifier, RefreshToken};
use crate::secrets::SecretSet;
use crate::token::scrub::Scrubber;
use crate::token::{
    AnswerError, MAX_ANSWER, MAX_ANSWER_TEXT, TokenRequest, TokenRequestBody, TokenResponseShape, WireBody,
    read_bounded,
};
use crate::{CallError, Env, ErrorCode};

/// A prepared authorization-code connector: the token source every connection of it uses
/// (with its own key), and the flow settings.
pub struct UserAuth {
    pub template: TokenSource,
    pub config: AuthorizationCode,
}

pub(super) fn grant(
    c: &AuthorizationCode,
    env: Env,
    secrets: &SecretSet,
) -> Result<(Grant, latchkey_vault::Fingerprint), CallError> {
    let secret =
        c.client_secret.as_ref().map(|r| secrets.resolve(r, env).cloned().map(ClientSecret::from)).transpose()?;
    let mut id = latchkey_vault::Fingerprint::default();
    id.part(b"authorization_code")
        .part(c.token_url.as_str().as_bytes())
        .part(c.client_id.as_bytes())
        .opt(secret.as_ref().map(|s| s.expose_secret().as_bytes()))
        .part(&[c.client_auth as u8]);
    let client = super::client_assertion::client(c, &c.client_id, secret, env, secrets, &mut id)?;
    let shape = TokenResponseShape { token_path: c.token_name.clone(), ..TokenResponseShape::default() };
    let scope = c.scope.as_ref().map(|s| s.joined(&c.scope_separator));
    Ok((Grant::AuthorizationCode { token_url: c.token_url.to_string(), client, scope, shape }, id))
}

/// A token to revoke (RFC 7009), whose kind gives the `token_type_hint`.
#[derive(Debug, Clone, Copy)]
pub enum Revocable<'a> {
    Refresh(&'a RefreshToken),
    Access(&'a AccessToken),
}

impl Revocable<'_> {
    fn parts(self) -> (&'static str, SecretString) {
        match self {
            Revocable::Refresh(t) => ("refresh_token", SecretString::from(t.expose_secret())),
            Revocable::Access(t) => ("access_token", SecretString::from(t.expose_secret())),
        }
    }
}

/// `[name]` values must stay inside a host label or path segment.
fn check_param(name: &str, value: &str) -> Result<(), CallError> {
    if value.is_empty()
        || value.len() > 100
        || !value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(CallError::invalid_params(format!(
            "parameter `{name}` of the login URL may use letters, digits, `-`, `_` and `.` only"
        )));
    }
    Ok(())
}

impl UserAuth {
    /// The token source for one connection.
    pub fn for_connection(&self, id: &str) -> TokenSource {
        let mut src = self.template.clone();
        src.key.connection = id.to_owned();
        src
    }

    fn client(&self) -> &Client {
        match &*self.template.grant {
            Grant::AuthorizationCode { client, .. } => client,
            _ => unreachable!("a UserAuth always holds the authorization-code grant"),
        }
    }

    /// Fills `[name]` placeholders of the login URL; refuses unknown or missing ones.
    pub fn login_base(&self, params: &BTreeMap<String, String>) -> Result<url::Url, CallError> {
        let mut out = String::new();
        let mut rest = self.config.authorize_url.as_str();
        while let Some(open) = rest.find('[') {
            let Some(close) = rest[open..].find(']') else { break };
            let name = &rest[open + 1..open + close];
            let value = params.get(name).ok_or_else(|| {
                CallError::invalid_params(format!("the login URL needs parameter `{name}`: pass it in `params`"))
            })?;
            check_param(name, value)?;
            out.push_str(&rest[..open]);
            out.push_str(value);
            rest = &rest[open + close + 1..];
        }
        out.push_str(rest);
        url::Url::parse(&out).map_err(|_| CallError::invalid_params("the login URL with these parameters is not a URL"))
    }

    /// The provider's login URL for one flow.
    pub fn authorize_url(
        &self,
        params: &BTreeMap<String, String>,
        redirect_uri: &str,
        state: &str,
        code_challenge: Option<&str>,
    ) -> Result<String, CallError> {
        let mut url = self.login_base(params)?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code");
            q.append_pair("client_id", &self.config.client_id);
            q.append_pair("redirect_uri", redirect_uri);
            if let Some(scope) = &self.config.scope {
                q.append_pair("scope", &scope.joined(&self.config.scope_separator));
            }
            q.append_pair("state", state);
            if let Some(ch) = code_challenge {
                q.append_pair("code_challenge", ch);
                q.append_pair("code_challenge_method", "S256");
            }
            if self.config.offline_access {
                q.append_pair("access_type", "offline");
                q.append_pair("prompt", "consent");
            }
            for (k, v) in &self.config.extra_authorize_params {
                q.append_pair(k, v);
            }
        }
        Ok(url.into())
    }

    /// The code exchange (RFC 6749 §4.1.3, with the PKCE verifier of RFC 7636 §4.5, which it
    /// consumes); `Err` when the client assertion cannot be signed.
    pub fn code_request(
        &self,
        code: &SecretString,
        redirect_uri: &str,
        verifier: Option<PkceVerifier>,
        now_ms: i64,
    ) -> Result<TokenRequest, CallError> {
        let mut form = vec![
            ("grant_type".to_owned(), SecretString::from("authorization_code".to_owned())),
            ("code".to_owned(), code.clone()),
            ("redirect_uri".to_owned(), SecretString::from(redirect_uri.to_owned())),
        ];
        if let Some(v) = verifier {
            form.push(("code_verifier".to_owned(), v.into_secret()));
        }
        let token_url = self.config.token_url.to_string();
        let basic_auth = self.client().authenticate(&mut form, &token_url, now_ms)?;
        Ok(TokenRequest {
            url: token_url,
            headers: Vec::new(),
            basic_auth,
            body: TokenRequestBody::Form(form),
            shape: TokenResponseShape { token_path: self.config.token_name.clone(), ..TokenResponseShape::default() },
            is_refresh: false,
            secrets: Vec::new(),
        })
    }

    /// The revocation request for `token` (RFC 7009 §2.1), if the connector has a `revoke_url`:
    /// a form of `token` and `token_type_hint` with the client's authentication, as the token
    /// endpoint gets it (a client assertion's audience is the token endpoint). `Err` when the
    /// URL is none (checked when the config was loaded) or the assertion cannot be signed.
    pub fn revocation_request(
        &self,
        token: Revocable<'_>,
        now_ms: i64,
    ) -> Option<Result<http::Request<WireBody>, String>> {
        let url = self.config.revoke_url.as_ref()?;
        let (hint, token) = token.parts();
        let mut form = vec![("token".to_owned(), token), ("token_type_hint".to_owned(), SecretString::from(hint))];
        let basic = match self.client().authenticate(&mut form, self.config.token_url.as_str(), now_ms) {
            Ok(b) => b,
            Err(e) => return Some(Err(e.message)),
        };
        let mut headers = http::HeaderMap::new();
        headers.append(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/x-www-form-urlencoded"));
        if let Some((id, secret)) = basic {
            headers.append(http::header::AUTHORIZATION, crate::token::basic_authorization(&id, &secret));
        }
        Some(crate::token::post(url.as_str(), headers, WireBody::form(&form)))
    }

    /// Revokes `token` at the provider (RFC 7009), if the connector has a `revoke_url`.
    /// Returns `Ok(false)` when there is nothing to call.
    pub async fn revoke(&self, token: Revocable<'_>, now_ms: i64) -> Result<bool, CallError> {
        let Some(request) = self.revocation_request(token, now_ms) else { return Ok(false) };
        let unreachable = || {
            CallError::new(ErrorCode::UpstreamUnreachable, "the provider's revocation endpoint could not be reached")
        };
        let request = request.map_err(|_| unreachable())?;
        let resp = crate::token::execute(&self.template.client, request, self.template.timeout)
            .await
            .map_err(|_| unreachable())?;
        if resp.status().is_success() {
            Ok(true)
        } else {
            Err(CallError::new(
                ErrorCode::UpstreamUnreachable,
                format!("the provider's revocation endpoint answered {}", resp.status().as_u16()),
            ))
        }
    }

    /// Reads the provider's profile with a fresh access token: (user id, email).
    pub async fn profile(&self, access_token: &AccessToken) -> Result<(Option<String>, Option<String>), CallError> {
        let Some(url) = &self.config.profile_url else { return Ok((None, None)) };
        let mut url = url.value().clone();
        let mut headers = http::HeaderMap::new();
        super::apply_token(self.template.token_in, access_token, &mut headers, &mut url)?;
        let resp = self
            .template
            .client
            .get(url)
            .headers(headers)
            .header(http::header::ACCEPT, "application/json")
            .timeout(self.template.timeout)
            .send()
            .await
            .map_err(|_| {
                CallError::new(ErrorCode::UpstreamUnreachable, "the provider's profile endpoint could not be reached")
            })?;
        if !resp.status().is_success() {
            return Err(CallError::new(
                ErrorCode::UpstreamUnreachable,
                format!("the provider's profile endpoint answered {}", resp.status().as_u16()),
            ));
        }
        let bytes = read_bounded(resp, MAX_ANSWER).await.map_err(|e| match e {
            AnswerError::TooLarge => CallError::new(
                ErrorCode::UpstreamUnreachable,
                format!("the provider's profile answer exceeded {MAX_ANSWER_TEXT}; Latchkey read no further: check profile_url"),
            ),
            AnswerError::Cut { .. } => CallError::new(ErrorCode::UpstreamUnreachable, "the profile answer was cut off"),
        })?;
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|_| CallError::new(ErrorCode::UpstreamUnreachable, "the profile is not JSON"))?;
        // A profile that echoes the access token does not make it a user id or an email
        // (SECURITY S6: both are stored in plaintext and shown).
        let sent = Scrubber::new([access_token.expose_secret()], None);
        let at = |path: &str| {
            path.split('.')
                .try_fold(&v, |v, p| v.get(p))
                .and_then(|x| match x {
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .filter(|s| !sent.holds_secret(s))
        };
        Ok((at(&self.config.user_id_path), at(&self.config.user_email_path)))
    }
}
