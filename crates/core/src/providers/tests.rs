//! The catalog: every template loads and passes the configuration's checks; each OAuth
//! template's login URL and code exchange are the provider's documented ones, byte for byte;
//! the merge (the connector wins, field by field) and its problems.

use std::sync::OnceLock;

use secrecy::SecretString;
use serde_json::{Value, json};

use crate::auth::{ClientPool, Credential, prepare};
use crate::config::{AuthConfig, Config, ConnectorConfig};
use crate::secret::PkceVerifier;
use crate::secrets::SecretSet;
use crate::token::build;
use crate::{Env, auth::authorization_code::UserAuth};

fn load(name: &str, json: Value) -> Result<ConnectorConfig, Vec<String>> {
    Config::connector_from_json(name, json, "latchkey.toml").map_err(|e| e.0.iter().map(ToString::to_string).collect())
}

#[test]
fn every_template_file_parses() {
    assert_eq!(super::broken(), &[], "templates that do not parse");
    assert_eq!(super::TEMPLATES.len(), super::all().count());
}

#[test]
fn the_catalog_has_at_least_fifty_providers() {
    let n = super::all().count();
    assert!(n >= 50, "only {n} templates");
}

#[test]
fn every_template_names_its_sources_and_what_the_connector_must_write() {
    for t in super::all() {
        assert!(!t.docs.is_empty(), "{}: no documentation links", t.name);
        for d in &t.docs {
            assert!(d.starts_with("https://"), "{}: `{d}` is no https link", t.name);
        }
        assert!(!t.title.is_empty(), "{}", t.name);
        assert!(t.method().is_some(), "{}: no auth.method", t.name);
        assert!(t.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'), "{}", t.name);
        // Every `{x}` the template's text holds is one of its parameters, and each parameter
        // is used.
        let text = t.connector.to_string();
        for p in t.params.keys() {
            assert!(text.contains(&format!("{{{p}}}")), "{}: parameter `{p}` is not used", t.name);
        }
        let mut rest = text.as_str();
        while let Some(i) = rest.find('{') {
            let word: String = rest[i + 1..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if rest[i + 1 + word.len()..].starts_with('}') && !word.is_empty() {
                assert!(t.params.contains_key(&word), "{}: `{{{word}}}` is no parameter", t.name);
            }
            rest = &rest[i + 1..];
        }
    }
}

/// Each template, with its example parameters (and, apart, with its defaults) and a
/// placeholder for each field it leaves to the connector, is a valid connector.
#[test]
fn every_template_passes_the_checks_with_placeholders() {
    for t in super::all() {
        for with_defaults in [false, true] {
            let example = t.example("svc", with_defaults);
            let c = load("svc", example.clone()).unwrap_or_else(|e| panic!("{}: {e:#?}\n{example:#}", t.name));
            assert_eq!(c.provider.as_deref(), Some(t.name.as_str()));
            assert_eq!(Some(c.auth.method()), t.method(), "{}", t.name);
            // What was merged serializes whole (no `provider`) and loads again to the same
            // connector.
            let served = serde_json::to_value(&c).unwrap();
            assert!(served.get("provider").is_none(), "{}", t.name);
            let again = load("svc", served).unwrap_or_else(|e| panic!("{}: {e:#?}", t.name));
            assert_eq!(
                again,
                ConnectorConfig { provider: None, provider_params: Default::default(), ..c },
                "{}",
                t.name
            );
        }
        // Without the fields it leaves to the connector, the check names them, and the
        // template; a field the method can go without (a PKCE client's secret) is not named.
        let mut bare = json!({"provider": t.name});
        if let Some(p) = t.example("svc", false).get("provider_params") {
            bare["provider_params"] = p.clone();
        }
        if !t.needs.is_empty() {
            let problems = load("svc", bare).expect_err(&t.name);
            for p in &problems {
                assert!(
                    t.needs.iter().any(|n| p.contains(&format!("field `{}`", n.field)))
                        && p.contains(&format!("latchkey providers show {}", t.name)),
                    "{}: {p}",
                    t.name
                );
            }
        }
    }
}

#[test]
fn the_connectors_own_fields_win_field_by_field() {
    let c = load(
        "gh",
        json!({"provider": "github", "base_url": "https://github.acme.example/api/v3",
               "headers": {"X-GitHub-Api-Version": "2026-03-10"},
               "auth": {"client_id": "Iv1.abc", "client_secret": {"secret": "gh_cs"}, "scope": ["repo"]}}),
    )
    .unwrap();
    assert_eq!(c.base_url.as_str(), "https://github.acme.example/api/v3");
    // The template's other header stays; the connector's replaces the template's of its name.
    let headers: Vec<(&str, &str)> = c.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(headers, [("Accept", "application/vnd.github+json"), ("X-GitHub-Api-Version", "2026-03-10")]);
    let AuthConfig::OAuth2AuthorizationCode(a) = &c.auth else { panic!("{:?}", c.auth) };
    assert_eq!(a.client_id, "Iv1.abc");
    assert_eq!(a.scope, Some(crate::config::Scope::Many(vec!["repo".into()])), "a scope list replaces the template's");
    assert_eq!(a.token_url.as_str(), "https://github.com/login/oauth/access_token", "the template's own");
}

#[test]
fn another_method_replaces_the_templates_auth_whole() {
    let c = load(
        "gh",
        json!({"provider": "github",
               "auth": {"method": "api_key_header", "prefix": "Bearer", "key": {"secret": "gh_pat"}}}),
    )
    .unwrap();
    assert!(matches!(c.auth, AuthConfig::ApiKeyHeader(_)), "{:?}", c.auth);
    assert_eq!(c.base_url.as_str(), "https://api.github.com");
}

#[test]
fn a_template_parameter_goes_into_every_url() {
    let c = load(
        "zd",
        json!({"provider": "zendesk", "provider_params": {"subdomain": "acme"},
               "auth": {"client_id": "latchkey", "client_secret": {"secret": "zd"}}}),
    )
    .unwrap();
    assert_eq!(c.base_url.as_str(), "https://acme.zendesk.com/api/v2");
    let AuthConfig::OAuth2AuthorizationCode(a) = &c.auth else { panic!() };
    assert_eq!(a.authorize_url.as_str(), "https://acme.zendesk.com/oauth/authorizations/new");
    assert_eq!(a.token_url.as_str(), "https://acme.zendesk.com/oauth/tokens");
    assert_eq!(c.provider_params.get("subdomain").map(String::as_str), Some("acme"));
}

#[test]
fn a_missing_parameter_says_which_and_how_to_write_it() {
    let problems = load("zd", json!({"provider": "zendesk", "auth": {"client_id": "x"}})).unwrap_err();
    assert_eq!(
        problems,
        vec![
            "latchkey.toml: connector `zd`, field `provider_params.subdomain`: missing: provider `zendesk` needs \
             `subdomain` (the Zendesk subdomain, as in https://SUBDOMAIN.zendesk.com): write `provider_params = { \
             subdomain = \"acme\" }`"
        ]
    );
}

#[test]
fn a_parameter_cannot_leave_its_host_label() {
    for bad in ["acme.zendesk.com/x", "evil.example#", "a b", "", "..", ".x"] {
        let problems = load(
            "zd",
            json!({"provider": "zendesk", "provider_params": {"subdomain": bad}, "auth": {"client_id": "x"}}),
        )
        .unwrap_err();
        assert_eq!(problems.len(), 1, "{bad}: {problems:?}");
        assert!(problems[0].contains("field `provider_params.subdomain`"), "{problems:?}");
    }
    let problems = load(
        "zd",
        json!({"provider": "zendesk", "provider_params": {"subdomain": "acme", "region": "eu"}, "auth": {"client_id": "x"}}),
    )
    .unwrap_err();
    assert!(problems[0].contains("provider `zendesk` has no parameter `region`; it takes: subdomain"), "{problems:?}");
}

#[test]
fn an_unknown_provider_lists_the_catalog() {
    let problems = load("x", json!({"provider": "gogle"})).unwrap_err();
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0].starts_with(
            "latchkey.toml: connector `x`, field `provider`: no provider template is named `gogle`: `latchkey providers list` shows them (one of: "
        ),
        "{problems:?}"
    );
    assert!(problems[0].contains("google"), "{problems:?}");
}

#[test]
fn a_problem_in_a_value_the_template_gave_names_the_template() {
    // Only the connector's own value is wrong: no word of the template.
    let problems = load(
        "g",
        json!({"provider": "google", "auth": {"client_id": "x", "client_secret": {"secret": "g"}, "pkce": "yes"}}),
    )
    .unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("field `auth.pkce`") && !problems[0].contains("template"), "{problems:?}");
    // A template value that clashes with what the connector wrote is named as the template's:
    // Slack's template has no PKCE, so a client without a secret cannot go without it.
    let problems =
        load("s", json!({"provider": "slack", "auth": {"client_id": "x", "client_secret": null}})).unwrap_err();
    assert_eq!(
        problems,
        vec![
            "latchkey.toml: connector `s`, field `auth.pkce`: a public client (no client_secret, no key) must use PKCE \
             (this value comes from provider template `slack`: write `auth.pkce` in the connector to replace it)"
        ]
    );
}

// ---- each OAuth template's requests, as its provider documents them ----

/// What a provider documents for its authorization-code flow.
struct Documented {
    name: &'static str,
    params: &'static [(&'static str, &'static str)],
    /// The login dialog, before its query.
    authorize: &'static str,
    /// The template's default scopes, form-encoded as they go in the query.
    scope: &'static str,
    pkce: bool,
    /// Query parameters after the standard ones (`&access_type=offline…`).
    extra: &'static str,
    token_url: &'static str,
    /// `client_secret_basic` (else the id and secret go in the body).
    basic: bool,
}

const REDIRECT: &str = "https://latchkey.example/oauth/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

include!("documented.rs");

fn user_auth(t: &super::Template, params: &[(&str, &str)]) -> std::sync::Arc<UserAuth> {
    static POOL: OnceLock<ClientPool> = OnceLock::new();
    let mut json = json!({"provider": t.name, "auth": {"client_id": "the-client", "client_secret": {"secret": "cs"}}});
    if !params.is_empty() {
        json["provider_params"] = params.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
    }
    let connector = load("p", json).unwrap_or_else(|e| panic!("{}: {e:#?}", t.name));
    let mut set = SecretSet::default();
    set.set("cs", Env::Live, SecretString::from("s3cret"));
    let prepared = prepare("p", &connector, Env::Live, &set, POOL.get_or_init(ClientPool::default), false)
        .unwrap_or_else(|e| panic!("{}: {e:?}", t.name));
    match prepared.credential {
        Credential::User(u) => u,
        other => panic!("{}: not the browser flow: {other:?}", t.name),
    }
}

#[test]
fn every_authorization_code_template_is_documented_here() {
    let tested: Vec<&str> = DOCUMENTED.iter().map(|d| d.name).collect();
    for t in super::all().filter(|t| t.method() == Some("oauth2_authorization_code")) {
        assert!(tested.contains(&t.name.as_str()), "`{}` has no row in documented.rs", t.name);
    }
}

#[test]
fn each_login_url_and_code_exchange_is_the_providers_documented_one() {
    for d in DOCUMENTED {
        let t = super::get(d.name).unwrap_or_else(|| panic!("no template `{}`", d.name));
        let u = user_auth(t, d.params);
        let challenge = d.pkce.then_some(CHALLENGE);
        assert_eq!(u.config.pkce, d.pkce, "{}", d.name);
        let url = u.authorize_url(&Default::default(), REDIRECT, "st-1", challenge).unwrap();
        let pkce =
            if d.pkce { format!("&code_challenge={CHALLENGE}&code_challenge_method=S256") } else { String::new() };
        let scope = if d.scope.is_empty() { String::new() } else { format!("&scope={}", d.scope) };
        assert_eq!(
            url,
            format!(
                "{}?response_type=code&client_id=the-client&redirect_uri=https%3A%2F%2Flatchkey.example%2Foauth%2Fcallback{scope}&state=st-1{pkce}{}",
                d.authorize, d.extra
            ),
            "{}",
            d.name
        );
        let verifier = d.pkce.then(|| PkceVerifier::from(VERIFIER.to_owned()));
        let req = u.code_request(&SecretString::from("c0de"), REDIRECT, verifier, 1_700_000_000_000).unwrap();
        let req = build(&req).unwrap();
        assert_eq!(format!("{} {}", req.method(), req.uri()), format!("POST {}", d.token_url), "{}", d.name);
        let headers: Vec<String> =
            req.headers().iter().map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or("<bytes>"))).collect();
        let mut expected = vec!["accept: application/json".to_owned()];
        if d.basic {
            // base64("the-client:s3cret")
            expected.push("authorization: Basic dGhlLWNsaWVudDpzM2NyZXQ=".into());
        }
        expected.push("content-type: application/x-www-form-urlencoded".into());
        assert_eq!(headers, expected, "{}", d.name);
        let verifier = if d.pkce { format!("&code_verifier={VERIFIER}") } else { String::new() };
        let client = if d.basic { String::new() } else { "&client_id=the-client&client_secret=s3cret".into() };
        assert_eq!(
            String::from_utf8(req.body().as_bytes().to_vec()).unwrap(),
            format!(
                "grant_type=authorization_code&code=c0de&redirect_uri=https%3A%2F%2Flatchkey.example%2Foauth%2Fcallback{verifier}{client}"
            ),
            "{}",
            d.name
        );
    }
}

// ---- OAuth 1.0a and SigV4 templates, as their providers document them ----

/// What a provider documents for its OAuth 1.0a flow.
struct DocumentedOAuth1 {
    name: &'static str,
    request_token_url: &'static str,
    /// The authorize page with the template's default parameters (before `oauth_token`).
    authorize_url: &'static str,
    access_token_url: &'static str,
    signature_method: &'static str,
    /// `oauth_signature` of the request-token request described in documented.rs, encoded.
    request_token_signature: &'static str,
}

/// What AWS documents for a service's endpoint and SigV4 credential scope.
struct DocumentedSigV4 {
    name: &'static str,
    params: &'static [(&'static str, &'static str)],
    endpoint: &'static str,
    /// The credential scope after the date.
    scope: &'static str,
}

#[test]
fn every_oauth1_and_sigv4_template_is_documented_here() {
    for t in super::all() {
        match t.method() {
            Some("oauth1_authorization") => {
                assert!(DOCUMENTED_OAUTH1.iter().any(|d| d.name == t.name), "`{}` has no row in documented.rs", t.name);
            }
            Some("aws_sigv4") => {
                assert!(DOCUMENTED_SIGV4.iter().any(|d| d.name == t.name), "`{}` has no row in documented.rs", t.name);
            }
            _ => {}
        }
    }
}

#[test]
fn each_oauth1_flow_and_request_token_request_is_the_providers_documented_one() {
    use crate::auth::oauth1::Request;
    for d in DOCUMENTED_OAUTH1 {
        let connector = load(
            "t",
            json!({"provider": d.name, "auth": {"consumer_key": "the-key", "consumer_secret": {"secret": "cs"}}}),
        )
        .unwrap_or_else(|e| panic!("{}: {e:#?}", d.name));
        let mut set = SecretSet::default();
        set.set("cs", Env::Live, SecretString::from("s3cret"));
        let prepared = prepare("t", &connector, Env::Live, &set, &ClientPool::default(), false)
            .unwrap_or_else(|e| panic!("{}: {e:?}", d.name));
        let Credential::OAuth1(auth) = prepared.credential else { panic!("{}: not OAuth 1.0a", d.name) };
        let flow = auth.flow.as_ref().expect("the three-legged flow");
        assert_eq!(flow.config.request_token_url.as_str(), d.request_token_url, "{}", d.name);
        assert_eq!(flow.config.authorize_url.as_str(), d.authorize_url, "{}", d.name);
        assert_eq!(flow.config.access_token_url.as_str(), d.access_token_url, "{}", d.name);
        assert_eq!(flow.config.signature_method.name(), d.signature_method, "{}", d.name);
        // The request-token request, signed as the flow's `/start` signs it.
        let mut url = flow.config.request_token_url.value().clone();
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/x-www-form-urlencoded"));
        let mut body = bytes::Bytes::new();
        let callback = "https://latchkey.example/oauth/callback?state=st-1";
        auth.sign_with_nonce(
            Request {
                method: &http::Method::POST,
                url: &mut url,
                headers: &mut headers,
                body: Some(&mut body),
                now_s: 1_700_000_000,
            },
            None,
            &[("oauth_callback", callback)],
            "n0nce",
        )
        .unwrap();
        assert_eq!(url.as_str(), d.request_token_url, "{}", d.name);
        assert_eq!(
            headers[http::header::AUTHORIZATION].to_str().unwrap(),
            format!(
                "OAuth oauth_consumer_key=\"the-key\", oauth_nonce=\"n0nce\", oauth_signature_method=\"{}\", \
                 oauth_timestamp=\"1700000000\", oauth_version=\"1.0\", \
                 oauth_callback=\"https%3A%2F%2Flatchkey.example%2Foauth%2Fcallback%3Fstate%3Dst-1\", \
                 oauth_signature=\"{}\"",
                d.signature_method, d.request_token_signature
            ),
            "{}",
            d.name
        );
    }
}

#[test]
fn the_trello_template_takes_its_authorize_pages_parameters() {
    let c = load(
        "t",
        json!({"provider": "trello", "provider_params": {"app_name": "Acme-Boards", "scope": "read,write,account", "expiration": "never"},
               "auth": {"consumer_key": "k", "consumer_secret": {"secret": "cs"}}}),
    )
    .unwrap();
    let AuthConfig::OAuth1Authorization(a) = &c.auth else { panic!("{:?}", c.auth) };
    assert_eq!(
        a.authorize_url.as_str(),
        "https://trello.com/1/OAuthAuthorizeToken?name=Acme-Boards&scope=read,write,account&expiration=never"
    );
    for bad in ["read, write", "read,,write", "read&x=1", ""] {
        let problems = load(
            "t",
            json!({"provider": "trello", "provider_params": {"scope": bad}, "auth": {"consumer_key": "k", "consumer_secret": {"secret": "cs"}}}),
        )
        .unwrap_err();
        assert_eq!(problems.len(), 1, "{bad}: {problems:?}");
        assert!(
            problems[0].contains("field `provider_params.scope`") && problems[0].contains("joined by commas"),
            "{problems:?}"
        );
    }
}

#[test]
fn each_sigv4_template_signs_for_the_documented_endpoint_and_scope() {
    use crate::auth::sign::Unsigned;
    let clock = crate::clock::FakeClock::at(1_440_938_160_000); // 2015-08-30T12:36:00Z
    for d in DOCUMENTED_SIGV4 {
        let mut json = json!({"provider": d.name,
            "auth": {"access_key_id": {"secret": "akid"}, "secret_access_key": {"secret": "sak"}}});
        json["provider_params"] = d.params.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
        let connector = load("aws", json).unwrap_or_else(|e| panic!("{}: {e:#?}", d.name));
        assert_eq!(connector.base_url.as_str(), d.endpoint.trim_end_matches('/'), "{}", d.name);
        let mut set = SecretSet::default();
        set.set("akid", Env::Live, SecretString::from("AKIDEXAMPLE"));
        set.set("sak", Env::Live, SecretString::from("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"));
        let prepared = prepare("aws", &connector, Env::Live, &set, &ClientPool::default(), false)
            .unwrap_or_else(|e| panic!("{}: {e:?}", d.name));
        let signer = prepared.credential.prepared_signer().expect("static SigV4 keys");
        let mut url = url::Url::parse(d.endpoint).unwrap();
        let mut headers = http::HeaderMap::new();
        signer
            .sign(&mut Unsigned {
                method: &http::Method::GET,
                url: &mut url,
                headers: &mut headers,
                body: Some(b""),
                clock: clock.as_ref(),
            })
            .unwrap();
        let authorization = headers[http::header::AUTHORIZATION].to_str().unwrap();
        assert!(
            authorization.starts_with(&format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/{}, ", d.scope)),
            "{}: {authorization}",
            d.name
        );
        assert_eq!(headers["x-amz-date"], "20150830T123600Z", "{}", d.name);
    }
}

// ---- docs/providers.md lists the catalog as it is ----

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/providers.md");
const BEGIN: &str = "<!-- catalog: generated from providers/*.toml; `cargo test -p latchkey-core --lib providers::tests::bless_the_docs -- --ignored` rewrites it -->\n";
const END: &str = "<!-- end of catalog -->\n";

/// The catalog's table, as docs/providers.md has it.
fn catalog_table() -> String {
    let mut out = String::from(
        "| provider | what | method | parameters | the connector writes (secrets in **bold**) |\n| --- | --- | --- | --- | --- |\n",
    );
    for t in super::all() {
        let params: Vec<String> = t
            .params
            .iter()
            .map(|(k, p)| match &p.default {
                Some(d) => format!("`{k}` (default `{d}`)"),
                None => format!("`{k}`"),
            })
            .collect();
        let needs: Vec<String> = t
            .needs
            .iter()
            .map(|n| if n.secret { format!("**`{}`**", n.field) } else { format!("`{}`", n.field) })
            .collect();
        let or_dash = |v: Vec<String>| if v.is_empty() { "-".to_owned() } else { v.join(", ") };
        out.push_str(&format!(
            "| `{}` | [{}]({}) | `{}` | {} | {} |\n",
            t.name,
            t.title.replace('|', "\\|"),
            t.docs[0],
            t.method().unwrap_or_default(),
            or_dash(params),
            or_dash(needs)
        ));
    }
    out
}

fn doc_with_table(doc: &str) -> Option<String> {
    let start = doc.find(BEGIN)? + BEGIN.len();
    let end = doc[start..].find(END)? + start;
    Some(format!("{}{}{}", &doc[..start], catalog_table(), &doc[end..]))
}

#[test]
fn the_docs_list_every_template_as_it_is() {
    let doc = std::fs::read_to_string(DOC).unwrap();
    let expected = doc_with_table(&doc).expect("docs/providers.md has the catalog's markers");
    assert!(
        doc == expected,
        "docs/providers.md's catalog is not the templates': run `cargo test -p latchkey-core --lib providers::tests::bless_the_docs -- --ignored`"
    );
}

#[test]
#[ignore = "rewrites docs/providers.md's catalog table"]
fn bless_the_docs() {
    let doc = std::fs::read_to_string(DOC).unwrap();
    std::fs::write(DOC, doc_with_table(&doc).expect("markers")).unwrap();
}

/// The GitHub App template: a POST of `{}` to the installation's token URL, with a fresh JWT
/// whose `iss` is the app, signed with the app's key.
#[test]
fn the_github_app_template_asks_for_an_installation_token_with_a_signed_jwt() {
    static POOL: OnceLock<ClientPool> = OnceLock::new();
    let t = super::get("github-app").unwrap();
    let connector = load(
        "gh",
        json!({"provider": "github-app", "provider_params": {"app_id": "Iv23liAbCdEf", "installation_id": "7890123"},
               "auth": {"jwt": {"private_key": {"secret": "app_key"}}}}),
    )
    .unwrap();
    let AuthConfig::OAuth2CustomToken(a) = &connector.auth else { panic!("{:?}", connector.auth) };
    assert_eq!(a.jwt.as_ref().unwrap().claims.get("iss"), Some(&json!("Iv23liAbCdEf")), "the template's claims stay");
    let key = rsa_key();
    let mut set = SecretSet::default();
    set.set("app_key", Env::Live, SecretString::from(key.0.clone()));
    let prepared = prepare("gh", &connector, Env::Live, &set, POOL.get_or_init(ClientPool::default), false)
        .unwrap_or_else(|e| panic!("{}: {e:?}", t.name));
    let Credential::Token(src) = prepared.credential else { panic!("not a token") };
    let req = build(&src.grant.request(1_700_000_000_000).unwrap()).unwrap();
    assert_eq!(
        format!("{} {}", req.method(), req.uri()),
        "POST https://api.github.com/app/installations/7890123/access_tokens"
    );
    let bearer = req.headers()["authorization"].to_str().unwrap().strip_prefix("Bearer ").unwrap().to_owned();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.1.clone()).unwrap();
    let claims =
        jsonwebtoken::decode::<Value>(&bearer, &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(), &validation)
            .unwrap()
            .claims;
    assert_eq!(claims["iss"], "Iv23liAbCdEf");
    assert_eq!(req.body().as_bytes(), b"{}");
}

/// A test RSA key (private PEM, public JWK), made once by the vault.
fn rsa_key() -> &'static (String, Value) {
    use base64::Engine as _;
    static KEY: OnceLock<(String, Value)> = OnceLock::new();
    KEY.get_or_init(|| {
        use latchkey_vault::identity::{SigningAlg, SigningKey};
        let key = SigningKey::generate(SigningAlg::Rs256).expect("an RSA key");
        let b64 = base64::engine::general_purpose::STANDARD.encode(key.pkcs8());
        let body: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("ascii")).collect();
        (
            format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", body.join("\n")),
            key.public_jwk().clone(),
        )
    })
}
