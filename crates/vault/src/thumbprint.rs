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

#[cfg(test)]
mod tests {
    #[test]
    fn thumbprints_are_base64url_sha1_and_sha256_without_padding() {
        // SHA-1("abc") = a9993e36...9cd0d89d, SHA-256("abc") = ba7816bf...f20015ad (FIPS 180-2).
        let (x5t, s256) = super::x5t(b"abc");
        assert_eq!(x5t, "qZk-NkcGgWq6PiVxeFDCbJzQ2J0");
        assert_eq!(s256, "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
    }
}
