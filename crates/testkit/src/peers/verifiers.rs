//! Independent JWT verifiers: tokens minted by Latchkey must verify with standard libraries
//! from its JWKS alone.
//!
//! Each call runs a small script in `crates/testkit/peers/verifiers/` as a child process, with
//! the request as JSON on stdin; the script fetches the JWKS from `jwks_url`, picks the key by
//! the token's `kid` and checks the signature, `exp`, `nbf`, `iat`, `iss` and `aud`, and that
//! every one of `exp iat nbf iss aud sub jti` is present:
//!
//! - [`pyjwt`]: Python, PyPI `PyJWT[crypto]` ([`PYJWT_VERSION`]) with `jwt.PyJWKClient` and
//!   `jwt.decode_complete` (`verify.py`);
//! - [`jose`]: Node, npm `jose` ([`JOSE_VERSION`]) with `createRemoteJWKSet` and `jwtVerify`
//!   (`verify.mjs`).
//!
//! Both block: call them from async tests through `tokio::task::spawn_blocking`. [`verify`]
//! takes a [`Request`], which can also require the header `typ` (`at+jwt`, RFC 9068).
//!
//! A refusal is a [`Verified`] with `ok == false` and `error` = `"<error class>: <message>"`,
//! exactly as the library words it (`alg` header `ES256`, audience `api`, issuer
//! `https://latchkey.test`):
//!
//! | case | PyJWT | jose |
//! | --- | --- | --- |
//! | expired | `ExpiredSignatureError: Signature has expired` | `JWTExpired: "exp" claim timestamp check failed` |
//! | wrong audience | `InvalidAudienceError: Audience doesn't match` | `JWTClaimValidationFailed: unexpected "aud" claim value` |
//! | wrong issuer | `InvalidIssuerError: Invalid issuer` | `JWTClaimValidationFailed: unexpected "iss" claim value` |
//! | unknown `kid` | `PyJWKClientError: Unable to find a signing key that matches: "<kid>"` | `JWKSNoMatchingKey: no applicable key found in the JSON Web Key Set` |
//! | `alg: none` | `InvalidAlgorithmError: The specified alg value is not allowed` | `JOSEAlgNotAllowed: "alg" (Algorithm) Header Parameter value not allowed` |
//! | bad signature (other key, same `kid`; tampered payload) | `InvalidSignatureError: Signature verification failed` | `JWSSignatureVerificationFailed: signature verification failed` |
//! | `typ` not `at+jwt` | `InvalidTokenError: Invalid "typ" header: expected "at+jwt", got "JWT"` | `JWTClaimValidationFailed: unexpected "typ" JWT header value` |
//! | a required claim missing | `MissingRequiredClaimError: Token is missing the "jti" claim` | `JWTClaimValidationFailed: missing required "jti" claim` |
//!
//! PyJWT has no `typ` option: `verify.py` checks it itself the way jose does (case-insensitive,
//! an `application/` prefix ignored).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use super::process::find_program;

/// The PyJWT release `verify.py` is written against (`pip install 'PyJWT[crypto]==2.15.1'`).
pub const PYJWT_VERSION: &str = "2.15.1";
/// The jose release pinned in `crates/testkit/peers/verifiers/package.json`.
pub const JOSE_VERSION: &str = "6.2.18";

const PYJWT_MISSING: &str =
    "PyJWT is not installed: run `pip install 'PyJWT[crypto]==2.15.1'` (or `bash scripts/install-test-peers`)";
const JOSE_MISSING: &str = "jose is not installed: run `npm ci --prefix crates/testkit/peers/verifiers`";

/// The scripts' exit status when their library cannot be loaded.
const EXIT_NOT_INSTALLED: i32 = 3;
/// The scripts' exit status when the request on stdin is malformed.
const EXIT_BAD_INPUT: i32 = 2;

/// The outcome of one verification.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// Whether the library accepted the token.
    pub ok: bool,
    /// The verified payload; `Null` when refused.
    pub claims: Value,
    /// The verified protected header; `Null` when refused.
    pub header: Value,
    /// `"<error class>: <message>"` when refused.
    pub error: Option<String>,
}

impl Verified {
    /// The claims of an accepted token; panics with the library's error otherwise.
    #[track_caller]
    pub fn expect_ok(&self, library: Library) -> &Value {
        assert!(self.ok, "{library:?} refused the token: {}", self.error.as_deref().unwrap_or("(no error)"));
        &self.claims
    }

    /// The library's error of a refused token; panics if it was accepted.
    #[track_caller]
    pub fn expect_refused(&self, library: Library) -> &str {
        assert!(!self.ok, "{library:?} accepted the token: header {} claims {}", self.header, self.claims);
        self.error.as_deref().unwrap_or("")
    }
}

/// Which verifier runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Library {
    /// Python PyJWT ([`pyjwt`]).
    PyJwt,
    /// Node jose ([`jose`]).
    Jose,
}

/// What [`verify`] checks.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Where the JWKS is fetched from.
    pub jwks_url: &'a str,
    /// The compact JWS.
    pub token: &'a str,
    /// The only accepted `iss`.
    pub issuer: &'a str,
    /// The audience that `aud` must contain.
    pub audience: &'a str,
    /// The accepted `alg` values, e.g. `["RS256", "ES256", "EdDSA"]`.
    pub algorithms: &'a [&'a str],
    /// When set, the header `typ` must be this media type (e.g. `at+jwt`; compared
    /// case-insensitively, `application/` optional).
    pub typ: Option<&'a str>,
}

/// Verifies `token` with PyJWT against the JWKS at `jwks_url`. Blocking.
pub fn pyjwt(jwks_url: &str, token: &str, issuer: &str, audience: &str, algorithms: &[&str]) -> Verified {
    verify(Library::PyJwt, &Request { jwks_url, token, issuer, audience, algorithms, typ: None })
}

/// Verifies `token` with jose against the JWKS at `jwks_url`. Blocking.
pub fn jose(jwks_url: &str, token: &str, issuer: &str, audience: &str, algorithms: &[&str]) -> Verified {
    verify(Library::Jose, &Request { jwks_url, token, issuer, audience, algorithms, typ: None })
}

/// Verifies `request.token` with `library`. Blocking.
///
/// Panics when the library is not installed (with the command that installs it; for PyJWT also
/// when `python3` finds another version than [`PYJWT_VERSION`], e.g. Debian's `python3-jwt`) or
/// when the script fails in a way that is not a refusal of the token. An unreachable JWKS is a
/// refusal (`PyJWKClientConnectionError: Fail to fetch data from the url, ...` / `TypeError: fetch
/// failed`), not a panic.
pub fn verify(library: Library, request: &Request<'_>) -> Verified {
    let mut input = json!({
        "jwks_url": request.jwks_url,
        "token": request.token,
        "issuer": request.issuer,
        "audience": request.audience,
        "algorithms": request.algorithms,
    });
    if let Some(typ) = request.typ {
        input["typ"] = json!(typ);
    }
    let dir = script_dir();
    let (program, script, missing) = match library {
        Library::PyJwt => {
            let Some(python3) = find_program("python3", &["/usr/bin/python3"]) else {
                panic!("{PYJWT_MISSING} (no python3 found)");
            };
            (python3, dir.join("verify.py"), PYJWT_MISSING)
        }
        Library::Jose => {
            let Some(node) = find_program("node", &["/usr/bin/node", "/usr/local/bin/node"]) else {
                panic!("{JOSE_MISSING} (no node found)");
            };
            if !dir.join("node_modules").join("jose").join("package.json").is_file() {
                panic!("{JOSE_MISSING} ({} has no node_modules/jose)", dir.display());
            }
            (node, dir.join("verify.mjs"), JOSE_MISSING)
        }
    };
    let output = run_json(&program, &script, &input, missing);
    parse_output(library, &output)
}

/// `crates/testkit/peers/verifiers`.
fn script_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/peers/verifiers"))
}

/// Runs `program script` with `input` on stdin and returns its stdout; panics unless it exits 0.
fn run_json(program: &Path, script: &Path, input: &Value, missing: &str) -> String {
    let what = format!("{} {}", program.display(), script.display());
    let mut child = Command::new(program)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{missing} (cannot run {what}: {e})"));
    // The scripts read all of stdin before they print anything, so this cannot deadlock.
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("cannot write the request to {what}: {e}"));
    let output = child.wait_with_output().unwrap_or_else(|e| panic!("cannot wait for {what}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    match output.status.code() {
        Some(0) => stdout,
        Some(EXIT_NOT_INSTALLED) => panic!("{missing}\n({what} says: {})", stderr.trim()),
        Some(EXIT_BAD_INPUT) => panic!("{what} refused its input {input}: {}", stderr.trim()),
        _ => panic!("{what} failed ({}):\nstdout: {}\nstderr: {}", output.status, stdout.trim(), stderr.trim()),
    }
}

fn parse_output(library: Library, stdout: &str) -> Verified {
    let line = stdout.lines().rev().find(|line| !line.trim().is_empty()).unwrap_or("");
    let value: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("{library:?} verifier printed no JSON result ({e}): {stdout:?}"));
    let Some(ok) = value["ok"].as_bool() else {
        panic!("{library:?} verifier printed a result without a boolean \"ok\": {line}");
    };
    Verified {
        ok,
        claims: value.get("claims").cloned().unwrap_or(Value::Null),
        header: value.get("header").cloned().unwrap_or(Value::Null),
        error: value.get("error").and_then(Value::as_str).map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;
    use std::time::{SystemTime, UNIX_EPOCH};

    use axum::Router;
    use axum::routing::get;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    const ISSUER: &str = "https://latchkey.test";
    const AUDIENCE: &str = "api";
    const ALGORITHMS: [&str; 3] = ["RS256", "ES256", "EdDSA"];
    /// The key of the claim-check cases (expired, wrong audience, ...).
    const CLAIMS_ALG: &str = "ES256";

    /// Tokens signed by keys that are in the JWKS unless said otherwise.
    struct Fixture {
        jwks: Value,
        /// `(alg, good token)` for each of [`ALGORITHMS`].
        good: Vec<(&'static str, String)>,
        /// `(alg, token signed by another key under the same kid)`.
        foreign_same_kid: Vec<(&'static str, String)>,
        /// `(alg, good token with its payload changed)`.
        tampered: Vec<(&'static str, String)>,
        expired: String,
        wrong_audience: String,
        wrong_issuer: String,
        typ_jwt: String,
        missing_jti: String,
        /// Signed by a key that is not in the JWKS, under a kid that is not either.
        unknown_kid: String,
        /// `alg: none`, empty signature, the kid of a key in the JWKS.
        alg_none: String,
    }

    fn kid(alg: &str) -> String {
        format!("{}-key", alg.to_ascii_lowercase())
    }

    #[expect(clippy::disallowed_methods, reason = "a stand-in for another system, which has its own clock")]
    fn now() -> i64 {
        let secs = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs();
        i64::try_from(secs).expect("time fits i64")
    }

    fn claims(iat: i64, lifetime: i64) -> Value {
        json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "jti": format!("jti-{iat}-{lifetime}"),
            "iat": iat, "nbf": iat, "exp": iat + lifetime, "scope": "read",
        })
    }

    /// Runs `sign.py`: a fresh key for `alg`, its public JWK (kid `kid`) and one token per entry.
    fn mint(alg: &str, kid: &str, entries: &[Value]) -> (Value, Vec<String>) {
        let python3 = find_program("python3", &["/usr/bin/python3"]).expect("python3");
        let input = json!({"alg": alg, "kid": kid, "tokens": entries});
        let output = run_json(&python3, &script_dir().join("sign.py"), &input, PYJWT_MISSING);
        let value: Value = serde_json::from_str(output.trim()).expect("sign.py prints JSON");
        let tokens = value["tokens"].as_array().expect("tokens").iter().map(|t| t.as_str().unwrap().to_owned());
        (value["jwk"].clone(), tokens.collect())
    }

    fn b64_json(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(value.to_string())
    }

    /// `token` with its payload's `sub` changed, header and signature kept.
    fn tamper(token: &str) -> String {
        let parts: Vec<&str> = token.split('.').collect();
        let mut payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        payload["sub"] = json!("admin");
        format!("{}.{}.{}", parts[0], b64_json(&payload), parts[2])
    }

    fn fixture() -> &'static Fixture {
        static FIXTURE: OnceLock<Fixture> = OnceLock::new();
        FIXTURE.get_or_init(|| {
            let now = now();
            let good = json!({"claims": claims(now, 600)});
            let mut keys = Vec::new();
            let (mut good_tokens, mut foreign, mut tampered) = (Vec::new(), Vec::new(), Vec::new());
            let mut claim_cases: Vec<String> = Vec::new();
            for alg in ALGORITHMS {
                let mut entries = vec![good.clone()];
                if alg == CLAIMS_ALG {
                    let mut wrong_aud = claims(now, 600);
                    wrong_aud["aud"] = json!("another-api");
                    let mut wrong_iss = claims(now, 600);
                    wrong_iss["iss"] = json!("https://impostor.test");
                    let mut no_jti = claims(now, 600);
                    no_jti.as_object_mut().unwrap().remove("jti");
                    entries.extend([
                        json!({"claims": claims(now - 1200, 600)}),
                        json!({"claims": wrong_aud}),
                        json!({"claims": wrong_iss}),
                        json!({"claims": claims(now, 600), "header": {"typ": "JWT"}}),
                        json!({"claims": no_jti}),
                    ]);
                }
                let (jwk, tokens) = mint(alg, &kid(alg), &entries);
                keys.push(jwk);
                tampered.push((alg, tamper(&tokens[0])));
                good_tokens.push((alg, tokens[0].clone()));
                claim_cases.extend_from_slice(&tokens[1..]);
                let (_, other) = mint(alg, &kid(alg), std::slice::from_ref(&good));
                foreign.push((alg, other[0].clone()));
            }
            let [expired, wrong_audience, wrong_issuer, typ_jwt, missing_jti] =
                <[String; 5]>::try_from(claim_cases).expect("five claim-case tokens");
            let (_, unknown) = mint("RS256", "not-in-jwks", std::slice::from_ref(&good));
            let none_header = json!({"alg": "none", "typ": "at+jwt", "kid": kid(CLAIMS_ALG)});
            let alg_none = format!("{}.{}.", b64_json(&none_header), b64_json(&claims(now, 600)));
            Fixture {
                jwks: json!({"keys": keys}),
                good: good_tokens,
                foreign_same_kid: foreign,
                tampered,
                expired,
                wrong_audience,
                wrong_issuer,
                typ_jwt,
                missing_jti,
                unknown_kid: unknown[0].clone(),
                alg_none,
            }
        })
    }

    /// Mints the tokens (once per test binary) and serves their JWKS on a fresh port of this
    /// test's runtime; returns the JWKS URL.
    async fn serve_jwks() -> (&'static Fixture, String) {
        let fixture = tokio::task::spawn_blocking(fixture).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = Router::new().route("/.well-known/jwks.json", get(|| async { axum::Json(fixture.jwks.clone()) }));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (fixture, format!("http://127.0.0.1:{port}/.well-known/jwks.json"))
    }

    async fn check(library: Library, jwks_url: &str, token: &str, typ: Option<&str>) -> Verified {
        let (jwks_url, token, typ) = (jwks_url.to_owned(), token.to_owned(), typ.map(str::to_owned));
        tokio::task::spawn_blocking(move || {
            let request = Request {
                jwks_url: &jwks_url,
                token: &token,
                issuer: ISSUER,
                audience: AUDIENCE,
                algorithms: &ALGORITHMS,
                typ: typ.as_deref(),
            };
            verify(library, &request)
        })
        .await
        .unwrap()
    }

    async fn accepts_good_tokens(library: Library) {
        let (fixture, jwks_url) = serve_jwks().await;
        for (alg, token) in &fixture.good {
            // `typ` is compared the way RFC 7515 says: case-insensitively, `application/` optional.
            let typ = if *alg == "EdDSA" { "application/AT+JWT" } else { "at+jwt" };
            let verified = check(library, &jwks_url, token, Some(typ)).await;
            let claims = verified.expect_ok(library);
            assert_eq!(claims["sub"], "user-1", "{library:?} {alg}");
            assert_eq!(claims["scope"], "read", "{library:?} {alg}");
            assert_eq!(verified.header["alg"], *alg, "{library:?} {alg}");
            assert_eq!(verified.header["kid"], kid(alg), "{library:?} {alg}");
            assert_eq!(verified.header["typ"], "at+jwt", "{library:?} {alg}");
            assert_eq!(verified.error, None);
        }
        // The plain entry points, without the typ check.
        let (_, token) = &fixture.good[0];
        let by_entry_point = {
            let (jwks_url, token) = (jwks_url.clone(), token.clone());
            tokio::task::spawn_blocking(move || match library {
                Library::PyJwt => pyjwt(&jwks_url, &token, ISSUER, AUDIENCE, &ALGORITHMS),
                Library::Jose => jose(&jwks_url, &token, ISSUER, AUDIENCE, &ALGORITHMS),
            })
            .await
            .unwrap()
        };
        assert_eq!(by_entry_point.expect_ok(library)["iss"], ISSUER);
    }

    /// Every refusal case with the exact error `library` gives.
    async fn refuses_bad_tokens(library: Library, expected: &[(&str, &str)]) {
        let (fixture, jwks_url) = serve_jwks().await;
        let mut cases: Vec<(String, &str, Option<&str>)> = vec![
            ("expired".into(), fixture.expired.as_str(), None),
            ("wrong audience".into(), fixture.wrong_audience.as_str(), None),
            ("wrong issuer".into(), fixture.wrong_issuer.as_str(), None),
            ("unknown kid".into(), fixture.unknown_kid.as_str(), None),
            ("alg none".into(), fixture.alg_none.as_str(), None),
            ("typ JWT".into(), fixture.typ_jwt.as_str(), Some("at+jwt")),
            ("missing jti".into(), fixture.missing_jti.as_str(), None),
        ];
        for (alg, token) in &fixture.foreign_same_kid {
            cases.push((format!("bad signature {alg}"), token.as_str(), None));
        }
        for (alg, token) in &fixture.tampered {
            cases.push((format!("tampered {alg}"), token.as_str(), None));
        }
        for (case, token, typ) in cases {
            let verified = check(library, &jwks_url, token, typ).await;
            let error = verified.expect_refused(library);
            let want = expected
                .iter()
                .find(|(prefix, _)| case.starts_with(prefix))
                .map(|(_, want)| *want)
                .unwrap_or_else(|| panic!("no expected error for {case}"));
            assert_eq!(error, want, "{library:?}, {case}");
            assert_eq!(verified.claims, Value::Null, "{library:?}, {case}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pyjwt_accepts_good_tokens_of_every_alg() {
        accepts_good_tokens(Library::PyJwt).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jose_accepts_good_tokens_of_every_alg() {
        accepts_good_tokens(Library::Jose).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pyjwt_refuses_bad_tokens() {
        refuses_bad_tokens(
            Library::PyJwt,
            &[
                ("expired", "ExpiredSignatureError: Signature has expired"),
                ("wrong audience", "InvalidAudienceError: Audience doesn't match"),
                ("wrong issuer", "InvalidIssuerError: Invalid issuer"),
                ("unknown kid", "PyJWKClientError: Unable to find a signing key that matches: \"not-in-jwks\""),
                ("alg none", "InvalidAlgorithmError: The specified alg value is not allowed"),
                ("typ JWT", "InvalidTokenError: Invalid \"typ\" header: expected \"at+jwt\", got \"JWT\""),
                ("missing jti", "MissingRequiredClaimError: Token is missing the \"jti\" claim"),
                ("bad signature", "InvalidSignatureError: Signature verification failed"),
                ("tampered", "InvalidSignatureError: Signature verification failed"),
            ],
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jose_refuses_bad_tokens() {
        refuses_bad_tokens(
            Library::Jose,
            &[
                ("expired", "JWTExpired: \"exp\" claim timestamp check failed"),
                ("wrong audience", "JWTClaimValidationFailed: unexpected \"aud\" claim value"),
                ("wrong issuer", "JWTClaimValidationFailed: unexpected \"iss\" claim value"),
                ("unknown kid", "JWKSNoMatchingKey: no applicable key found in the JSON Web Key Set"),
                ("alg none", "JOSEAlgNotAllowed: \"alg\" (Algorithm) Header Parameter value not allowed"),
                ("typ JWT", "JWTClaimValidationFailed: unexpected \"typ\" JWT header value"),
                ("missing jti", "JWTClaimValidationFailed: missing required \"jti\" claim"),
                ("bad signature", "JWSSignatureVerificationFailed: signature verification failed"),
                ("tampered", "JWSSignatureVerificationFailed: signature verification failed"),
            ],
        )
        .await;
    }
}
