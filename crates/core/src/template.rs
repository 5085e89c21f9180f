//! `<name>` placeholders.
//!
//! - In a path, a placeholder is one percent-encoded path segment; values that could climb out
//!   of it (`/`, `\`, `.`, `..`, control characters, or the encoded forms of these) are refused.
//! - In a query or header value, a placeholder inserts text; CR, LF and NUL are refused.
//! - In a JSON body template, a string that is exactly `"<name>"` becomes the parameter's JSON
//!   value, and `<name>` inside a longer string becomes its text, JSON-escaped by serde_json, so
//!   no value can leave its string.

use std::collections::BTreeMap;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

use crate::CallError;

/// Characters kept as they are in a path segment: RFC 3986 unreserved, plus a few sub-delims
/// and `@`/`:` that are harmless inside one segment. Everything else is percent-encoded.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'!')
    .remove(b'$')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b',')
    .remove(b';')
    .remove(b'=')
    .remove(b':')
    .remove(b'@');

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Lit(String),
    Param(String),
}

/// A text template split into literals and placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(pub Vec<Part>);

pub fn is_param_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Text {
    pub fn parse(s: &str) -> Text {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = s;
        while let Some(open) = rest.find('<') {
            let after = &rest[open + 1..];
            match after.find('>') {
                Some(close) if is_param_name(&after[..close]) => {
                    lit.push_str(&rest[..open]);
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Param(after[..close].to_owned()));
                    rest = &after[close + 1..];
                }
                _ => {
                    lit.push_str(&rest[..=open]);
                    rest = after;
                }
            }
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Text(parts)
    }

    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|p| match p {
            Part::Param(n) => Some(n.as_str()),
            Part::Lit(_) => None,
        })
    }

    /// The single parameter, if the template is exactly one placeholder.
    pub fn sole_param(&self) -> Option<&str> {
        match self.0.as_slice() {
            [Part::Param(n)] => Some(n),
            _ => None,
        }
    }

    pub fn has_params(&self) -> bool {
        self.params().next().is_some()
    }

    /// Renders a query or header value. `None` when the template is one absent parameter
    /// (the entry is then left out).
    pub fn render_value(&self, values: &Values, what: &str) -> Result<Option<String>, CallError> {
        if let Some(p) = self.sole_param()
            && !values.contains_key(p)
        {
            return Ok(None);
        }
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Lit(l) => out.push_str(l),
                Part::Param(p) => {
                    if let Some(v) = values.get(p) {
                        let text = text_of(v);
                        if text.contains(['\r', '\n', '\0']) {
                            return Err(CallError::invalid_params(format!(
                                "parameter `{p}` contains a line break or NUL, which cannot go into {what}"
                            )));
                        }
                        out.push_str(&text);
                    }
                }
            }
        }
        Ok(Some(out))
    }

    /// Renders a path: each placeholder becomes one encoded segment.
    pub fn render_path(&self, values: &Values) -> Result<String, CallError> {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Lit(l) => out.push_str(l),
                Part::Param(p) => {
                    let v = values
                        .get(p)
                        .ok_or_else(|| CallError::invalid_params(format!("parameter `{p}` is needed for the path")))?;
                    if matches!(v, Value::Array(_) | Value::Object(_) | Value::Null) {
                        return Err(CallError::invalid_params(format!(
                            "parameter `{p}` goes into the path and must be a string, number or boolean"
                        )));
                    }
                    let text = text_of(v);
                    check_segment(p, &text)?;
                    out.extend(utf8_percent_encode(&text, SEGMENT));
                }
            }
        }
        Ok(out)
    }
}

/// Refuses a path-segment value that could escape its segment, here or after an upstream
/// decodes it once more.
fn check_segment(name: &str, text: &str) -> Result<(), CallError> {
    let bad = |why: &str| Err(CallError::invalid_params(format!("parameter `{name}` is one path segment and {why}")));
    if text.is_empty() {
        return bad("cannot be empty");
    }
    let decoded = percent_encoding::percent_decode_str(text).decode_utf8_lossy();
    for t in [text, decoded.as_ref()] {
        if t.contains(['/', '\\']) {
            return bad("cannot contain `/` or `\\` (encoded or not)");
        }
        if is_dot_segment(t) {
            return bad("cannot be `.` or `..` (nor `..;…`, which some servers read as `..`)");
        }
        if t.chars().any(char::is_control) {
            return bad("cannot contain control characters (CR, LF, NUL, ...)");
        }
    }
    Ok(())
}

/// Whether a path segment means `.` or `..` to some server: one or two dots, each possibly
/// written `%2e`, alone or followed by path parameters (`;…`, also `%3b`), which Tomcat and
/// Spring strip before they resolve dot segments (`/..;/` climbs). Allocation-free: it runs on
/// every proxied call.
pub(crate) fn is_dot_segment(segment: &str) -> bool {
    let (mut rest, mut dots) = (segment.as_bytes(), 0);
    while !rest.is_empty() {
        rest = match rest {
            [b'.', tail @ ..] => tail,
            [b'%', b'2', e, tail @ ..] if e.eq_ignore_ascii_case(&b'e') => tail,
            [b';', ..] => break,
            [b'%', b'3', b, ..] if b.eq_ignore_ascii_case(&b'b') => break,
            _ => return false,
        };
        dots += 1;
        if dots > 2 {
            return false;
        }
    }
    dots > 0
}

/// The text of a JSON value: strings as they are, other values as JSON.
pub fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

pub type Values = BTreeMap<String, Value>;

/// A JSON body template.
#[derive(Debug, Clone, PartialEq)]
pub struct Body(Value);

impl Body {
    pub fn new(v: Value) -> Body {
        Body(v)
    }

    /// Every placeholder used anywhere in the template (in strings, not in keys).
    pub fn params(&self) -> Vec<String> {
        fn walk(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::String(s) => out.extend(Text::parse(s).params().map(str::to_owned)),
                Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
                Value::Object(o) => o.values().for_each(|x| walk(x, out)),
                _ => {}
            }
        }
        let mut out = Vec::new();
        walk(&self.0, &mut out);
        out
    }

    /// The template as JSON (placeholders unrendered).
    pub fn render_json(&self) -> Value {
        self.0.clone()
    }

    pub fn render(&self, values: &Values) -> Value {
        fn walk(v: &Value, values: &Values) -> Value {
            match v {
                Value::String(s) => {
                    let t = Text::parse(s);
                    if let Some(p) = t.sole_param() {
                        return values.get(p).cloned().unwrap_or(Value::Null);
                    }
                    if !t.has_params() {
                        return v.clone();
                    }
                    let mut out = String::new();
                    for part in &t.0 {
                        match part {
                            Part::Lit(l) => out.push_str(l),
                            Part::Param(p) => out.push_str(&values.get(p).map(text_of).unwrap_or_default()),
                        }
                    }
                    Value::String(out)
                }
                Value::Array(a) => Value::Array(a.iter().map(|x| walk(x, values)).collect()),
                Value::Object(o) => Value::Object(o.iter().map(|(k, x)| (k.clone(), walk(x, values))).collect()),
                other => other.clone(),
            }
        }
        walk(&self.0, values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vals(pairs: &[(&str, Value)]) -> Values {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
    }

    #[test]
    fn parses_placeholders_and_keeps_other_angle_brackets() {
        let t = Text::parse("/a/<id>/b<x y>/<_z9>");
        assert_eq!(
            t.0,
            vec![
                Part::Lit("/a/".into()),
                Part::Param("id".into()),
                Part::Lit("/b<x y>/".into()),
                Part::Param("_z9".into())
            ]
        );
    }

    #[test]
    fn path_segments_are_encoded() {
        let t = Text::parse("/customers/<id>");
        let out = t.render_path(&vals(&[("id", json!("a b?c#d@e%f"))])).unwrap();
        assert_eq!(out, "/customers/a%20b%3Fc%23d@e%25f");
        assert_eq!(t.render_path(&vals(&[("id", json!(42))])).unwrap(), "/customers/42");
    }

    #[test]
    fn hostile_path_values_are_refused() {
        let t = Text::parse("/c/<id>");
        for bad in ["../x", "..", ".", "%2F", "a%2fb", "%2e%2e", "//evil.example", "a\\b", "a\r\nb", "a\0b", "", "%5c"]
        {
            let err = t.render_path(&vals(&[("id", json!(bad))])).unwrap_err();
            assert_eq!(err.code, crate::ErrorCode::InvalidParams, "{bad:?} was accepted");
        }
        let err = t.render_path(&vals(&[("id", json!({"a": 1}))])).unwrap_err();
        assert_eq!(err.code, crate::ErrorCode::InvalidParams);
    }

    /// Tomcat and Spring strip `;` path parameters before resolving dot segments: `..;` climbs.
    #[test]
    fn dot_segments_with_path_parameters_are_refused() {
        let t = Text::parse("/c/<id>");
        for bad in ["..;", "..;x=1", ".;", "%2e%2e;", "%2E%2e;jsessionid=1", "..%3b", "%2e%2e%3Bx", ".%3b"] {
            let err = t.render_path(&vals(&[("id", json!(bad))])).unwrap_err();
            assert_eq!(err.code, crate::ErrorCode::InvalidParams, "{bad:?} was accepted");
        }
        for good in ["a;b", "..a", "...", "a..;", ";x", "v1.2;rev=3"] {
            assert!(t.render_path(&vals(&[("id", json!(good))])).is_ok(), "{good:?} was refused");
        }
    }

    #[test]
    fn header_values_refuse_line_breaks_and_absent_sole_params_are_omitted() {
        let t = Text::parse("Bearer <tok>");
        assert!(t.render_value(&vals(&[("tok", json!("a\r\nX-Evil: 1"))]), "a header").is_err());
        assert_eq!(Text::parse("<x>").render_value(&Values::new(), "q").unwrap(), None);
        assert_eq!(Text::parse("v=<x>").render_value(&Values::new(), "q").unwrap(), Some("v=".into()));
    }

    #[test]
    fn body_values_stay_inside_their_strings() {
        let body = Body::new(json!({"customer": "<id>", "text": "note: <text>", "tags": "<tags>", "n": 1}));
        let evil = "\", \"admin\": true, \"x\": \"";
        let out = body.render(&vals(&[("id", json!(7)), ("text", json!(evil)), ("tags", json!(["a", "b"]))]));
        assert_eq!(out, json!({"customer": 7, "text": format!("note: {evil}"), "tags": ["a", "b"], "n": 1}));
        let text = serde_json::to_string(&out).unwrap();
        let back: Value = serde_json::from_str(&text).unwrap();
        assert!(back.get("admin").is_none());
        assert_eq!(body.render(&Values::new())["customer"], Value::Null);
    }
}
