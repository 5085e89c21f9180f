//! The admin console's sessions (`/console`), sealed into their own cookie by the vault: any
//! instance with the master key opens them, so a console behind a load balancer needs no
//! shared session table and no sticky sessions (docs/decisions.md, "The admin console").
//!
//! A session carries the admin key it was opened with (checked again on every request, exactly
//! as the admin API checks a key: a deleted key ends its sessions), its CSRF token, when it
//! began and when it was last used (idle expiry). It is bound to its purpose by the sealing's
//! associated data, so no other sealed value can pass for one.

use latchkey_vault::{Aad, random};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::Engine;

/// What a session cookie opens to. `Debug` never shows the key or the CSRF token.
pub struct ConsoleSession {
    /// The admin key the operator signed in with.
    pub admin_key: SecretString,
    /// The token every form of this session carries.
    pub csrf: SecretString,
    /// Unix milliseconds.
    pub signed_in_at: i64,
    /// Unix milliseconds: the last request that renewed the cookie.
    pub seen_at: i64,
}

impl std::fmt::Debug for ConsoleSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleSession")
            .field("signed_in_at", &self.signed_in_at)
            .field("seen_at", &self.seen_at)
            .finish_non_exhaustive()
    }
}

/// The format's first line: a session of another format never opens.
const VERSION: &str = "console-session-1";

fn aad() -> Aad {
    Aad::new("console", "session", "cookie", "")
}

/// A random token (about 190 bits) for CSRF tokens and the sign-in form's.
pub fn random_token() -> SecretString {
    SecretString::from(random::token(32))
}

impl ConsoleSession {
    /// A new session for `admin_key`, with a fresh CSRF token.
    pub fn new(admin_key: SecretString, now: i64) -> ConsoleSession {
        ConsoleSession { admin_key, csrf: random_token(), signed_in_at: now, seen_at: now }
    }
}

impl Engine {
    /// The session as the cookie's value: sealed, then base64url.
    pub fn seal_console_session(&self, session: &ConsoleSession) -> String {
        let text = Zeroizing::new(format!(
            "{VERSION}\n{}\n{}\n{}\n{}",
            session.signed_in_at,
            session.seen_at,
            session.csrf.expose_secret(),
            session.admin_key.expose_secret()
        ));
        let sealed = self.vault.seal(&aad(), text.as_bytes());
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sealed)
    }

    /// The session a cookie's value holds, or `None` for anything this install did not seal
    /// as a console session (another install's, a tampered or truncated one, garbage).
    pub fn open_console_session(&self, cookie: &str) -> Option<ConsoleSession> {
        if cookie.len() > 4096 {
            return None;
        }
        let sealed = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, cookie).ok()?;
        let opened = self.vault.open(&aad(), &sealed).ok()?;
        let text = std::str::from_utf8(opened.expose_secret()).ok()?;
        let mut parts = text.splitn(5, '\n');
        if parts.next()? != VERSION {
            return None;
        }
        let signed_in_at = parts.next()?.parse().ok()?;
        let seen_at = parts.next()?.parse().ok()?;
        let csrf = SecretString::from(parts.next()?);
        let admin_key = SecretString::from(parts.next()?);
        Some(ConsoleSession { admin_key, csrf, signed_in_at, seen_at })
    }
}

/// How long the credentials an import found stay sealed in its preview's form (15 minutes):
/// after that, Create asks for the document again.
pub const IMPORT_CREDENTIALS_MS: i64 = 15 * 60 * 1000;
/// The sealed credentials' format: another format never opens.
const IMPORT_VERSION: &str = "console-import-1";
/// Longer sealed credentials are not opened (a few credentials seal to well under this).
const MAX_IMPORT: usize = 64 * 1024;

fn import_aad() -> Aad {
    Aad::new("console", "import", "credentials", "")
}

/// The console session (its admin key's id and CSRF token) sealed credentials belong to, as a
/// SHA-256 fingerprint: another session's form never opens them.
fn import_binding(key_id: &str, csrf: &SecretString) -> String {
    let text = Zeroizing::new(format!("{IMPORT_VERSION}\n{key_id}\n{}", csrf.expose_secret()));
    latchkey_vault::to_hex(&latchkey_vault::sha256(text.as_bytes()))
}

fn b64(bytes: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
}

fn unb64(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, text).ok().map(Zeroizing::new)
}

impl Engine {
    /// The credentials an import found (vault secret name, value), sealed for the console's
    /// import preview to carry to its Create in a hidden field: bound to the console session
    /// (`key_id`, `csrf`), good for [`IMPORT_CREDENTIALS_MS`], base64url. The page holds only
    /// this; the values are never in it.
    pub fn seal_import_credentials(
        &self,
        key_id: &str,
        csrf: &SecretString,
        found: &[(String, SecretString)],
    ) -> String {
        let expires_at = self.now_ms() + IMPORT_CREDENTIALS_MS;
        let mut text = Zeroizing::new(format!("{IMPORT_VERSION}\n{expires_at}\n{}\n", import_binding(key_id, csrf)));
        for (name, value) in found {
            let line = Zeroizing::new(format!("{} {}\n", b64(name.as_bytes()), b64(value.expose_secret().as_bytes())));
            text.push_str(&line);
        }
        b64(&self.vault.seal(&import_aad(), text.as_bytes()))
    }

    /// The credentials [`Engine::seal_import_credentials`] sealed for this console session, or
    /// `None` for anything else: another session's, expired, tampered with, garbage.
    pub fn open_import_credentials(
        &self,
        key_id: &str,
        csrf: &SecretString,
        sealed: &str,
    ) -> Option<Vec<(String, SecretString)>> {
        if sealed.len() > MAX_IMPORT {
            return None;
        }
        let bytes = unb64(sealed)?;
        let opened = self.vault.open(&import_aad(), &bytes).ok()?;
        let text = std::str::from_utf8(opened.expose_secret()).ok()?;
        let mut lines = text.split('\n');
        if lines.next()? != IMPORT_VERSION {
            return None;
        }
        let expires_at: i64 = lines.next()?.parse().ok()?;
        let binding = lines.next()?;
        if !latchkey_vault::constant_time_eq(binding.as_bytes(), import_binding(key_id, csrf).as_bytes())
            || self.now_ms() > expires_at
        {
            return None;
        }
        let mut found = Vec::new();
        for line in lines.filter(|l| !l.is_empty()) {
            let (name, value) = line.split_once(' ')?;
            let name = String::from_utf8(unb64(name)?.to_vec()).ok()?;
            let value = String::from_utf8(unb64(value)?.to_vec()).ok()?;
            found.push((name, SecretString::from(value)));
        }
        Some(found)
    }
}

/// How a value looks percent-encoded in a URL (everything but unreserved characters).
const ENCODED: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// What [`Engine::redact_secrets`] writes in place of a secret.
pub const REDACTED: &str = "[secret]";

impl Engine {
    /// `text` (an upstream's answer shown by the console's "try this call") with every value of
    /// the secrets `connector`'s authentication names, in either environment, replaced by
    /// [`REDACTED`], as written and percent-encoded: an upstream that echoes the request (an
    /// API key header, a key in the query) does not put the secret on the page. A value that
    /// travels transformed (Basic's base64 of `user:password`, an OAuth token) is not
    /// recognised.
    pub fn redact_secrets(&self, connector: &str, text: &str) -> String {
        let runtime = self.mirror.runtime();
        let Some(c) = runtime.connectors.get(connector) else { return text.to_owned() };
        let mut out = text.to_owned();
        for (_, r) in c.config.auth.secret_refs() {
            for env in crate::Env::ALL {
                let Ok(value) = runtime.secrets.resolve(r, env) else { continue };
                let value = value.expose_secret();
                // A value this short would blank out ordinary text; no real secret is.
                if value.len() < 4 {
                    continue;
                }
                let encoded = percent_encoding::utf8_percent_encode(value, ENCODED).to_string();
                for form in [value, encoded.as_str()] {
                    if out.contains(form) {
                        out = out.replace(form, REDACTED);
                    }
                }
            }
        }
        out
    }
}
