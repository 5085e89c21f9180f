//! `/mcp`'s session ids, sealed by the vault (docs/decisions.md, "MCP session ids"): what an
//! MCP client declared at `initialize` (whether it takes URL-mode elicitation), the protocol
//! revision agreed, who initialized (a fingerprint of the caller) and when. Any instance with
//! the master key opens one, so `/mcp` stays stateless: no session table, no sticky sessions.
//! Bound to its purpose by the sealing's associated data, so no other sealed value (a console
//! cookie, a connect page's) passes for one.

use latchkey_vault::Aad;
use secrecy::ExposeSecret;

use super::Engine;

/// What a session id opens to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpSession {
    /// Unix milliseconds.
    pub issued_at: i64,
    /// The client declared `capabilities.elicitation.url` at `initialize`.
    pub url_elicitation: bool,
    /// The protocol revision agreed at `initialize`.
    pub protocol_version: String,
    /// [`McpSession::fingerprint`] of the caller that initialized.
    pub caller: String,
}

/// The format's first line: an id of another format never opens.
const VERSION: &str = "mcp-session-1";
/// Longer ids are not opened (a sealed session is about 200 characters).
const MAX_ID: usize = 1024;

fn aad() -> Aad {
    Aad::new("mcp", "session", "id", "")
}

impl McpSession {
    /// Who is calling, as a fingerprint (SHA-256, hex) of its kind, environment and id (a
    /// user's id, or an app key's id): the same caller in every request of a session, whatever
    /// token it presents (access tokens are refreshed within a session).
    pub fn fingerprint(kind: &str, env: crate::Env, id: &str) -> String {
        let text = format!("{kind}\n{}\n{id}", env.as_str());
        latchkey_vault::to_hex(&latchkey_vault::sha256(text.as_bytes()))
    }

    /// Whether this session was initialized by the caller of `fingerprint`.
    pub fn is_of(&self, fingerprint: &str) -> bool {
        latchkey_vault::constant_time_eq(self.caller.as_bytes(), fingerprint.as_bytes())
    }
}

/// A new URL-mode elicitation's id: unique, opaque to the client.
pub fn elicitation_id() -> String {
    format!("lk_connect_{}", latchkey_vault::random::token(16))
}

impl Engine {
    /// The session as an `Mcp-Session-Id`: sealed, then base64url (visible ASCII only, as
    /// the transport requires).
    pub fn seal_mcp_session(&self, session: &McpSession) -> String {
        let text = format!(
            "{VERSION}\n{}\n{}\n{}\n{}",
            session.issued_at,
            u8::from(session.url_elicitation),
            session.protocol_version,
            session.caller
        );
        let sealed = self.vault.seal(&aad(), text.as_bytes());
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sealed)
    }

    /// The session an id holds, or `None` for anything this install did not seal as an MCP
    /// session (another install's, a tampered or truncated one, garbage).
    pub fn open_mcp_session(&self, id: &str) -> Option<McpSession> {
        if id.len() > MAX_ID {
            return None;
        }
        let sealed = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, id).ok()?;
        let opened = self.vault.open(&aad(), &sealed).ok()?;
        let text = std::str::from_utf8(opened.expose_secret()).ok()?;
        let mut parts = text.splitn(5, '\n');
        if parts.next()? != VERSION {
            return None;
        }
        let issued_at = parts.next()?.parse().ok()?;
        let url_elicitation = match parts.next()? {
            "1" => true,
            "0" => false,
            _ => return None,
        };
        let protocol_version = parts.next()?.to_owned();
        let caller = parts.next()?.to_owned();
        Some(McpSession { issued_at, url_elicitation, protocol_version, caller })
    }
}
