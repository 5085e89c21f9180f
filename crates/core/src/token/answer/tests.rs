//! Reading token answers: every shape of success, and every failure by kind.

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::*;
use crate::token::{TokenRequestBody, TokenResponseShape};

const NOW: i64 = 1_700_000_000_000;

fn request(shape: TokenResponseShape) -> TokenRequest {
    TokenRequest {
        url: "https://x.example/token".into(),
        headers: Vec::new(),
        basic_auth: Some(("app".into(), crate::secret::ClientSecret::from("cs-9f2e".to_owned()))),
        body: TokenRequestBody::Form(vec![
            ("grant_type".into(), SecretString::from("refresh_token")),
            ("refresh_token".into(), SecretString::from("rt-old-77")),
        ]),
        shape,
        is_refresh: true,
        secrets: Vec::new(),
    }
}

fn answer(status: u16, headers: &[(&'static str, &'static str)], body: &str) -> Answer {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(*k, http::HeaderValue::from_static(v));
    }
    Answer { status, headers: map, body: Ok(body.as_bytes().to_vec()) }
}

fn json_answer(status: u16, body: serde_json::Value) -> Answer {
    answer(status, &[("content-type", "application/json")], &body.to_string())
}

fn ok(a: &Answer) -> TokenSet {
    parse(&request(TokenResponseShape::default()), a, NOW).unwrap()
}

fn err(a: &Answer) -> TokenError {
    parse(&request(TokenResponseShape::default()), a, NOW).unwrap_err()
}

#[test]
fn a_full_answer_gives_every_part() {
    let set = ok(&json_answer(
        200,
        json!({"access_token": "at-1", "token_type": "Bearer", "expires_in": 3600, "refresh_token": "rt-2",
               "scope": "read write", "id_token": "eyJ.id.tok", "instance_url": "https://eu.x.example"}),
    ));
    assert_eq!(set.access_token.expose_secret(), "at-1");
    assert_eq!(set.refresh_token.as_ref().map(|r| r.expose_secret()), Some("rt-2"));
    assert_eq!(set.token_type.as_deref(), Some("Bearer"));
    assert_eq!(set.scope.as_deref(), Some("read write"));
    assert_eq!((set.expires_at, set.obtained_at), (Some(NOW + 3_600_000), NOW));
    // The tokens are no metadata; what describes the connection is.
    assert_eq!(
        serde_json::Value::Object(set.extra),
        json!({"expires_in": 3600, "instance_url": "https://eu.x.example", "token_type": "Bearer", "scope": "read write"})
    );
}

#[test]
fn expires_in_as_a_string_counts_as_the_number() {
    let set = ok(&json_answer(200, json!({"access_token": "a", "expires_in": "120"})));
    assert_eq!(set.expires_at, Some(NOW + 120_000));
}

#[test]
fn no_expires_in_means_no_known_lifetime() {
    let set = ok(&json_answer(200, json!({"access_token": "a", "token_type": "bearer"})));
    assert_eq!(set.expires_at, None);
    assert!(set.is_fresh(i64::MAX - 1, 300_000));
}

#[test]
fn a_rotated_refresh_token_is_taken_and_an_absent_one_is_none() {
    assert_eq!(
        ok(&json_answer(200, json!({"access_token": "a", "refresh_token": "rt-new"})))
            .refresh_token
            .map(|r| r.expose_secret().to_owned()),
        Some("rt-new".into())
    );
    // The lifecycle keeps the old one then (RFC 6749 §6); an empty one is none either.
    assert!(ok(&json_answer(200, json!({"access_token": "a"}))).refresh_token.is_none());
    assert!(ok(&json_answer(200, json!({"access_token": "a", "refresh_token": ""}))).refresh_token.is_none());
}

#[test]
fn a_custom_shape_reads_nested_paths() {
    let shape = TokenResponseShape {
        token_path: "data.session.jwt".into(),
        expires_in_path: "data.ttl".into(),
        ..TokenResponseShape::default()
    };
    let a = json_answer(200, json!({"data": {"session": {"jwt": "j-1"}, "ttl": "45", "region": "eu"}}));
    let set = parse(&request(shape), &a, NOW).unwrap();
    assert_eq!(set.access_token.expose_secret(), "j-1");
    assert_eq!(set.expires_at, Some(NOW + 45_000));
    assert_eq!(set.extra.get("data"), Some(&json!({"ttl": "45", "region": "eu", "session": {}})));
}

#[test]
fn a_custom_shape_whose_token_is_missing_is_a_failure_naming_the_path() {
    let shape = TokenResponseShape { token_path: "token".into(), ..TokenResponseShape::default() };
    let e = parse(&request(shape), &json_answer(200, json!({"access_token": "a"})), NOW).unwrap_err();
    assert_eq!(e.kind, TokenErrorKind::Failed { retry_after: None });
    assert_eq!(e.summary(), "no_token (200): the answer has no `token`");
}

#[test]
fn a_form_encoded_answer_is_read_by_its_content_type_or_its_shape() {
    for content_type in ["application/x-www-form-urlencoded; charset=utf-8", "text/plain", "application/octet-stream"] {
        let a = answer(
            200,
            &[("content-type", content_type)],
            "access_token=gho_16C7e42F%2B&token_type=bearer&expires_in=28800",
        );
        let set = ok(&a);
        assert_eq!(set.access_token.expose_secret(), "gho_16C7e42F+", "{content_type}");
        assert_eq!(set.expires_at, Some(NOW + 28_800_000));
        assert_eq!(set.token_type.as_deref(), Some("bearer"));
    }
}

#[test]
fn refused_by_rfc_6749_5_2_error_is_terminal_with_the_providers_words() {
    let e = err(&json_answer(
        400,
        json!({"error": "invalid_grant", "error_description": "Refresh token expired", "error_uri": "https://x.example/e/1"}),
    ));
    assert_eq!(e.kind, TokenErrorKind::Refused);
    assert!(e.is_terminal() && !e.is_ambiguous());
    assert_eq!((e.status, e.error.as_deref()), (Some(400), Some("invalid_grant")));
    assert_eq!(e.description.as_deref(), Some("Refresh token expired"));
    assert_eq!(e.uri.as_deref(), Some("https://x.example/e/1"));
}

#[test]
fn invalid_client_on_401_is_refused() {
    let e = err(&answer(401, &[("www-authenticate", "Basic")], r#"{"error":"invalid_client"}"#));
    assert_eq!((e.kind, e.error.as_deref()), (TokenErrorKind::Refused, Some("invalid_client")));
}

#[test]
fn an_echoed_secret_is_scrubbed_from_the_refusal() {
    let e = err(&json_answer(
        400,
        json!({"error": "invalid_grant", "error_description": "token rt-old-77 unknown for cs-9f2e"}),
    ));
    assert_eq!(e.description.as_deref(), Some("token [REDACTED] unknown for [REDACTED]"));
}

#[test]
fn a_passing_status_is_a_failure_with_its_retry_after() {
    for (status, retry_after) in [(429, Some(7)), (503, Some(7)), (500, None), (408, None)] {
        let headers: &[(&str, &str)] = if retry_after.is_some() { &[("retry-after", " 7 ")] } else { &[] };
        let e = err(&answer(status, headers, r#"{"error":"temporarily_unavailable"}"#));
        let expected = retry_after.map(Duration::from_secs);
        assert_eq!(e.kind, TokenErrorKind::Failed { retry_after: expected }, "{status}");
        assert_eq!(e.retry_after(), expected);
        assert!(!e.is_terminal());
    }
}

#[test]
fn a_retry_after_date_is_not_read() {
    let e = err(&answer(503, &[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")], ""));
    assert_eq!(e.kind, TokenErrorKind::Failed { retry_after: None });
}

#[test]
fn an_error_page_that_is_not_json_keeps_no_words() {
    let e = err(&answer(502, &[("content-type", "text/html")], "<html><body>Bad gateway</body></html>"));
    assert_eq!((e.error.as_deref(), e.description.as_deref()), (None, None));
    assert_eq!(e.summary(), "error (502)");
}

#[test]
fn a_success_without_a_usable_token_is_a_failure_not_a_refusal() {
    for (body, error) in [
        (json!({"token_type": "Bearer"}), "no_token"),
        (json!({"access_token": ""}), "no_token"),
        (json!({"access_token": 42}), "no_token"),
        (json!({"access_token": "a\r\nSet-Cookie: x=1"}), "invalid_access_token"),
        (json!({"access_token": "a", "expires_in": -1}), "invalid_expires_in"),
        (json!({"access_token": "a", "expires_in": "soon"}), "invalid_expires_in"),
    ] {
        let e = err(&json_answer(200, body.clone()));
        assert_eq!((e.kind, e.error.as_deref()), (TokenErrorKind::Failed { retry_after: None }, Some(error)), "{body}");
    }
    let e = err(&json_answer(200, json!({"access_token": "a", "expires_in": "soon"})));
    assert_eq!(
        e.description.as_deref(),
        Some("`expires_in` in the answer is not a number: expected a number of seconds (RFC 6749 §5.1)")
    );
}

#[test]
fn a_success_too_large_to_read_is_lost_since_it_may_hold_a_rotated_refresh_token() {
    let a = Answer { status: 200, headers: HeaderMap::new(), body: Err(AnswerError::TooLarge) };
    let e = err(&a);
    assert_eq!(e.kind, TokenErrorKind::Lost { timed_out: false });
    assert!(e.is_ambiguous() && !e.timed_out());
    assert_eq!(e.status, Some(200));
    assert_eq!(
        e.summary(),
        "answer_too_large (200): the token endpoint's answer exceeded 1 MiB; Latchkey read no further: check the token_url"
    );
}

#[test]
fn an_error_too_large_to_read_is_classified_by_its_status() {
    let mut headers = HeaderMap::new();
    headers.insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("3"));
    let refused = err(&Answer { status: 400, headers: headers.clone(), body: Err(AnswerError::TooLarge) });
    assert_eq!((refused.kind, refused.error.as_deref()), (TokenErrorKind::Refused, Some("answer_too_large")));
    let failed = err(&Answer { status: 503, headers, body: Err(AnswerError::TooLarge) });
    assert_eq!(failed.kind, TokenErrorKind::Failed { retry_after: Some(Duration::from_secs(3)) });
}

#[test]
fn an_answer_cut_off_is_lost() {
    for timed_out in [false, true] {
        let e = err(&Answer { status: 200, headers: HeaderMap::new(), body: Err(AnswerError::Cut { timed_out }) });
        assert_eq!(e.kind, TokenErrorKind::Lost { timed_out });
        assert_eq!(e.status, None);
        assert_eq!(e.description.as_deref(), Some("the answer was cut off"));
    }
}

#[test]
fn an_answer_never_prints_its_body() {
    let a = json_answer(200, json!({"access_token": "at-secret-1"}));
    assert_eq!(format!("{a:?}"), "Answer { status: 200, .. }");
    assert_eq!(format!("{:?}", ok(&a)).matches("at-secret-1").count(), 0);
}

#[test]
fn expires_in_is_a_number_of_seconds_clamped_to_ten_years() {
    let now = 1_700_000_000_000;
    let ten_years = now + (MAX_LIFETIME_S as i64) * 1000;
    for (v, expected) in [
        (json!(3600), Ok(Some(now + 3_600_000))),
        (json!("3600"), Ok(Some(now + 3_600_000))),
        (json!(" 60 "), Ok(Some(now + 60_000))),
        (json!(1.5), Ok(Some(now + 1500))),
        (json!(1e300), Ok(Some(ten_years))),
        (json!(f64::MAX), Ok(Some(ten_years))),
        (json!(u64::MAX), Ok(Some(ten_years))),
        (json!(0), Ok(None)),
        (Value::Null, Ok(None)),
        (json!(-5), Err("is negative")),
        (json!("-1e9"), Err("is negative")),
        (json!("inf"), Err("is not a finite number")),
        (json!("-infinity"), Err("is not a finite number")),
        (json!("NaN"), Err("is not a finite number")),
        (json!("soon"), Err("is not a number")),
        (json!(""), Err("is not a number")),
        (json!(true), Err("is not a number")),
        (json!({"s": 1}), Err("is not a number")),
    ] {
        assert_eq!(expires_at(now, Some(&v)), expected, "{v}");
    }
    assert_eq!(expires_at(now, None), Ok(None));
    assert_eq!(expires_at(i64::MAX - 10, Some(&json!(60))), Err("is too large"));
}

#[test]
fn an_access_token_must_be_visible_ascii() {
    assert!(header_safe("ya29.a0-_~+/= x"));
    for bad in ["a\r\nb", "a\nb", "a\u{0}b", "a\u{7f}b", "a\tb", "tök"] {
        assert!(!header_safe(bad), "{bad:?}");
    }
}

fn expires_at_shape() -> TokenResponseShape {
    TokenResponseShape {
        token_path: "token".into(),
        expires_in_path: "expires_in".into(),
        expires_at_path: Some("expires_at".into()),
        ..TokenResponseShape::default()
    }
}

#[test]
fn an_absolute_expiry_is_read_as_rfc_3339_or_unix_seconds_instead_of_a_lifetime() {
    // GitHub's installation token: `{"token", "expires_at"}`, 201. NOW is 2023-11-14T22:13:20Z.
    let at = |expires_at: Value| {
        let a = json_answer(201, json!({"token": "ghs_1", "expires_at": expires_at, "expires_in": 5}));
        parse(&request(expires_at_shape()), &a, NOW).map(|s| s.expires_at)
    };
    assert_eq!(at(json!("2023-11-14T23:13:20Z")).unwrap(), Some(NOW + 3_600_000));
    assert_eq!(at(json!("2023-11-15T00:13:20.5+01:00")).unwrap(), Some(NOW + 3_600_500));
    assert_eq!(at(json!(1_700_003_600)).unwrap(), Some(NOW + 3_600_000));
    assert_eq!(at(json!("1700003600")).unwrap(), Some(NOW + 3_600_000));
    // Absent or null: no expiry given (`expires_in` is not read instead).
    assert_eq!(at(Value::Null).unwrap(), None);
    let a = json_answer(201, json!({"token": "ghs_1", "expires_in": 5}));
    assert_eq!(parse(&request(expires_at_shape()), &a, NOW).unwrap().expires_at, None);
    // Already past: kept, so the token is not used; centuries ahead: clamped like lifetimes.
    assert_eq!(at(json!("2023-11-14T22:00:00Z")).unwrap(), Some(NOW - 800_000));
    let far = at(json!("9999-12-31T23:59:59Z")).unwrap().unwrap();
    assert_eq!(far, NOW + (crate::token::answer::MAX_LIFETIME_S * 1000.0) as i64);
}

#[test]
fn an_absolute_expiry_that_is_no_time_is_a_failure_naming_the_path() {
    for bad in [json!("tomorrow"), json!("2023-11-14 23:13:20"), json!(-5), json!(true), json!({"at": 1})] {
        let a = json_answer(201, json!({"token": "ghs_1", "expires_at": bad}));
        let e = parse(&request(expires_at_shape()), &a, NOW).unwrap_err();
        assert_eq!(e.kind, TokenErrorKind::Failed { retry_after: None }, "{bad}");
        assert!(e.summary().starts_with("invalid_expires_at (201): `expires_at` in the answer is "), "{}", e.summary());
        assert!(e.summary().ends_with("expected an RFC 3339 time (`2026-12-06T11:00:00Z`) or Unix seconds"));
    }
}
