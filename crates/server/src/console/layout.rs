//! The console's page shell: the document, the navigation, notices, error pages and the one
//! stylesheet (served from the binary at `/console/style.css`, so the CSP needs no inline
//! style). Every value goes through maud's escaping; nothing here concatenates HTML.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use maud::{DOCTYPE, Markup, html};

use super::session::Operator;

/// Which page the navigation marks as current (`None`: the sign-in and error pages, which
/// show no navigation).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    None,
    Connectors,
    Secrets,
    Keys,
    Connections,
    Events,
    Users,
}

const LINKS: [(Nav, &str, &str); 6] = [
    (Nav::Connectors, "/console/connectors", "Connectors"),
    (Nav::Secrets, "/console/secrets", "Secrets"),
    (Nav::Keys, "/console/keys", "App keys"),
    (Nav::Connections, "/console/connections", "Connections"),
    (Nav::Events, "/console/events", "Events"),
    (Nav::Users, "/console/users", "Users and signing keys"),
];

/// A message at the top of a page: what a form did, or why it did not.
pub(crate) struct Notice {
    error: bool,
    text: String,
}

impl Notice {
    pub fn info(text: &str) -> Notice {
        Notice { error: false, text: text.to_owned() }
    }

    pub fn error(text: &str) -> Notice {
        Notice { error: true, text: text.to_owned() }
    }
}

/// A whole page: `body` under a heading `title`, with the navigation when `operator` is
/// signed in.
pub(crate) fn page(nav: Nav, title: &str, notice: Option<Notice>, operator: Option<&Operator>, body: Markup) -> Markup {
    let header = html! {
        span.brand { "Latchkey console" }
        @if let (Some(op), true) = (operator, nav != Nav::None) {
            nav aria-label="Console" {
                ul {
                    @for (n, href, label) in LINKS {
                        li {
                            @if n == nav {
                                a href=(href) aria-current="page" { (label) }
                            } @else {
                                a href=(href) { (label) }
                            }
                        }
                    }
                }
            }
            form.signout method="post" action="/console/sign-out" {
                (op.csrf_field())
                button type="submit" { "Sign out" }
            }
        }
    };
    let shell = Shell { site: "Latchkey console", stylesheet: "/console/style.css" };
    shell.document(title, header, notice, body)
}

/// The document every HTML page of Latchkey shares (the console's and the connect page's):
/// which site it is (in the title) and its stylesheet (served by Latchkey; the CSP allows no
/// inline style), a skip link, a header, and `main` with its heading and notice.
pub(crate) struct Shell<'a> {
    pub site: &'a str,
    pub stylesheet: &'a str,
}

impl Shell<'_> {
    pub(crate) fn document(&self, title: &str, header: Markup, notice: Option<Notice>, body: Markup) -> Markup {
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    meta name="referrer" content="no-referrer";
                    title { (title) " · " (self.site) }
                    link rel="stylesheet" href=(self.stylesheet);
                }
                body {
                    a.skip href="#main" { "Skip to content" }
                    header { (header) }
                    main #main tabindex="-1" {
                        h1 { (title) }
                        @if let Some(n) = notice {
                            @if n.error {
                                p.notice.error role="alert" { (n.text) }
                            } @else {
                                p.notice role="status" { (n.text) }
                            }
                        }
                        (body)
                    }
                }
            }
        }
    }
}

/// An error as a page (the console never answers JSON).
pub(crate) fn error_page(status: StatusCode, message: &str) -> Response {
    let reason = status.canonical_reason().unwrap_or("Error");
    let body = html! {
        p.notice.error role="alert" { (message) }
        p { a href="/console" { "Back to the console" } }
    };
    super::html(status, page(Nav::None, reason, None, None, body))
}

/// `GET /console/style.css`.
pub(crate) async fn style() -> Response {
    let mut response = STYLE.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    response
}

/// Plain, readable, usable on a phone (one column under 40 rem; tables scroll sideways), with
/// a visible focus ring on every control.
pub(crate) const STYLE: &str = r#"
:root { color-scheme: light dark; --fg: #1b1f24; --bg: #ffffff; --muted: #57606a; --line: #d0d7de; --accent: #0b57d0; --ok: #116329; --bad: #a40e26; --panel: #f6f8fa; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6edf3; --bg: #0d1117; --muted: #9aa4ae; --line: #30363d; --accent: #6ea8fe; --ok: #3fb950; --bad: #ff7b72; --panel: #161b22; } }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
a { color: var(--accent); }
:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
.skip { position: absolute; left: -10000px; }
.skip:focus { left: 1rem; top: 1rem; background: var(--bg); padding: .5rem; z-index: 1; }
header { display: flex; flex-wrap: wrap; align-items: center; gap: .5rem 1rem; padding: .75rem 1rem; border-bottom: 1px solid var(--line); background: var(--panel); }
.brand { font-weight: 700; }
nav ul { display: flex; flex-wrap: wrap; gap: .25rem .75rem; list-style: none; margin: 0; padding: 0; }
nav a[aria-current] { font-weight: 700; text-decoration-thickness: 3px; }
.signout { margin-left: auto; }
main { padding: 1rem; max-width: 72rem; }
main:focus { outline: none; }
h1 { font-size: 1.5rem; margin: .25rem 0 1rem; }
h2 { font-size: 1.2rem; margin: 1.5rem 0 .5rem; }
.notice { padding: .5rem .75rem; border-left: 4px solid var(--ok); background: var(--panel); }
.notice.error { border-color: var(--bad); }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; }
caption { text-align: left; padding: .25rem 0; }
ul.plain { list-style: none; margin: 0; padding: 0; }
th, td { text-align: left; vertical-align: top; padding: .4rem .5rem; border-bottom: 1px solid var(--line); }
th { font-weight: 600; }
.ok { color: var(--ok); }
.bad { color: var(--bad); }
.muted, .help { color: var(--muted); font-size: .9rem; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .9rem; }
pre { background: var(--panel); padding: .75rem; overflow-x: auto; white-space: pre-wrap; word-break: break-all; max-height: 32rem; }
form.card, fieldset { display: grid; gap: .5rem; max-width: 32rem; padding: 1rem; border: 1px solid var(--line); border-radius: 6px; margin: 0 0 1rem; }
form.inline { display: inline; }
form.filters { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: end; margin-bottom: 1rem; }
form.filters label { display: grid; gap: .25rem; }
form.filters input, form.filters select { font-weight: 400; }
label { font-weight: 600; }
input, select, textarea, button { font: inherit; padding: .45rem .6rem; border: 1px solid var(--line); border-radius: 6px; color: var(--fg); background: var(--bg); min-height: 2.5rem; }
textarea { min-height: 5rem; }
input, select, textarea { max-width: 100%; }
p, li { overflow-wrap: anywhere; }
legend { font-weight: 600; padding: 0 .25rem; }
button { cursor: pointer; background: var(--accent); color: #fff; border-color: var(--accent); }
button.danger { background: var(--bad); border-color: var(--bad); }
button.secondary { background: var(--bg); color: var(--fg); border-color: var(--line); }
.shown-once { display: block; padding: .75rem; border: 2px dashed var(--ok); word-break: break-all; }
@media (max-width: 40rem) { main { padding: .75rem; } .signout { margin-left: 0; } th, td { padding: .35rem; } }
"#;
