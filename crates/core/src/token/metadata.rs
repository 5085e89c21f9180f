//! What Latchkey keeps of a token response besides the tokens (SPEC §8: a connection's
//! `metadata`, shown by the connections API and stored in plaintext): only fields that are no
//! secret, at any depth.
//!
//! The rule, applied to every key of every object, however deep (arrays included):
//! - A key is secret when its lower-cased text contains one of [`SECRET_WORDS`] (`token`,
//!   `secret`, `password`, `passwd`, `assertion`, `code`, `key`, `credential`, `webhook`): so
//!   `access_token`, `authed_user.refresh_token`, `id_token`, `accessToken`, `api_key`,
//!   `client_secret`, `incoming_webhook` (Slack's holds a capability URL).
//! - Except a key that only describes a token: what follows its last secret word is, without
//!   `_`, `-` and `.`, one of [`DESCRIPTIONS`] (`type`, `expiresin`, `expiresat`, `expiry`,
//!   `ttl`, …), and its value is a number, a boolean, null or a string of at most 40
//!   characters: `token_type`, `refresh_token_expires_in`, `accessTokenExpiresAt` are kept.
//! - The configured token paths (`token_name`, dotted) are removed wherever the rule would
//!   keep them, and so is any string that contains one of the tokens issued.

use serde_json::{Map, Value};

/// Words that make a key secret (matched inside the lower-cased key).
pub const SECRET_WORDS: &[&str] =
    &["token", "secret", "password", "passwd", "assertion", "code", "key", "credential", "webhook"];
/// What may follow a key's last secret word, separators removed, for the key to be kept.
pub const DESCRIPTIONS: &[&str] =
    &["type", "expiresin", "expiresat", "expires", "expiry", "expiration", "ttl", "lifetime", "expiresinseconds"];
const MAX_DESCRIBING_STRING: usize = 40;

/// The non-secret fields of `answer`: the rule above, with `token_paths` (dotted) and every
/// string that contains one of `tokens` removed.
pub fn metadata(answer: &Value, token_paths: &[&str], tokens: &[&str]) -> Map<String, Value> {
    let Value::Object(map) = answer else { return Map::new() };
    let mut out = keep_object(map, tokens);
    for path in token_paths {
        remove_path(&mut out, path);
    }
    out
}

/// Whether `key` (with `value`) may be kept.
fn key_allowed(key: &str, value: &Value) -> bool {
    let lower = key.to_ascii_lowercase();
    let Some(end) = SECRET_WORDS.iter().filter_map(|w| lower.rfind(w).map(|at| at + w.len())).max() else {
        return true;
    };
    let rest: String = lower[end..].chars().filter(|c| !matches!(c, '_' | '-' | '.')).collect();
    let describing_value = match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => true,
        Value::String(s) => s.chars().count() <= MAX_DESCRIBING_STRING,
        Value::Array(_) | Value::Object(_) => false,
    };
    DESCRIPTIONS.contains(&rest.as_str()) && describing_value
}

fn keep_object(map: &Map<String, Value>, tokens: &[&str]) -> Map<String, Value> {
    map.iter()
        .filter(|(k, v)| key_allowed(k, v))
        .filter_map(|(k, v)| keep_value(v, tokens).map(|v| (k.clone(), v)))
        .collect()
}

fn keep_value(v: &Value, tokens: &[&str]) -> Option<Value> {
    match v {
        Value::String(s) if tokens.iter().any(|t| !t.is_empty() && s.contains(t)) => None,
        Value::Object(m) => Some(Value::Object(keep_object(m, tokens))),
        Value::Array(items) => Some(Value::Array(items.iter().filter_map(|i| keep_value(i, tokens)).collect())),
        other => Some(other.clone()),
    }
}

fn remove_path(map: &mut Map<String, Value>, dotted: &str) {
    match dotted.split_once('.') {
        None => {
            map.remove(dotted);
        }
        Some((head, rest)) => {
            if let Some(Value::Object(inner)) = map.get_mut(head) {
                remove_path(inner, rest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn slacks_answer_keeps_no_token_at_any_depth() {
        // oauth.v2.access, as Slack documents it.
        let answer = json!({"ok": true, "access_token": "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy",
            "token_type": "bot", "scope": "commands,incoming-webhook", "bot_user_id": "U0KRQLJ9H",
            "app_id": "A0KRD7HC3", "team": {"name": "Slack Softball Team", "id": "T9TK3CUKW"},
            "enterprise": {"name": "slack-sports", "id": "E12345678"},
            "authed_user": {"id": "U1234", "scope": "chat:write", "access_token": "xoxp-1234", "token_type": "user",
                "refresh_token": "xoxe-1-user", "expires_in": 43200},
            "incoming_webhook": {"channel": "#general", "url": "https://hooks.slack.com/services/T/B/secret"},
            "refresh_token": "xoxe-1-bot", "expires_in": 43200});
        let kept = metadata(&answer, &["access_token"], &["xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy"]);
        assert_eq!(
            Value::Object(kept),
            json!({"ok": true, "token_type": "bot", "scope": "commands,incoming-webhook", "bot_user_id": "U0KRQLJ9H",
                "app_id": "A0KRD7HC3", "team": {"name": "Slack Softball Team", "id": "T9TK3CUKW"},
                "enterprise": {"name": "slack-sports", "id": "E12345678"},
                "authed_user": {"id": "U1234", "scope": "chat:write", "token_type": "user", "expires_in": 43200},
                "expires_in": 43200})
        );
    }

    #[test]
    fn keys_naming_a_secret_go_and_keys_describing_one_stay() {
        let answer = json!({
            "accessToken": "a", "IDToken": "b", "api_key": "c", "client_secret": "d", "passwd": "e",
            "code": "f", "assertion": "g", "session_credentials": {"x": 1}, "tokens": ["h"],
            "token_type": "Bearer", "refresh_token_expires_in": 86400, "accessTokenExpiresAt": "2030-01-01T00:00:00Z",
            "x_refresh_token_expires_in": 8726400, "token_type_extra": "i",
            "token_type_long": "a string far longer than forty characters, so not a description",
            "token_expires_in": {"nested": "object"}, "expires_in": 3600, "scope": "read",
            "list": [{"id": 1, "token": "j"}, "plain", "has the issued tok-123 inside"],
            "data": {"t": "tok-456", "user": "ada"}
        });
        let kept = metadata(&answer, &["data.t"], &["tok-123"]);
        assert_eq!(
            Value::Object(kept),
            json!({"token_type": "Bearer", "refresh_token_expires_in": 86400,
                "accessTokenExpiresAt": "2030-01-01T00:00:00Z", "x_refresh_token_expires_in": 8726400,
                "expires_in": 3600, "scope": "read", "list": [{"id": 1}, "plain"], "data": {"user": "ada"}})
        );
    }

    #[test]
    fn an_answer_that_is_no_object_keeps_nothing() {
        assert!(metadata(&json!(["access_token"]), &[], &[]).is_empty());
        assert!(metadata(&Value::Null, &["access_token"], &[]).is_empty());
    }
}
