//! `aws_sigv4`: AWS Signature Version 4 over the whole request (method, path, query, the
//! headers it names, and the payload's SHA-256, or `UNSIGNED-PAYLOAD` for a body that streams
//! through), at the engine's clock. Written over the vault's SHA-256 and HMAC (aws-lc-rs)
//! rather than with the `aws-sigv4` crate (docs/decisions.md says why), and checked against
//! AWS's signing test suite here and against botocore's signer end to end.
//!
//! What is sent is what is signed: the query is re-encoded the way SigV4 canonicalizes it
//! (every byte but `A-Za-z0-9-_.~` percent-encoded, in the caller's order), and for S3 each
//! path segment too, so an upstream that canonicalizes what it received gets the same text.
//! Services other than S3 encode the path once more in the canonical request (and drop empty
//! and dot segments there), as AWS and botocore do; S3 signs the path as sent.
//!
//! With `role_arn` the keys are the temporary credentials of STS `AssumeRole`, obtained and
//! refreshed by the token lifecycle ([`sts`]); the call path signs with them through
//! [`sts::sign_with_token`].
//!

use std::fmt::{self, Write as _};

use http::{HeaderMap, HeaderName, HeaderValue};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, percent_encode};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::sign::{Sign, Unsigned, sensitive_header};
use crate::{CallError, ErrorCode};

/// SigV4's unreserved characters: everything else is percent-encoded.
const AWS: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
/// [`AWS`] keeping `/`: a whole path.
const AWS_PATH: &AsciiSet = &AWS.remove(b'/');

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The payload hash of a body that streams through (not read, so not hashed).
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

const X_AMZ_DATE: HeaderName = HeaderName::from_static("x-amz-date");
const X_AMZ_CONTENT_SHA256: HeaderName = HeaderName::from_static("x-amz-content-sha256");
const X_AMZ_SECURITY_TOKEN: HeaderName = HeaderName::from_static("x-amz-security-token");

/// Where and for what a request is signed: the credential scope's region and service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSigner {
    region: String,
    service: String,
    /// S3 signs the path as sent (no second encoding, no normalization).
    s3: bool,
}

/// The keys one request is signed with: the connector's own, or temporary ones from STS.
pub struct Keys<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    /// The session token (`x-amz-security-token`) of temporary credentials, as a sensitive
    /// header value.
    pub session_token: Option<&'a HeaderValue>,
}

impl AwsSigner {
    pub fn new(region: &str, service: &str) -> AwsSigner {
        AwsSigner { region: region.to_owned(), service: service.to_owned(), s3: service == "s3" }
    }

    /// Signs `request` with `keys` at the clock's time: sets `x-amz-date`,
    /// `x-amz-content-sha256`, `x-amz-security-token` (or removes a caller's) and
    /// `Authorization`; re-encodes the query (and, for S3, the path) as signed.
    pub fn sign_with(&self, keys: &Keys<'_>, request: &mut Unsigned<'_>) -> Result<(), CallError> {
        let amz_date = amz_date(request.clock.now_ms())?;
        let payload_hash = match request.body {
            Some(body) => latchkey_vault::to_hex(&latchkey_vault::sha256(body)),
            None => UNSIGNED_PAYLOAD.to_owned(),
        };
        let headers = &mut *request.headers;
        headers.remove(http::header::AUTHORIZATION);
        headers.insert(X_AMZ_DATE, header_value(&amz_date));
        headers.insert(X_AMZ_CONTENT_SHA256, header_value(&payload_hash));
        match keys.session_token {
            Some(token) => headers.insert(X_AMZ_SECURITY_TOKEN, token.clone()),
            None => headers.remove(X_AMZ_SECURITY_TOKEN),
        };
        let query = encode_query(request.url);
        let uri = self.canonical_uri(request.url);
        let host = host(request.url);
        let signed = signed_headers(&host, headers)?;
        let canonical = canonical_request(request.method.as_str(), &uri, &query, &signed, &payload_hash);
        let scope = format!("{}/{}/{}/aws4_request", &amz_date[..8], self.region, self.service);
        let signature = self.signature(keys.secret_access_key, &amz_date, &scope, &canonical);
        let names: Vec<&str> = signed.iter().map(|(n, _)| n.as_str()).collect();
        let authorization = format!(
            "{ALGORITHM} Credential={}/{scope}, SignedHeaders={}, Signature={signature}",
            keys.access_key_id,
            names.join(";")
        );
        let mut value = HeaderValue::from_str(&authorization).map_err(|_| {
            CallError::new(ErrorCode::ConfigInvalid, "the AWS access key id cannot go into an HTTP header")
        })?;
        // A signature can be replayed for minutes: kept out of HTTP libraries' debug output.
        value.set_sensitive(true);
        headers.insert(http::header::AUTHORIZATION, value);
        Ok(())
    }

    /// The canonical URI: for S3 the path as sent, each segment re-encoded first (and so sent);
    /// for every other service the path without empty and dot segments, encoded again.
    fn canonical_uri(&self, url: &mut url::Url) -> String {
        if self.s3 {
            let encoded: Vec<String> = url
                .path()
                .split('/')
                .map(|segment| percent_encode(&percent_decode_str(segment).collect::<Vec<u8>>(), AWS).to_string())
                .collect();
            let path = encoded.join("/");
            if path != url.path() {
                url.set_path(&path);
            }
            return url.path().to_owned();
        }
        let path = url.path();
        let mut kept: Vec<&str> = Vec::new();
        for segment in path.split('/') {
            match segment {
                "" | "." => {}
                ".." => {
                    kept.pop();
                }
                s => kept.push(s),
            }
        }
        let mut normalized = String::with_capacity(path.len() + 1);
        normalized.push('/');
        normalized.push_str(&kept.join("/"));
        if path.ends_with('/') && !kept.is_empty() {
            normalized.push('/');
        }
        percent_encode(normalized.as_bytes(), AWS_PATH).to_string()
    }

    /// The hex signature of `canonical` (SigV4 §"Calculate the signature").
    fn signature(&self, secret: &str, amz_date: &str, scope: &str, canonical: &str) -> String {
        let string_to_sign = format!(
            "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
            latchkey_vault::to_hex(&latchkey_vault::sha256(canonical.as_bytes()))
        );
        let k_secret = Zeroizing::new(format!("AWS4{secret}"));
        let k_date = Zeroizing::new(latchkey_vault::hmac_sha256(k_secret.as_bytes(), &amz_date.as_bytes()[..8]));
        let k_region = Zeroizing::new(latchkey_vault::hmac_sha256(&*k_date, self.region.as_bytes()));
        let k_service = Zeroizing::new(latchkey_vault::hmac_sha256(&*k_region, self.service.as_bytes()));
        let k_signing = Zeroizing::new(latchkey_vault::hmac_sha256(&*k_service, b"aws4_request"));
        latchkey_vault::to_hex(&latchkey_vault::hmac_sha256(&*k_signing, string_to_sign.as_bytes()))
    }
}

/// `20150830T123600Z` for Unix milliseconds.
fn amz_date(now_ms: i64) -> Result<String, CallError> {
    let t = time::OffsetDateTime::from_unix_timestamp(now_ms.div_euclid(1000))
        .map_err(|_| CallError::internal("the clock is out of range for an x-amz-date"))?;
    Ok(format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    ))
}

#[expect(clippy::expect_used, reason = "digits, hex and `UNSIGNED-PAYLOAD` are header values")]
fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).expect("ASCII")
}

/// The `Host` the upstream client sends: the host, and the port when it is not the scheme's.
fn host(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    }
}

/// Re-encodes the URL's query as SigV4 canonicalizes each name and value (form-decoded, then
/// every byte but the unreserved ones percent-encoded), in the caller's order, and returns
/// the canonical query: the pairs sorted by name, then value.
fn encode_query(url: &mut url::Url) -> String {
    let Some(query) = url.query() else { return String::new() };
    // Form-decoded to bytes (not through UTF-8, so a `%FF` stays that byte), then encoded.
    let encode = |part: &str| {
        let spaced = part.replace('+', " ");
        percent_encode(&percent_decode_str(&spaced).collect::<Vec<u8>>(), AWS).to_string()
    };
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (encode(k), encode(v))
        })
        .collect();
    let sent = join_pairs(&pairs);
    if sent.is_empty() {
        url.set_query(None);
    } else if Some(sent.as_str()) != url.query() {
        url.set_query(Some(&sent));
    }
    pairs.sort();
    join_pairs(&pairs)
}

fn join_pairs(pairs: &[(String, String)]) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        let _ = write!(out, "{k}={v}");
    }
    out
}

/// The headers signed, lower-case and sorted, each with its values trimmed, inner runs of
/// spaces collapsed and joined with `,`: `host`, `content-type` and `content-md5` when sent,
/// and every `x-amz-*` header. The others are left unsigned, so a hop that rewrites one
/// (`user-agent`, `accept-encoding`) breaks nothing.
fn signed_headers(host: &str, headers: &HeaderMap) -> Result<Vec<(String, String)>, CallError> {
    let mut out = vec![("host".to_owned(), host.to_owned())];
    for name in headers.keys() {
        let n = name.as_str();
        if !(n.starts_with("x-amz-") || n == "content-type" || n == "content-md5") {
            continue;
        }
        let mut values = Vec::new();
        for v in headers.get_all(name) {
            let text = v.to_str().map_err(|_| {
                CallError::invalid_params(format!(
                    "header `{n}` has bytes outside visible ASCII, which AWS Signature Version 4 cannot sign: send it as ASCII"
                ))
            })?;
            values.push(text.split_ascii_whitespace().collect::<Vec<_>>().join(" "));
        }
        out.push((n.to_owned(), values.join(",")));
    }
    out.sort();
    Ok(out)
}

/// The canonical request: method, URI, query, the headers (`name:value` lines, then a blank
/// line), their names, and the payload hash.
fn canonical_request(method: &str, uri: &str, query: &str, headers: &[(String, String)], payload: &str) -> String {
    let mut out = format!("{method}\n{uri}\n{query}\n");
    for (n, v) in headers {
        let _ = writeln!(out, "{n}:{v}");
    }
    let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
    let _ = write!(out, "\n{}\n{payload}", names.join(";"));
    out
}

/// `aws_sigv4` with the connector's own keys, prepared once. `Debug` shows the key id and
/// scope only.
pub struct StaticKeys {
    signer: AwsSigner,
    access_key_id: String,
    secret_access_key: SecretString,
    session_token: Option<HeaderValue>,
}

impl StaticKeys {
    pub(crate) fn new(
        signer: AwsSigner,
        access_key_id: &str,
        secret_access_key: &SecretString,
        session_token: Option<&SecretString>,
    ) -> Result<StaticKeys, CallError> {
        let session_token = match session_token {
            Some(t) => Some(sensitive_header(t.expose_secret(), "the AWS session token")?),
            None => None,
        };
        Ok(StaticKeys {
            signer,
            access_key_id: access_key_id.to_owned(),
            secret_access_key: secret_access_key.clone(),
            session_token,
        })
    }
}

impl fmt::Debug for StaticKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AwsSigV4({}, {}/{}: [REDACTED])", self.access_key_id, self.signer.region, self.signer.service)
    }
}

impl Sign for StaticKeys {
    fn sign(&self, request: &mut Unsigned<'_>) -> Result<(), CallError> {
        let keys = Keys {
            access_key_id: &self.access_key_id,
            secret_access_key: self.secret_access_key.expose_secret(),
            session_token: self.session_token.as_ref(),
        };
        self.signer.sign_with(&keys, request)
    }

    fn owned_header(&self) -> Option<&HeaderName> {
        Some(&http::header::AUTHORIZATION)
    }
}

pub mod sts;

#[cfg(test)]
mod tests;
