//! Certificate thumbprints (RFC 7515 §4.1.7–8): `x5t` is the base64url SHA-1 of the DER
//! certificate, `x5t#S256` its SHA-256. SHA-1 here names a certificate, as providers that
//! pick a client's key by it (Microsoft Entra) ask; it protects nothing.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// `x5t` and `x5t#S256` of the DER certificate `der`.
pub fn x5t(der: &[u8]) -> (String, String) {
    let sha1 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
    (URL_SAFE_NO_PAD.encode(sha1.as_ref()), URL_SAFE_NO_PAD.encode(super::sha256(der)))
}
