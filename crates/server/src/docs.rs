//! `GET /docs/errors`: the error reference (`docs/errors.md`, built into the binary) as a page
//! this Latchkey serves itself, since a self-hosted install has no public documentation site.
//! Each code's section is anchored by the code, so an error body's `doc_url`
//! (`/docs/errors#<code>`) opens at its explanation. The page is made once, on first use: the
//! Markdown is shown as it is written, escaped, with each `## \`code\`` heading made an anchor.

use std::sync::OnceLock;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};

/// Where the error reference is served; error bodies' `doc_url` is this and `#<code>`.
pub const ERRORS_PATH: &str = "/docs/errors";

const ERRORS_MD: &str = include_str!("../../../docs/errors.md");

#[utoipa::path(get, path = "/docs/errors", tag = "health", responses((status = 200, description = "The error reference (docs/errors.md) as a page, each code's section anchored by the code (`#upstream_timeout`): where an error body's `doc_url` points.", content_type = "text/html", body = String)))]
pub async fn errors() -> Response {
    static PAGE: OnceLock<bytes::Bytes> = OnceLock::new();
    let page = PAGE.get_or_init(|| bytes::Bytes::from(page(ERRORS_MD))).clone();
    let mut r = page.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    r
}

/// The Markdown as a page: text as written, in `<pre>`; headings as headings, a code's
/// section (`## \`name\``) with the id `name`.
fn page(markdown: &str) -> String {
    let mut out = String::from(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Latchkey: errors</title>\
         <style>body{max-width:50rem;margin:auto;font-family:sans-serif}pre{white-space:pre-wrap}</style>\
         </head><body>\n<pre>",
    );
    for line in markdown.lines() {
        let heading = line.strip_prefix("## ").map(|h| (2, h)).or_else(|| line.strip_prefix("# ").map(|h| (1, h)));
        match heading {
            Some((level, text)) => {
                let code = text.strip_prefix('`').and_then(|t| t.strip_suffix('`'));
                let id = code.map(|c| format!(" id=\"{}\"", escape(c))).unwrap_or_default();
                out.push_str(&format!("</pre>\n<h{level}{id}>{}</h{level}>\n<pre>", escape(text)));
            }
            None => {
                out.push_str(&escape(line));
                out.push('\n');
            }
        }
    }
    out.push_str("</pre>\n</body></html>\n");
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    /// Every error code has its section, anchored by the code, so every `doc_url` leads
    /// somewhere.
    #[test]
    fn every_error_code_has_an_anchor_on_the_page() {
        let page = super::page(super::ERRORS_MD);
        for code in latchkey_core::ErrorCode::ALL {
            let anchor = format!("<h2 id=\"{}\">", code.as_str());
            assert!(page.contains(&anchor), "docs/errors.md has no section `## `{code}``");
        }
        assert!(!page.contains("<script"), "unescaped text");
        assert!(super::page("a <b> & \"c\"").contains("<pre>a &lt;b&gt; &amp; &quot;c&quot;\n"));
    }
}
