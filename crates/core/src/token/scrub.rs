//! What Latchkey keeps of a provider's error answer (SECURITY S6): only what RFC 6749 §5.2
//! defines (`error`, `error_description`, `error_uri`), each checked against its character
//! set and scrubbed of every representation of every secret the request carried: as sent,
//! form-encoded, percent-encoded, JSON-escaped, and the Base64 `Authorization: Basic` pair. A
//! provider that echoes its request gets none of them back out of Latchkey. Redaction comes
//! before truncation, so a secret across the cut leaves no prefix; a secret too short to
//! search for (under [`MIN_SCRUBBABLE`] characters) keeps every free text of the provider out.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use serde_json::Value;
use zeroize::Zeroizing;

/// Secrets shorter than this (in characters) are not searched for: they would match ordinary
/// words. When one was sent, the provider's description and URI are not kept at all.
pub const MIN_SCRUBBABLE: usize = 4;
/// A kept `error_description` is at most this many characters (after redaction).
pub const MAX_DESCRIPTION_CHARS: usize = 300;
const MAX_ERROR_CHARS: usize = 100;
const MAX_URI_CHARS: usize = 500;
const REDACTED: &str = "[REDACTED]";

/// The error codes of RFC 6749, 6750, 7009, 8628, 8693 and 9449: the only `error` kept when a
/// secret too short to scrub was sent.
const REGISTERED_ERRORS: &[&str] = &[
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "access_denied",
    "unsupported_response_type",
    "server_error",
    "temporarily_unavailable",
    "invalid_token",
    "insufficient_scope",
    "unsupported_token_type",
    "authorization_pending",
    "slow_down",
    "expired_token",
    "invalid_target",
    "invalid_dpop_proof",
    "use_dpop_nonce",
];

/// The secrets one request carried, in every representation a provider may echo them in.
pub struct Scrubber {
    /// Longest first, so a representation that contains another is replaced whole.
    patterns: Vec<Zeroizing<String>>,
    /// A secret under [`MIN_SCRUBBABLE`] characters was sent: no free text is kept.
    withhold: bool,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrubber").field("patterns", &self.patterns.len()).field("withhold", &self.withhold).finish()
    }
}

/// What Latchkey keeps of a provider's error answer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProviderError {
    pub error: Option<String>,
    pub description: Option<String>,
    pub uri: Option<String>,
}

impl Scrubber {
    /// `secrets`: every secret value the request carried (in a form, a JSON body, a header);
    /// `basic`: the client id and secret sent as `Authorization: Basic`.
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>, basic: Option<(&str, &str)>) -> Scrubber {
        let mut patterns: Vec<Zeroizing<String>> = Vec::new();
        let mut withhold = false;
        let mut add = |s: &str, patterns: &mut Vec<Zeroizing<String>>| {
            if s.is_empty() {
                return;
            }
            if s.chars().count() < MIN_SCRUBBABLE {
                withhold = true;
            }
            patterns.extend(representations(s));
        };
        for s in secrets {
            add(s, &mut patterns);
        }
        if let Some((id, secret)) = basic {
            add(secret, &mut patterns);
            // RFC 6749 §2.3.1 form-encodes both parts before Base64; some clients do not.
            let pairs = [
                Zeroizing::new(format!("{}:{}", form(id).as_str(), form(secret).as_str())),
                Zeroizing::new(format!("{id}:{secret}")),
            ];
            for pair in pairs {
                for engine in [STANDARD, URL_SAFE] {
                    let encoded = Zeroizing::new(engine.encode(pair.as_bytes()));
                    patterns.push(Zeroizing::new(encoded.trim_end_matches('=').to_owned()));
                    patterns.push(encoded);
                }
            }
        }
        patterns.retain(|p| !p.is_empty());
        patterns.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.as_str().cmp(b.as_str())));
        patterns.dedup_by(|a, b| a.as_str() == b.as_str());
        Scrubber { patterns, withhold }
    }

    fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for p in &self.patterns {
            if out.contains(p.as_str()) {
                out = out.replace(p.as_str(), REDACTED);
            }
        }
        out
    }

    /// Whether `text` holds any representation of a secret sent.
    pub fn holds_secret(&self, text: &str) -> bool {
        self.patterns.iter().any(|p| text.contains(p.as_str()))
    }

    /// A provider's free text, safe to keep: every secret redacted, then reduced to RFC 6749
    /// §5.2's characters, redacted again, and cut to [`MAX_DESCRIPTION_CHARS`]. `None` when no
    /// text can be kept safely.
    pub fn text(&self, text: &str) -> Option<String> {
        if self.withhold {
            return None;
        }
        let cleaned: String = self
            .redact(text)
            .chars()
            .map(|c| match c {
                '"' => '\'',
                '\t' | '\n' | '\r' => ' ',
                c if description_char(c) => c,
                _ => '?',
            })
            .collect();
        let mut out = self.redact(&cleaned);
        if out.chars().count() > MAX_DESCRIPTION_CHARS {
            // Only ASCII is left, so a byte index is a character boundary.
            out.truncate(MAX_DESCRIPTION_CHARS - 3);
            out.push_str("...");
        }
        let text = out.trim();
        (!text.is_empty() && !self.holds_secret(text)).then(|| text.to_owned())
    }

    /// The parts of a provider's error answer (RFC 6749 §5.2) that may be kept.
    pub fn provider_error(&self, answer: &Value) -> ProviderError {
        let field = |name: &str| answer.get(name).and_then(Value::as_str);
        let error = field("error").filter(|e| {
            !e.is_empty()
                && e.chars().count() <= MAX_ERROR_CHARS
                && e.chars().all(description_char)
                && if self.withhold { REGISTERED_ERRORS.contains(e) } else { !self.holds_secret(e) }
        });
        let uri = field("error_uri").filter(|u| {
            !self.withhold
                && u.len() <= MAX_URI_CHARS
                && u.chars().all(|c| c != ' ' && description_char(c))
                && !self.holds_secret(u)
                && url::Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "https" | "http"))
        });
        ProviderError {
            error: error.map(str::to_owned),
            description: field("error_description").and_then(|d| self.text(d)),
            uri: uri.map(str::to_owned),
        }
    }
}

/// RFC 6749 §5.2: `error` and `error_description` are %x20-21 / %x23-5B / %x5D-7E (printable
/// ASCII without `"` and `\`); `error_uri` is the same without the space.
fn description_char(c: char) -> bool {
    matches!(c, '\x20'..='\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e')
}

fn form(s: &str) -> Zeroizing<String> {
    Zeroizing::new(url::form_urlencoded::byte_serialize(s.as_bytes()).collect())
}

/// `s` as sent and as a provider may echo it: raw, form-encoded (`+` for a space), strictly
/// percent-encoded (`%20`), both with lower-case hex, and JSON-escaped (as serde writes it,
/// with `\/`, and with non-ASCII as `\uXXXX`).
fn representations(s: &str) -> Vec<Zeroizing<String>> {
    let form = form(s);
    let percent = Zeroizing::new(form.replace('+', "%20"));
    let quoted = Zeroizing::new(serde_json::to_string(s).unwrap_or_default());
    let json = Zeroizing::new(quoted.get(1..quoted.len().saturating_sub(1)).unwrap_or_default().to_owned());
    let escaped = |upper: bool| {
        let mut out = Zeroizing::new(String::new());
        for c in json.chars() {
            if c.is_ascii() {
                out.push(c);
                continue;
            }
            for unit in c.encode_utf16(&mut [0; 2]) {
                out.push_str(&if upper { format!("\\u{unit:04X}") } else { format!("\\u{unit:04x}") });
            }
        }
        out
    };
    vec![
        Zeroizing::new(s.to_owned()),
        lower_hex(&form),
        lower_hex(&percent),
        Zeroizing::new(json.replace('/', "\\/")),
        escaped(false),
        escaped(true),
        json,
        form,
        percent,
    ]
}

/// `%2B` as `%2b`.
fn lower_hex(encoded: &str) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(encoded.len()));
    let mut hex_left = 0;
    for c in encoded.chars() {
        if hex_left > 0 {
            out.push(c.to_ascii_lowercase());
            hex_left -= 1;
        } else {
            if c == '%' {
                hex_left = 2;
            }
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn b64(s: &str) -> String {
        STANDARD.encode(s)
    }

    #[test]
    fn every_representation_of_a_sent_secret_is_redacted() {
        let secret = "p4ss word+&\"\\/é";
        let s = Scrubber::new([secret], Some(("app id", "cl1ent&secret")));
        let form_encoded = "p4ss+word%2B%26%22%5C%2F%C3%A9";
        for echoed in [
            secret.to_owned(),
            form_encoded.to_owned(),
            form_encoded.replace('+', "%20"),
            "p4ss+word%2b%26%22%5c%2f%c3%a9".to_owned(),
            r#"p4ss word+&\"\\/é"#.to_owned(),
            r#"p4ss word+&\"\\\/é"#.to_owned(),
            r#"p4ss word+&\"\\/\u00e9"#.to_owned(),
            r#"p4ss word+&\"\\/\u00E9"#.to_owned(),
            b64("app+id:cl1ent%26secret"),
            b64("app id:cl1ent&secret"),
            "cl1ent%26secret".to_owned(),
        ] {
            let out = s.text(&format!("got <{echoed}> here")).unwrap();
            assert_eq!(out, "got <[REDACTED]> here", "{echoed}");
        }
    }

    #[test]
    fn redaction_comes_before_the_cut_so_no_prefix_survives() {
        let secret = "SECRETVALUE-123456";
        let s = Scrubber::new([secret], None);
        let text = format!("{}{secret} and more", "x".repeat(MAX_DESCRIPTION_CHARS - 5));
        let out = s.text(&text).unwrap();
        assert!(out.len() <= MAX_DESCRIPTION_CHARS, "{}", out.len());
        assert!(!out.contains("SECR"), "{out}");
        // The old order (cut, then redact) left the secret's first five characters.
        let cut_first: String = text.chars().take(MAX_DESCRIPTION_CHARS).collect();
        assert!(cut_first.ends_with("SECRE"));
    }

    #[test]
    fn a_secret_too_short_to_scrub_keeps_every_free_text_out() {
        let s = Scrubber::new(["ab"], None);
        let answer = json!({"error": "invalid_client", "error_description": "client_secret=ab is wrong",
            "error_uri": "https://example.com/ab"});
        let kept = s.provider_error(&answer);
        assert_eq!(kept, ProviderError { error: Some("invalid_client".into()), description: None, uri: None });
        // An `error` that is no registered code could hold it.
        assert_eq!(s.provider_error(&json!({"error": "bad_ab"})).error, None);
        // Empty values are no secret.
        assert_eq!(Scrubber::new([""], None).text("fine"), Some("fine".into()));
    }

    #[test]
    fn only_rfc_6749_fields_and_characters_are_kept() {
        let s = Scrubber::new(["hunter22"], None);
        let answer = json!({"error": "invalid_grant", "error_description": "line\r\nbreak \"quoted\" \\ é\u{0}",
            "error_uri": "https://docs.example.com/errors#grant", "raw": "hunter22 everything else"});
        let kept = s.provider_error(&answer);
        assert_eq!(kept.error.as_deref(), Some("invalid_grant"));
        assert_eq!(kept.description.as_deref(), Some("line  break 'quoted' ? ??"));
        assert_eq!(kept.uri.as_deref(), Some("https://docs.example.com/errors#grant"));
        for bad in ["invalid grant\n", "\"x\"", "é", ""] {
            assert_eq!(s.provider_error(&json!({ "error": bad })).error, None, "{bad:?}");
        }
        assert_eq!(s.provider_error(&json!({"error": "x_hunter22"})).error, None);
        for bad in ["javascript:alert(1)", "https://x.example/?t=hunter22", "https://x.example/a b", "not a uri"] {
            assert_eq!(s.provider_error(&json!({ "error_uri": bad })).uri, None, "{bad}");
        }
        assert_eq!(s.provider_error(&json!({"error": 5, "error_description": ["x"]})), ProviderError::default());
    }

    #[test]
    fn a_secret_that_is_part_of_the_marker_withholds_the_text() {
        let s = Scrubber::new(["REDACTED"], None);
        assert_eq!(s.text("the value REDACTED is wrong"), None);
    }
}
