use super::*;

fn www(values: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for v in values {
        h.append(http::header::WWW_AUTHENTICATE, HeaderValue::from_bytes(v.as_bytes()).unwrap());
    }
    h
}

/// RFC 7616 §3.9.1: the same request answered with SHA-256 and with MD5.
fn rfc_inputs(algorithm: Algorithm) -> Inputs<'static> {
    Inputs {
        algorithm,
        sess: false,
        username: "Mufasa",
        realm: "http-auth@example.org",
        password: "Circle of Life",
        nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        qop_auth: Some((1, "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")),
        method: "GET",
        uri: "/dir/index.html",
    }
}

#[test]
fn the_response_matches_rfc_7616_examples_for_md5_and_sha_256() {
    assert_eq!(response(&rfc_inputs(Algorithm::Md5)), "8ca523f5e9506fed4657c9700eebdbec");
    assert_eq!(
        response(&rfc_inputs(Algorithm::Sha256)),
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    );
}

#[test]
fn sess_hashes_the_nonce_and_cnonce_into_ha1() {
    let i = Inputs { sess: true, ..rfc_inputs(Algorithm::Md5) };
    // H(H(user:realm:pass):nonce:cnonce) computed by hand from the parts.
    let ha1 = Algorithm::Md5.hash(&[b"Mufasa", b"http-auth@example.org", b"Circle of Life"]);
    let ha1 = Algorithm::Md5.hash(&[
        ha1.as_bytes(),
        b"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        b"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    ]);
    let ha2 = Algorithm::Md5.hash(&[b"GET", b"/dir/index.html"]);
    let expected = Algorithm::Md5.hash(&[
        ha1.as_bytes(),
        b"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        b"00000001",
        b"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        b"auth",
        ha2.as_bytes(),
    ]);
    assert_eq!(response(&i), expected);
    assert_ne!(response(&i), response(&rfc_inputs(Algorithm::Md5)));
    // MD5 of the empty string: the hash is MD5.
    assert_eq!(Algorithm::Md5.hash(&[b""]), "d41d8cd98f00b204e9800998ecf8427e");
}

#[test]
fn the_rfc_challenge_parses_and_sha_256_is_preferred() {
    let h = www(&[
        r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#,
        r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=MD5, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#,
    ]);
    let (c, stale) = challenge(&h).unwrap().unwrap();
    assert!(!stale);
    assert_eq!((c.algorithm, c.sess, c.qop_auth), (Algorithm::Sha256, false, true));
    assert_eq!(c.realm, "http-auth@example.org");
    assert_eq!(c.opaque.as_deref(), Some("FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"));
    // One header holding Basic and Digest, in either order; stale and escapes.
    let h = www(&[r#"Basic realm="b", Digest realm="a \"q\"", nonce=n1, algorithm=md5-sess, qop=auth, stale=TRUE"#]);
    let (c, stale) = challenge(&h).unwrap().unwrap();
    assert!(stale);
    assert_eq!((c.realm.as_str(), c.nonce.as_str(), c.algorithm, c.sess), ("a \"q\"", "n1", Algorithm::Md5, true));
    assert!(challenge(&www(&[r#"Basic realm="x""#, "Bearer"])).unwrap().is_none());
    assert!(challenge(&HeaderMap::new()).unwrap().is_none());
}

#[test]
fn the_header_counts_up_with_a_fresh_cnonce_and_quotes_what_it_repeats() {
    let auth = DigestAuth::new("Mufasa", &SecretString::from("Circle of Life"));
    let h = www(&[r#"Digest realm="r\"1", nonce="n", qop="auth", opaque="o", algorithm=SHA-256"#]);
    let c = auth.remember(challenge(&h).unwrap().unwrap().0);
    let first = auth.authorization(&c, &Method::GET, "/p?q=1").unwrap();
    let second = auth.authorization(&auth.cached().unwrap(), &Method::GET, "/p?q=1").unwrap();
    assert!(first.is_sensitive());
    let (first, second) = (first.to_str().unwrap(), second.to_str().unwrap());
    assert!(first.starts_with(r#"Digest username="Mufasa", realm="r\"1", uri="/p?q=1", algorithm=SHA-256, nonce="n", nc=00000001, cnonce=""#), "{first}");
    assert!(second.contains("nc=00000002"), "{second}");
    assert!(first.ends_with(r#", opaque="o""#), "{first}");
    let cnonce = |s: &str| s.split("cnonce=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    assert_ne!(cnonce(first), cnonce(second));
    assert!(!first.contains("Circle"), "{first}");
    auth.forget();
    assert!(auth.cached().is_none());
    assert!(!format!("{auth:?}").contains("Circle"));
}

#[test]
fn without_qop_the_rfc_2069_form_is_sent_and_userhash_hides_the_name() {
    let auth = DigestAuth::new("Mufasa", &SecretString::from("pw"));
    let c = challenge(&www(&[r#"Digest realm="r", nonce="n", userhash=true"#])).unwrap().unwrap().0;
    let v = auth.authorization(&c, &Method::POST, "/x").unwrap();
    let v = v.to_str().unwrap();
    assert!(!v.contains("nc=") && !v.contains("qop") && !v.contains("Mufasa"), "{v}");
    assert!(v.contains(&format!("username=\"{}\"", Algorithm::Md5.hash(&[b"Mufasa", b"r"]))), "{v}");
    assert!(v.ends_with("userhash=true"), "{v}");
}

#[test]
fn a_challenge_latchkey_cannot_answer_says_what_was_offered() {
    let e = challenge(&www(&[r#"Digest realm="r", nonce="n", algorithm=SHA-512-256"#])).unwrap_err();
    assert!(e.contains("SHA-512-256"), "{e}");
    let e = challenge(&www(&[r#"Digest realm="r", nonce="n", qop="auth-int""#])).unwrap_err();
    assert!(e.contains("auth-int"), "{e}");
    assert!(challenge(&www(&[r#"Digest realm="r""#])).is_err());
    // A usable one beside an unusable one is taken.
    let h = www(&[r#"Digest realm="r", nonce="n", algorithm=SHA-512-256, Digest realm="r", nonce="m""#]);
    assert_eq!(challenge(&h).unwrap().unwrap().0.nonce, "m");
}

#[test]
fn hostile_challenges_are_bounded_and_never_panic() {
    let long = format!("Digest realm=\"{}\", nonce=\"n\"", "a".repeat(MAX_HEADER_LEN));
    assert!(challenge(&www(&[&long])).is_err());
    let many_params =
        format!("Digest realm=r, nonce=n, {}", (0..10_000).map(|i| format!("p{i}=v")).collect::<Vec<_>>().join(","));
    let _ = challenge(&www(&[&many_params[..MAX_HEADER_LEN.min(many_params.len())]]));
    let many_schemes = "Digest ".repeat(1_000);
    assert!(challenge(&www(&[&many_schemes])).is_err());
    for hostile in [
        "Digest realm=\"unterminated, nonce=\"n\"",
        "Digest realm=\"r\\",
        "Digest ====,,,,\"\"\"",
        "Digest realm=\"r\", nonce=\"\\\t\"",
        "Digest realm = \"r\" , nonce = n",
        "\"Digest\" realm=r",
        ",,,",
        "Digest realm=r, realm=s, nonce=n",
        "Digest realm=\"\u{e9}\", nonce=n",
    ] {
        let _ = challenge(&www(&[hostile]));
    }
    // Spaces around `=` are allowed; the first of a repeated parameter wins.
    assert_eq!(challenge(&www(&["Digest realm = \"r\" , nonce = n"])).unwrap().unwrap().0.nonce, "n");
    assert_eq!(challenge(&www(&["Digest realm=r, realm=s, nonce=n"])).unwrap().unwrap().0.realm, "r");
    // Non-UTF-8 bytes and control characters end the parse: no challenge taken from them.
    let mut h = HeaderMap::new();
    h.append(http::header::WWW_AUTHENTICATE, HeaderValue::from_bytes(b"Digest realm=\"\xff\", nonce=n").unwrap());
    assert!(challenge(&h).unwrap_err().contains("realm"));
    assert!(challenge(&www(&["Digest realm=\"r\", nonce=\"a\tb\""])).is_err());
    let mut h = HeaderMap::new();
    for _ in 0..1000 {
        h.append(http::header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=x"));
    }
    assert!(challenge(&h).unwrap().is_none());
}
