//! Headers that never cross Latchkey: hop-by-hop headers (RFC 9110 §7.6.1) and Latchkey's own
//! `Latchkey-*` headers, removed from a caller's request and from an upstream's answer alike.

use http::{HeaderMap, HeaderName, header};

/// Headers that belong to one connection, never forwarded in either direction (RFC 9110 §7.6.1),
/// and the obsolete `proxy-connection`. (`host` is dropped from a proxied request apart, in
/// `build::proxied`; `content-length` stays: it frames the caller's body, which is sent as it
/// came.)
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-connection",
];

/// Where `name` is in [`HOP_BY_HOP`]: a `match`, which compiles to a test of the length first.
fn hop_by_hop_index(name: &str) -> Option<usize> {
    Some(match name {
        "connection" => 0,
        "keep-alive" => 1,
        "proxy-authenticate" => 2,
        "proxy-authorization" => 3,
        "te" => 4,
        "trailer" => 5,
        "transfer-encoding" => 6,
        "upgrade" => 7,
        "proxy-connection" => 8,
        _ => return None,
    })
}

/// Removes the hop-by-hop headers (and those `Connection` names) and every `Latchkey-*` header,
/// from a caller's request and from an upstream's answer alike.
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none of them, or only `Connection: keep-alive` (nginx sends it on
    // every response): one pass over the names, and no allocation unless `Connection` names
    // a header that is not hop-by-hop anyway, or a `Latchkey-*` header is there.
    let mut present = 0u16;
    let mut ours = false;
    for k in headers.keys() {
        let name = k.as_str();
        if let Some(i) = hop_by_hop_index(name) {
            present |= 1 << i;
        } else if name.starts_with("latchkey-") {
            ours = true;
        }
    }
    if ours {
        strip_latchkey_headers(headers);
    }
    if present == 0 {
        return;
    }
    let names_others = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|n| !HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(n)) && headers.contains_key(n));
    if names_others {
        return strip_named(headers);
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(*name);
        }
    }
}

/// Removes every `Latchkey-*` header: between the caller and Latchkey they are Latchkey's own
/// (`Latchkey-User` in, `Latchkey-Error` out), never the upstream's or the caller's to pass on.
fn strip_latchkey_headers(headers: &mut HeaderMap) {
    let ours: Vec<HeaderName> = headers.keys().filter(|k| k.as_str().starts_with("latchkey-")).cloned().collect();
    for k in ours {
        headers.remove(&k);
    }
}

/// The hop-by-hop headers, every header `Connection` names, and every `Latchkey-*` header.
fn strip_named(headers: &mut HeaderMap) {
    let named: Vec<&str> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    // Only the names present are removed: each removal hashes its name.
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| {
            HOP_BY_HOP.contains(&k.as_str())
                || k.as_str().starts_with("latchkey-")
                || named.iter().any(|n| n.eq_ignore_ascii_case(k.as_str()))
        })
        .cloned()
        .collect();
    for h in doomed {
        headers.remove(h);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hop_by_hop_index_names_the_list() {
        for (i, name) in super::HOP_BY_HOP.iter().enumerate() {
            assert_eq!(super::hop_by_hop_index(name), Some(i));
        }
        assert_eq!(super::hop_by_hop_index("accept"), None);
        assert_eq!(super::hop_by_hop_index("Connection"), None, "header names are lower case here");
    }

    /// The fast path of `strip_hop_by_hop` removes what the general one (`strip_named`)
    /// removes, for every combination of a few headers and `Connection` values.
    #[test]
    fn hop_by_hop_stripping_matches_the_general_rule() {
        use http::{HeaderMap, HeaderName, HeaderValue};
        let names = ["keep-alive", "te", "x-private", "close", "upgrade", "latchkey-error", "transfer-encoding"];
        let connection = ["", "keep-alive", "close", "Keep-Alive, TE", "x-private", "upgrade, X-Private", "close,te"];
        let mut checked = 0;
        for value in connection {
            for mask in 0u32..(1 << names.len()) {
                let mut headers = HeaderMap::new();
                if !value.is_empty() {
                    headers.insert(http::header::CONNECTION, HeaderValue::from_static(value));
                }
                for (i, n) in names.iter().enumerate() {
                    if mask & (1 << i) != 0 {
                        headers.append(HeaderName::from_static(n), HeaderValue::from_static("v"));
                    }
                }
                let mut fast = headers.clone();
                super::strip_hop_by_hop(&mut fast);
                let mut general = headers;
                super::strip_named(&mut general);
                assert_eq!(fast, general, "Connection: {value:?}, headers {mask:#b}");
                checked += 1;
            }
        }
        assert_eq!(checked, connection.len() << names.len());
    }
}
