//! `digest`: RFC 7616 HTTP Digest. MD5 and SHA-256, their `-sess` variants, `qop=auth` (and
//! the RFC 2069 form without `qop`), `userhash`. The challenge comes from the upstream's 401;
//! it is kept here (one per connector and environment, so per origin: a request leaves only for
//! its connector's origin) and reused with an increasing nonce count, so only the first call and
//! a refused nonce cost a round trip (`engine/pipeline/digest.rs` sends). The parser is pure and
//! bounded: hostile challenges are refused, never a panic.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use arc_swap::ArcSwapOption;
use http::{HeaderMap, HeaderValue, Method};
use md5::Digest as _;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::{CallError, ErrorCode};

/// The most of `WWW-Authenticate` read: headers, bytes per header, challenges, parameters.
const MAX_HEADERS: usize = 16;
const MAX_HEADER_LEN: usize = 8 * 1024;
const MAX_CHALLENGES: usize = 16;
const MAX_PARAMS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    fn name(self, sess: bool) -> &'static str {
        match (self, sess) {
            (Algorithm::Md5, false) => "MD5",
            (Algorithm::Md5, true) => "MD5-sess",
            (Algorithm::Sha256, false) => "SHA-256",
            (Algorithm::Sha256, true) => "SHA-256-sess",
        }
    }

    /// The lowercase hex hash of `parts` joined with `:`.
    fn hash(self, parts: &[&[u8]]) -> String {
        let mut joined = Zeroizing::new(Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum()));
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                joined.push(b':');
            }
            joined.extend_from_slice(p);
        }
        match self {
            Algorithm::Md5 => latchkey_vault::to_hex(&md5::Md5::digest(joined.as_slice())[..]),
            Algorithm::Sha256 => latchkey_vault::to_hex(&latchkey_vault::sha256(&joined)),
        }
    }
}

/// A Digest challenge as the upstream sent it, with the nonce count of its uses.
#[derive(Debug)]
pub struct Challenge {
    realm: String,
    nonce: String,
    opaque: Option<String>,
    algorithm: Algorithm,
    sess: bool,
    /// `qop=auth` offered; without it, the RFC 2069 form (no `nc`, no `cnonce`).
    qop_auth: bool,
    userhash: bool,
    nc: AtomicU32,
}

/// What one request's response is computed over.
pub struct Inputs<'a> {
    pub algorithm: Algorithm,
    pub sess: bool,
    pub username: &'a str,
    pub realm: &'a str,
    pub password: &'a str,
    pub nonce: &'a str,
    /// `Some((nc, cnonce))` with `qop=auth`.
    pub qop_auth: Option<(u32, &'a str)>,
    pub method: &'a str,
    pub uri: &'a str,
}

/// The `response` value (RFC 7616 §3.4.1).
pub fn response(i: &Inputs<'_>) -> String {
    let h = |parts: &[&[u8]]| i.algorithm.hash(parts);
    let mut ha1 = Zeroizing::new(h(&[i.username.as_bytes(), i.realm.as_bytes(), i.password.as_bytes()]));
    if i.sess {
        let cnonce = i.qop_auth.map_or("", |(_, c)| c);
        ha1 = Zeroizing::new(h(&[ha1.as_bytes(), i.nonce.as_bytes(), cnonce.as_bytes()]));
    }
    let ha2 = h(&[i.method.as_bytes(), i.uri.as_bytes()]);
    match i.qop_auth {
        Some((nc, cnonce)) => h(&[
            ha1.as_bytes(),
            i.nonce.as_bytes(),
            format!("{nc:08x}").as_bytes(),
            cnonce.as_bytes(),
            b"auth",
            ha2.as_bytes(),
        ]),
        None => h(&[ha1.as_bytes(), i.nonce.as_bytes(), ha2.as_bytes()]),
    }
}

/// Whether `username` can be sent as Digest's quoted `username` (printable ASCII without `"`
/// or `\\`: Latchkey does not send `username*`).
pub fn username_ok(username: &str) -> bool {
    !username.is_empty() && username.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

/// A `Digest` credential: the username and password, and the challenge last received.
pub struct DigestAuth {
    username: String,
    password: SecretString,
    challenge: ArcSwapOption<Challenge>,
}

impl fmt::Debug for DigestAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DigestAuth({}: [REDACTED])", self.username)
    }
}

impl DigestAuth {
    pub(super) fn new(username: &str, password: &SecretString) -> Self {
        DigestAuth { username: username.to_owned(), password: password.clone(), challenge: ArcSwapOption::empty() }
    }

    /// The challenge to sign with before the upstream asks, if one was received.
    pub fn cached(&self) -> Option<Arc<Challenge>> {
        self.challenge.load_full()
    }

    /// Keeps `challenge` for the next requests and hands it back.
    pub fn remember(&self, challenge: Challenge) -> Arc<Challenge> {
        let challenge = Arc::new(challenge);
        self.challenge.store(Some(challenge.clone()));
        challenge
    }

    /// Drops the kept challenge (the upstream refused what was signed with it).
    pub fn forget(&self) {
        self.challenge.store(None);
    }

    /// The `Authorization` header for one request: the next nonce count, a fresh `cnonce`.
    pub fn authorization(&self, c: &Challenge, method: &Method, uri: &str) -> Result<HeaderValue, CallError> {
        let cnonce = latchkey_vault::random::token(32);
        let nc = c.nc.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        let qop_auth = c.qop_auth.then_some((nc, cnonce.as_str()));
        let response = response(&Inputs {
            algorithm: c.algorithm,
            sess: c.sess,
            username: &self.username,
            realm: &c.realm,
            password: self.password.expose_secret(),
            nonce: &c.nonce,
            qop_auth,
            method: method.as_str(),
            uri,
        });
        let username = if c.userhash {
            c.algorithm.hash(&[self.username.as_bytes(), c.realm.as_bytes()])
        } else {
            self.username.clone()
        };
        let mut out = format!(
            "Digest username=\"{}\", realm=\"{}\", uri=\"{}\", algorithm={}, nonce=\"{}\"",
            quote(&username),
            quote(&c.realm),
            quote(uri),
            c.algorithm.name(c.sess),
            quote(&c.nonce)
        );
        if let Some((nc, cnonce)) = qop_auth {
            out.push_str(&format!(", nc={nc:08x}, cnonce=\"{cnonce}\", qop=auth"));
        }
        out.push_str(&format!(", response=\"{response}\""));
        if let Some(opaque) = &c.opaque {
            out.push_str(&format!(", opaque=\"{}\"", quote(opaque)));
        }
        if c.userhash {
            out.push_str(", userhash=true");
        }
        let mut value = HeaderValue::from_str(&out).map_err(|_| {
            CallError::new(
                ErrorCode::InvalidParams,
                "the Digest answer cannot be an HTTP header (the request path or the upstream's challenge holds control characters)",
            )
        })?;
        value.set_sensitive(true);
        Ok(value)
    }
}

/// A quoted-string's content: `"` and `\` escaped.
fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The best Digest challenge among the answer's `WWW-Authenticate` headers (SHA-256 before MD5)
/// and whether it says `stale=true`; `Ok(None)` when there is no Digest challenge, `Err` (what
/// was offered, for the error) when none is one Latchkey can answer.
pub fn challenge(headers: &HeaderMap) -> Result<Option<(Challenge, bool)>, String> {
    let mut best: Option<(Challenge, bool)> = None;
    let mut refused: Option<String> = None;
    let mut seen = 0usize;
    for value in headers.get_all(http::header::WWW_AUTHENTICATE).iter().take(MAX_HEADERS) {
        let bytes = value.as_bytes();
        if bytes.len() > MAX_HEADER_LEN {
            refused.get_or_insert_with(|| "a challenge longer than 8 KiB".to_owned());
            continue;
        }
        for (scheme, params) in parse(bytes) {
            seen += 1;
            if seen > MAX_CHALLENGES {
                break;
            }
            if !scheme.eq_ignore_ascii_case("digest") {
                continue;
            }
            match digest_params(&params) {
                Ok(found) => {
                    let better = best
                        .as_ref()
                        .is_none_or(|(b, _)| b.algorithm == Algorithm::Md5 && found.0.algorithm == Algorithm::Sha256);
                    if better {
                        best = Some(found);
                    }
                }
                Err(why) => {
                    refused.get_or_insert(why);
                }
            }
        }
    }
    match (best, refused) {
        (Some(found), _) => Ok(Some(found)),
        (None, Some(why)) => Err(why),
        (None, None) => Ok(None),
    }
}

fn digest_params(params: &[(String, String)]) -> Result<(Challenge, bool), String> {
    let get = |name: &str| params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
    let (Some(realm), Some(nonce)) = (get("realm"), get("nonce")) else {
        return Err("a Digest challenge without `realm` or `nonce`".to_owned());
    };
    let algorithm = get("algorithm").unwrap_or("MD5");
    let (algorithm, sess) = match algorithm.to_ascii_uppercase().as_str() {
        "MD5" => (Algorithm::Md5, false),
        "MD5-SESS" => (Algorithm::Md5, true),
        "SHA-256" => (Algorithm::Sha256, false),
        "SHA-256-SESS" => (Algorithm::Sha256, true),
        _ => return Err(format!("Digest with algorithm `{}`", printable(algorithm))),
    };
    let qop_auth = match get("qop") {
        None => false,
        Some(q) if q.split(',').any(|o| o.trim().eq_ignore_ascii_case("auth")) => true,
        Some(q) => return Err(format!("Digest with qop `{}` only", printable(q))),
    };
    let flag = |name: &str| get(name).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let challenge = Challenge {
        realm: realm.to_owned(),
        nonce: nonce.to_owned(),
        opaque: get("opaque").map(str::to_owned),
        algorithm,
        sess,
        qop_auth,
        userhash: flag("userhash"),
        nc: AtomicU32::new(0),
    };
    Ok((challenge, flag("stale")))
}

/// At most 40 characters of an upstream's value, for an error message.
fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(40).collect()
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 9110 §11.6.1 challenges: `scheme param=value, param="quoted", ..., scheme2 ...`.
/// Tolerant and bounded: each step consumes at least one byte, at most [`MAX_PARAMS`] per
/// challenge are kept, a value that is not UTF-8 or holds control characters ends the parse.
fn parse(bytes: &[u8]) -> Vec<(String, Vec<(String, String)>)> {
    let mut out: Vec<(String, Vec<(String, String)>)> = Vec::new();
    let mut i = 0;
    let skip = |i: &mut usize, set: &[u8]| {
        while *i < bytes.len() && set.contains(&bytes[*i]) {
            *i += 1;
        }
    };
    while i < bytes.len() && out.len() <= MAX_CHALLENGES {
        skip(&mut i, b" \t,");
        let start = i;
        while i < bytes.len() && is_tchar(bytes[i]) {
            i += 1;
        }
        if start == i {
            // Not a token (token68 padding, stray bytes): step over it.
            i += 1;
            continue;
        }
        let name = String::from_utf8_lossy(&bytes[start..i]).into_owned();
        let mut j = i;
        skip(&mut j, b" \t");
        if j < bytes.len() && bytes[j] == b'=' {
            j += 1;
            skip(&mut j, b" \t");
            let value = if j < bytes.len() && bytes[j] == b'"' {
                j += 1;
                let mut v = Vec::new();
                let mut closed = false;
                while j < bytes.len() {
                    match bytes[j] {
                        b'"' => {
                            closed = true;
                            j += 1;
                            break;
                        }
                        b'\\' if j + 1 < bytes.len() => {
                            v.push(bytes[j + 1]);
                            j += 2;
                        }
                        b => {
                            v.push(b);
                            j += 1;
                        }
                    }
                }
                if !closed {
                    return out;
                }
                v
            } else {
                let s = j;
                while j < bytes.len() && (is_tchar(bytes[j]) || bytes[j] == b'/') {
                    j += 1;
                }
                bytes[s..j].to_vec()
            };
            i = j;
            let Ok(value) = String::from_utf8(value) else { return out };
            if value.chars().any(char::is_control) {
                return out;
            }
            if let Some((_, params)) = out.last_mut()
                && params.len() < MAX_PARAMS
                && !params.iter().any(|(k, _)| k.eq_ignore_ascii_case(&name))
            {
                params.push((name, value));
            }
        } else {
            out.push((name, Vec::new()));
        }
    }
    out
}

#[cfg(test)]
mod tests;
