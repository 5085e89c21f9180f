//! The base string against RFC 5849's examples (§1.2, §3.4.1), each signature method, and
//! where the protocol parameters go.

use super::*;

/// RFC 5849 §3.4.1.1's example request's base string.
const RFC_BASE: &str = "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q%26a3%3Da%26b5%3D%253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_key%3D9djdj82h48djs9d2%26oauth_nonce%3D7d8f3e4a%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D137131201%26oauth_token%3Dkkk9d7dh3k39sjv7";

fn auth(method: SignatureMethod, signature_in: SignatureIn, key: Key) -> OAuth1Auth {
    OAuth1Auth {
        consumer_key: "9djdj82h48djs9d2".into(),
        key,
        method,
        signature_in,
        token: Some((SecretString::from("kkk9d7dh3k39sjv7"), SecretString::from("dh893hdasih9"))),
        flow: None,
    }
}

fn secret() -> Key {
    Key::Secret(SecretString::from("j49sk3j29djd"))
}

/// Signs the RFC's §3.4.1.1 request (nonce and time as there); returns URL, headers, body.
fn sign_rfc_request(a: &OAuth1Auth) -> Result<(Url, HeaderMap, Bytes), CallError> {
    let mut url = Url::parse("http://EXAMPLE.com:80/request?b5=%3D%253D&a3=a&c%40=&a2=r%20b").unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, "application/x-www-form-urlencoded".parse().unwrap());
    let mut body = Bytes::from_static(b"c2&a3=2+q");
    a.sign_with_nonce(
        Request {
            method: &Method::POST,
            url: &mut url,
            headers: &mut headers,
            body: Some(&mut body),
            now_s: 137131201,
        },
        a.app_token(),
        &[],
        "7d8f3e4a",
    )?;
    Ok((url, headers, body))
}

/// The protocol parameters of an `Authorization: OAuth` header, decoded.
fn header_params(headers: &HeaderMap) -> Vec<(String, String)> {
    let v = headers[AUTHORIZATION].to_str().unwrap();
    let rest = v.strip_prefix("OAuth ").unwrap();
    rest.split(", ")
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            let v = v.trim_matches('"');
            (k.to_owned(), percent_encoding::percent_decode_str(v).decode_utf8().unwrap().into_owned())
        })
        .collect()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn the_base_string_of_rfc_5849_section_3_4_1() {
    let url = Url::parse("http://EXAMPLE.COM/request?b5=%3D%253D&a3=a&c%40=&a2=r%20b").unwrap();
    let mut params: Vec<(String, String)> = url.query_pairs().map(|(k, v)| (k.into(), v.into())).collect();
    params.extend(url::form_urlencoded::parse(b"c2&a3=2+q").map(|(k, v)| (k.into(), v.into())));
    for (k, v) in [
        ("oauth_consumer_key", "9djdj82h48djs9d2"),
        ("oauth_token", "kkk9d7dh3k39sjv7"),
        ("oauth_signature_method", "HMAC-SHA1"),
        ("oauth_timestamp", "137131201"),
        ("oauth_nonce", "7d8f3e4a"),
    ] {
        params.push((k.into(), v.into()));
    }
    let n = normalized(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    // §3.4.1.3.2's normalized parameters.
    assert_eq!(
        n,
        "a2=r%20b&a3=2%20q&a3=a&b5=%3D%253D&c%40=&c2=&oauth_consumer_key=9djdj82h48djs9d2&oauth_nonce=7d8f3e4a&oauth_signature_method=HMAC-SHA1&oauth_timestamp=137131201&oauth_token=kkk9d7dh3k39sjv7"
    );
    assert_eq!(base_string("post", &url, &n), RFC_BASE);
}

#[test]
fn the_base_uri_drops_the_default_port_and_keeps_another() {
    // §3.4.1.2's examples.
    assert_eq!(base_uri(&Url::parse("HTTP://EXAMPLE.COM:80/r%20v/X?id=123").unwrap()), "http://example.com/r%20v/X");
    assert_eq!(base_uri(&Url::parse("https://www.example.net:8080/?q=1").unwrap()), "https://www.example.net:8080/");
}

#[test]
fn the_hmac_sha1_signature_of_rfc_5849_section_1_2() {
    let url = Url::parse("http://photos.example.net/photos?file=vacation.jpg&size=original").unwrap();
    let mut params: Vec<(&str, &str)> = vec![("file", "vacation.jpg"), ("size", "original")];
    params.extend([
        ("oauth_consumer_key", "dpf43f3p2l4k3l03"),
        ("oauth_token", "nnch734d00sl2jdk"),
        ("oauth_signature_method", "HMAC-SHA1"),
        ("oauth_timestamp", "137131202"),
        ("oauth_nonce", "chapoH"),
    ]);
    let base = base_string("GET", &url, &normalized(params));
    let a = OAuth1Auth {
        consumer_key: "dpf43f3p2l4k3l03".into(),
        key: Key::Secret(SecretString::from("kd94hf93k423kf44")),
        method: SignatureMethod::HmacSha1,
        signature_in: SignatureIn::Header,
        token: None,
        flow: None,
    };
    assert_eq!(a.signature(&base, "pfkkdhi9sl3r4s00").unwrap(), "MdpQcU8iPSUjWoN/UDMsK2sui9I=");
}

#[test]
fn a_signed_request_carries_the_rfc_base_string_with_the_version_in_the_header() {
    let a = auth(SignatureMethod::HmacSha1, SignatureIn::Header, secret());
    let (url, headers, body) = sign_rfc_request(&a).unwrap();
    // Query and body are sent as they were.
    assert_eq!(url.query(), Some("b5=%3D%253D&a3=a&c%40=&a2=r%20b"));
    assert_eq!(&body[..], b"c2&a3=2+q");
    assert!(headers[AUTHORIZATION].is_sensitive());
    let params = header_params(&headers);
    let names: Vec<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "oauth_consumer_key",
            "oauth_nonce",
            "oauth_signature_method",
            "oauth_timestamp",
            "oauth_version",
            "oauth_token",
            "oauth_signature"
        ]
    );
    let base = format!("{RFC_BASE}%26oauth_version%3D1.0");
    let expected = b64(&latchkey_vault::hmac_sha1(b"j49sk3j29djd&dh893hdasih9", base.as_bytes()));
    assert_eq!(params[6].1, expected);
}

#[test]
fn hmac_sha256_and_plaintext_sign_the_same_base_string() {
    let base = format!("{RFC_BASE}%26oauth_version%3D1.0").replace("HMAC-SHA1", "HMAC-SHA256");
    let a = auth(SignatureMethod::HmacSha256, SignatureIn::Header, secret());
    let (_, headers, _) = sign_rfc_request(&a).unwrap();
    let expected = b64(&latchkey_vault::hmac_sha256(b"j49sk3j29djd&dh893hdasih9", base.as_bytes()));
    assert_eq!(header_params(&headers)[6].1, expected);

    let a = auth(SignatureMethod::Plaintext, SignatureIn::Header, Key::Secret(SecretString::from("s&cret")));
    let (_, headers, _) = sign_rfc_request(&a).unwrap();
    // §3.4.4: the encoded secrets joined by `&` (then encoded again in the header).
    assert_eq!(header_params(&headers)[6].1, "s%26cret&dh893hdasih9");
    assert!(headers[AUTHORIZATION].to_str().unwrap().contains("oauth_signature=\"s%2526cret%26dh893hdasih9\""));
}

#[test]
fn rsa_sha1_verifies_with_the_public_key() {
    use latchkey_vault::identity::{SigningAlg, SigningKey};
    use rsa::pkcs8::DecodePrivateKey as _;
    use rsa::signature::Verifier as _;
    let generated = SigningKey::generate(SigningAlg::Rs256).unwrap();
    let private = rsa::RsaPrivateKey::from_pkcs8_der(generated.pkcs8()).unwrap();
    let pem = {
        use rsa::pkcs8::EncodePrivateKey as _;
        private.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).unwrap().to_string()
    };
    let a = auth(SignatureMethod::RsaSha1, SignatureIn::Header, rsa_key(&SecretString::from(pem)).unwrap());
    let (_, headers, _) = sign_rfc_request(&a).unwrap();
    let sig = base64::engine::general_purpose::STANDARD.decode(&header_params(&headers)[6].1).unwrap();
    let base = format!("{RFC_BASE}%26oauth_version%3D1.0").replace("HMAC-SHA1", "RSA-SHA1");
    let verifier = rsa::pkcs1v15::VerifyingKey::<sha1::Sha1>::new(private.to_public_key());
    verifier.verify(base.as_bytes(), &rsa::pkcs1v15::Signature::try_from(&sig[..]).unwrap()).unwrap();
    // The PKCS#1 form of the same key is taken too; anything else is refused, unshown.
    let pkcs1 = {
        use rsa::pkcs1::EncodeRsaPrivateKey as _;
        private.to_pkcs1_pem(rsa::pkcs8::LineEnding::LF).unwrap().to_string()
    };
    assert!(pkcs1.contains("BEGIN RSA PRIVATE KEY"));
    rsa_key(&SecretString::from(pkcs1)).unwrap();
    let Err(e) = rsa_key(&SecretString::from("-----BEGIN PRIVATE KEY-----\ncanary\n-----END PRIVATE KEY-----")) else {
        panic!("a bad key was taken")
    };
    assert_eq!(e.code, ErrorCode::SecretMissing);
    assert!(!e.message.contains("canary"), "{}", e.message);
}

#[test]
fn in_the_query_or_the_body_the_parameters_follow_what_was_there() {
    let a = auth(SignatureMethod::HmacSha1, SignatureIn::Query, secret());
    let (url, headers, body) = sign_rfc_request(&a).unwrap();
    assert!(headers.get(AUTHORIZATION).is_none());
    assert_eq!(&body[..], b"c2&a3=2+q");
    let q = url.query().unwrap();
    assert!(
        q.starts_with("b5=%3D%253D&a3=a&c%40=&a2=r%20b&oauth_consumer_key=9djdj82h48djs9d2&oauth_nonce=7d8f3e4a&"),
        "{q}"
    );
    let sig = url.query_pairs().find(|(k, _)| k == "oauth_signature").unwrap().1.into_owned();
    let base = format!("{RFC_BASE}%26oauth_version%3D1.0");
    assert_eq!(sig, b64(&latchkey_vault::hmac_sha1(b"j49sk3j29djd&dh893hdasih9", base.as_bytes())));

    let a = auth(SignatureMethod::HmacSha1, SignatureIn::Body, secret());
    let (url, headers, body) = sign_rfc_request(&a).unwrap();
    assert!(headers.get(AUTHORIZATION).is_none());
    assert_eq!(url.query(), Some("b5=%3D%253D&a3=a&c%40=&a2=r%20b"));
    let text = std::str::from_utf8(&body).unwrap();
    assert!(text.starts_with("c2&a3=2+q&oauth_consumer_key=9djdj82h48djs9d2&"), "{text}");
    let sig = url::form_urlencoded::parse(&body).find(|(k, _)| k == "oauth_signature").unwrap().1.into_owned();
    assert_eq!(sig, b64(&latchkey_vault::hmac_sha1(b"j49sk3j29djd&dh893hdasih9", base.as_bytes())));
}

#[test]
fn the_callers_oauth_parameters_are_dropped_and_a_body_signature_needs_a_form() {
    let a = auth(SignatureMethod::HmacSha1, SignatureIn::Header, secret());
    let mut url = Url::parse("https://api.example/x?oauth_token=caller&keep=1&oauth_signature=s").unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, "Application/X-WWW-Form-Urlencoded; charset=utf-8".parse().unwrap());
    let mut body = Bytes::from_static(b"oauth_consumer_key=evil&a=1");
    a.sign(
        Request { method: &Method::POST, url: &mut url, headers: &mut headers, body: Some(&mut body), now_s: 1 },
        a.app_token(),
        &[],
    )
    .unwrap();
    assert_eq!(url.query(), Some("keep=1"));
    assert_eq!(&body[..], b"a=1");

    let a = auth(SignatureMethod::HmacSha1, SignatureIn::Body, secret());
    let mut url = Url::parse("https://api.example/x").unwrap();
    let e = a
        .sign(
            Request { method: &Method::GET, url: &mut url, headers: &mut HeaderMap::new(), body: None, now_s: 1 },
            a.app_token(),
            &[],
        )
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidParams);
    assert!(e.message.contains("application/x-www-form-urlencoded"), "{}", e.message);
}

#[test]
fn nonces_differ_and_debug_shows_no_secret() {
    let a = auth(SignatureMethod::HmacSha1, SignatureIn::Header, Key::Secret(SecretString::from("cs-canary")));
    let nonce = |a: &OAuth1Auth| {
        let mut url = Url::parse("https://api.example/").unwrap();
        let mut headers = HeaderMap::new();
        a.sign(
            Request { method: &Method::GET, url: &mut url, headers: &mut headers, body: None, now_s: 1 },
            a.app_token(),
            &[],
        )
        .unwrap();
        header_params(&headers).into_iter().find(|(k, _)| k == "oauth_nonce").unwrap().1
    };
    assert_ne!(nonce(&a), nonce(&a));
    let shown = format!("{a:?}");
    assert!(!shown.contains("cs-canary") && !shown.contains("dh893hdasih9") && !shown.contains("kkk9d7"), "{shown}");
}

/// A `401`'s `oauth_problem` (the OAuth Problem Reporting extension) says the user's token is
/// gone only for `token_revoked`, `token_rejected` and `token_expired`, in the header, a form
/// body or a JSON one; other problems are the request's, not the token's.
#[test]
fn a_revoked_token_is_told_from_other_problems() {
    use http::HeaderValue;
    use http::header::WWW_AUTHENTICATE;
    let header = |v: &'static str| {
        let mut h = HeaderMap::new();
        h.append(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"other\""));
        h.append(WWW_AUTHENTICATE, HeaderValue::from_static(v));
        h
    };
    let none = HeaderMap::new();
    assert_eq!(
        revoked_token_problem(&header(r#"OAuth realm="api", oauth_problem="token_revoked""#), b""),
        Some("token_revoked")
    );
    assert_eq!(revoked_token_problem(&header("OAuth oauth_problem=token_expired"), b"{}"), Some("token_expired"));
    assert_eq!(
        revoked_token_problem(&none, b"oauth_problem=token_rejected&oauth_problem_advice=authorize%20again"),
        Some("token_rejected")
    );
    assert_eq!(
        revoked_token_problem(&none, br#"{"errors": [], "oauth_problem" : "token_expired"}"#),
        Some("token_expired")
    );
    // The request's own problems, a longer name, nothing said: not the token's.
    for body in [
        &b"oauth_problem=signature_invalid"[..],
        b"oauth_problem=nonce_used&oauth_problem=timestamp_refused",
        b"oauth_problem=token_revoked_not",
        b"oauth_problem_advice=token_revoked",
        b"{\"error\": \"invalid_request\"}",
        b"",
    ] {
        assert_eq!(revoked_token_problem(&none, body), None, "{}", String::from_utf8_lossy(body));
    }
    assert_eq!(revoked_token_problem(&header(r#"OAuth oauth_problem="consumer_key_rejected""#), b""), None);
    assert_eq!(
        revoked_token_problem(&none, b"oauth_problem=signature_invalid&x=1 oauth_problem=token_revoked"),
        Some("token_revoked"),
        "the first problem that is the token's"
    );
}
