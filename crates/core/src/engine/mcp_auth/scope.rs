//! The scope words of tokens MCP clients are given (and of `POST /v1/users/{id}/tokens` with a
//! `scope`): `tools` (every tool the user may use), `connector:NAME` (the tools of connector
//! NAME), `tool:NAME` (one tool). `/mcp` narrows the tools a token sees by them; here they are
//! only checked against the tools there are, and put in words for the consent page.

use crate::engine::mirror::Mirror;

/// What a client that asks for no scope gets.
pub const DEFAULT: &str = "tools";
/// The most words a scope may have (and characters it may take).
const MAX_WORDS: usize = 50;
const MAX_LEN: usize = 400;

/// One word of a granted scope, in words for the consent page: what it lets the client use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeLine {
    pub word: String,
    pub text: String,
    /// The tools it covers (their names), in name order.
    pub tools: Vec<String>,
}

/// Every tool there is: (tool name, connector).
fn tools(mirror: &Mirror) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = mirror
        .connectors()
        .iter()
        .flat_map(|c| c.config.tools(&c.name).map(|(t, _, _)| (t, c.name.clone())).collect::<Vec<_>>())
        .collect();
    out.sort();
    out
}

/// The scope as granted: its words checked, each once, in the order given; an empty scope is
/// [`DEFAULT`]. The error names the first word that is no scope and says which there are.
pub(crate) fn check(mirror: &Mirror, scope: &str) -> Result<String, String> {
    if scope.len() > MAX_LEN {
        return Err(format!("is longer than {MAX_LEN} characters: ask for `tools`, or fewer words"));
    }
    let all = tools(mirror);
    let mut words: Vec<&str> = Vec::new();
    for w in scope.split(' ').filter(|w| !w.is_empty()) {
        let known = match w.split_once(':') {
            None => w == "tools",
            Some(("connector", name)) => all.iter().any(|(_, c)| c == name),
            Some(("tool", name)) => all.iter().any(|(t, _)| t == name),
            Some(_) => false,
        };
        if !known {
            let shown: String = w.chars().take(80).filter(|c| !c.is_control()).collect();
            return Err(format!(
                "`{shown}` is not a scope here: use `tools`, `connector:NAME` (a connector with tools) or `tool:NAME` (a tool's name)"
            ));
        }
        if !words.contains(&w) {
            words.push(w);
        }
    }
    if words.len() > MAX_WORDS {
        return Err(format!("has more than {MAX_WORDS} words: ask for `tools`, or fewer words"));
    }
    Ok(if words.is_empty() { DEFAULT.to_owned() } else { words.join(" ") })
}

/// The scopes to advertise (`scopes_supported`): `tools`, then each connector with tools and
/// each tool.
pub(crate) fn supported(mirror: &Mirror) -> Vec<String> {
    let all = tools(mirror);
    let mut connectors: Vec<&str> = all.iter().map(|(_, c)| c.as_str()).collect();
    connectors.sort_unstable();
    connectors.dedup();
    let mut out = vec![DEFAULT.to_owned()];
    out.extend(connectors.iter().map(|c| format!("connector:{c}")));
    out.extend(all.iter().map(|(t, _)| format!("tool:{t}")));
    out
}

/// A granted scope in words, one line per word.
pub(crate) fn describe(mirror: &Mirror, scope: &str) -> Vec<ScopeLine> {
    let all = tools(mirror);
    scope
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let (text, tools): (String, Vec<String>) = match w.split_once(':') {
                Some(("connector", name)) => (
                    format!("Use the tools of {name}"),
                    all.iter().filter(|(_, c)| c == name).map(|(t, _)| t.clone()).collect(),
                ),
                Some(("tool", name)) => (format!("Use the tool {name}"), vec![name.to_owned()]),
                _ => ("Use every tool you may use".to_owned(), all.iter().map(|(t, _)| t.clone()).collect()),
            };
            ScopeLine { word: w.to_owned(), text, tools }
        })
        .collect()
}
