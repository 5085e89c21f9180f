//! Identity signing keys: generated here, held here, sealed for storage here. They sign the
//! user tokens Latchkey issues; their public halves make the JWKS. RS256 (the default: every
//! verifier accepts it), ES256 and EdDSA; never `none` and never a symmetric algorithm.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlg {
    Rs256,
    Es256,
    EdDsa,
}

impl SigningAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::Rs256 => "RS256",
            SigningAlg::Es256 => "ES256",
            SigningAlg::EdDsa => "EdDSA",
        }
    }

    pub fn parse(s: &str) -> Option<SigningAlg> {
        match s {
            "RS256" => Some(SigningAlg::Rs256),
            "ES256" => Some(SigningAlg::Es256),
            "EdDSA" => Some(SigningAlg::EdDsa),
            _ => None,
        }
    }

    fn jwt(self) -> Algorithm {
        match self {
            SigningAlg::Rs256 => Algorithm::RS256,
            SigningAlg::Es256 => Algorithm::ES256,
            SigningAlg::EdDsa => Algorithm::EdDSA,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityKeyError {
    #[error("could not generate a {0} key")]
    Generate(&'static str),
    #[error("the stored {0} key is not usable")]
    Load(&'static str),
    #[error("could not sign the token")]
    Sign,
}

/// One signing key: its id, algorithm, private key (PKCS#8, zeroized on drop) and public JWK.
pub struct SigningKey {
    pub kid: String,
    pub alg: SigningAlg,
    pkcs8: Zeroizing<Vec<u8>>,
    encoding: EncodingKey,
    decoding: DecodingKey,
    jwk: serde_json::Value,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({}, {}, [REDACTED])", self.kid, self.alg.as_str())
    }
}

fn pem(der: &[u8]) -> Zeroizing<String> {
    let b64 = Zeroizing::new(STANDARD.encode(der));
    let mut out = String::from("-----BEGIN PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END PRIVATE KEY-----\n");
    Zeroizing::new(out)
}

impl SigningKey {
    /// A new key with a random id.
    pub fn generate(alg: SigningAlg) -> Result<SigningKey, IdentityKeyError> {
        use aws_lc_rs::encoding::AsDer;
        let der: Vec<u8> = match alg {
            SigningAlg::Rs256 => {
                let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                    .map_err(|_| IdentityKeyError::Generate("RSA"))?;
                let d: aws_lc_rs::encoding::Pkcs8V1Der<'static> =
                    kp.as_der().map_err(|_| IdentityKeyError::Generate("RSA"))?;
                d.as_ref().to_vec()
            }
            SigningAlg::Es256 => {
                let kp = aws_lc_rs::signature::EcdsaKeyPair::generate(
                    &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                )
                .map_err(|_| IdentityKeyError::Generate("P-256"))?;
                kp.to_pkcs8v1().map_err(|_| IdentityKeyError::Generate("P-256"))?.as_ref().to_vec()
            }
            SigningAlg::EdDsa => {
                let kp = aws_lc_rs::signature::Ed25519KeyPair::generate()
                    .map_err(|_| IdentityKeyError::Generate("Ed25519"))?;
                kp.to_pkcs8v1().map_err(|_| IdentityKeyError::Generate("Ed25519"))?.as_ref().to_vec()
            }
        };
        Self::from_pkcs8(&format!("{}-{}", alg.as_str().to_lowercase(), crate::random::token(16)), alg, der)
    }

    /// Loads a key from its PKCS#8 DER (as sealed in the store).
    pub fn from_pkcs8(kid: &str, alg: SigningAlg, der: Vec<u8>) -> Result<SigningKey, IdentityKeyError> {
        let der = Zeroizing::new(der);
        let text = pem(&der);
        let err = || IdentityKeyError::Load(alg.as_str());
        let encoding = match alg {
            SigningAlg::Rs256 => EncodingKey::from_rsa_pem(text.as_bytes()),
            SigningAlg::Es256 => EncodingKey::from_ec_pem(text.as_bytes()),
            SigningAlg::EdDsa => EncodingKey::from_ed_pem(text.as_bytes()),
        }
        .map_err(|_| err())?;
        let mut jwk = Jwk::from_encoding_key(&encoding, alg.jwt()).map_err(|_| err())?;
        jwk.common.key_id = Some(kid.to_owned());
        jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
        let decoding = DecodingKey::from_jwk(&jwk).map_err(|_| err())?;
        let jwk = serde_json::to_value(&jwk).map_err(|_| err())?;
        Ok(SigningKey { kid: kid.to_owned(), alg, pkcs8: der, encoding, decoding, jwk })
    }

    /// The private key as PKCS#8 DER, for sealing into the store (and nowhere else).
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public JWK: `kty`, `kid`, `alg`, `use` and the public parameters only.
    pub fn public_jwk(&self) -> &serde_json::Value {
        &self.jwk
    }

    /// Signs `claims` with header `typ` and this key's `kid`.
    pub fn sign<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, IdentityKeyError> {
        let mut header = Header::new(self.alg.jwt());
        header.typ = Some(typ.to_owned());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|_| IdentityKeyError::Sign)
    }

    /// Verifies a token signed by this key: signature, `iss` and `aud`, and `exp` and `nbf` at
    /// `now_s` (Unix seconds, from the caller's clock: jsonwebtoken would read the wall clock),
    /// with 5 seconds' leeway.
    pub fn verify<T: DeserializeOwned>(
        &self,
        token: &str,
        issuer: &str,
        audience: Option<&str>,
        now_s: i64,
    ) -> Result<T, String> {
        const LEEWAY_S: i64 = 5;
        let mut v = Validation::new(self.alg.jwt());
        v.set_issuer(&[issuer]);
        match audience {
            Some(a) => v.set_audience(&[a]),
            None => v.validate_aud = false,
        }
        v.validate_exp = false;
        v.validate_nbf = false;
        v.set_required_spec_claims(&["exp", "iss", "sub", "nbf", "iat"]);
        let claims = jsonwebtoken::decode::<serde_json::Value>(token, &self.decoding, &v)
            .map(|d| d.claims)
            .map_err(|e| e.to_string())?;
        let time = |name: &str| {
            claims
                .get(name)
                .and_then(serde_json::Value::as_u64)
                .and_then(|t| i64::try_from(t).ok())
                .ok_or_else(|| format!("`{name}` is not a time"))
        };
        if time("exp")? < now_s - LEEWAY_S {
            return Err("ExpiredSignature".into());
        }
        if time("nbf")? > now_s + LEEWAY_S {
            return Err("ImmatureSignature".into());
        }
        serde_json::from_value(claims).map_err(|e| e.to_string())
    }
}

/// The `kid` and `alg` of a token's header, without verifying anything.
pub fn peek_header(token: &str) -> Option<(String, String)> {
    let h = jsonwebtoken::decode_header(token).ok()?;
    Some((h.kid?, format!("{:?}", h.alg)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_signs_verifies_and_publishes_only_public_members() {
        for alg in [SigningAlg::Rs256, SigningAlg::Es256, SigningAlg::EdDsa] {
            let k = SigningKey::generate(alg).unwrap();
            let claims =
                serde_json::json!({"iss": "i", "sub": "s", "aud": "a", "exp": 4_000_000_000u64, "nbf": 1, "iat": 1});
            let t = k.sign("at+jwt", &claims).unwrap();
            let back: serde_json::Value = k.verify(&t, "i", Some("a"), 1_000).unwrap();
            assert_eq!(back["sub"], "s");
            assert!(k.verify::<serde_json::Value>(&t, "other", Some("a"), 1_000).is_err());
            assert!(k.verify::<serde_json::Value>(&t, "i", Some("a"), 4_000_000_005).is_ok(), "within the leeway");
            assert!(k.verify::<serde_json::Value>(&t, "i", Some("a"), 4_000_000_006).is_err(), "expired");
            assert!(k.verify::<serde_json::Value>(&t, "i", Some("a"), -5).is_err(), "not yet valid");
            let jwk = k.public_jwk();
            for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
                assert!(jwk.get(private).is_none(), "{alg:?} JWK has `{private}`: {jwk}");
            }
            assert_eq!(jwk["kid"], k.kid.as_str());
            // Reloading from PKCS#8 gives the same public key.
            let again = SigningKey::from_pkcs8(&k.kid, alg, k.pkcs8().to_vec()).unwrap();
            assert_eq!(again.public_jwk(), jwk);
            assert!(format!("{k:?}").contains("[REDACTED]"));
        }
    }
}
