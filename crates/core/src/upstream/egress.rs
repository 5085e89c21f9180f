//! SECURITY S16: connectors defined through the admin API reach only public addresses,
//! checked on the addresses a name resolves to at connect time (so DNS rebinding cannot
//! point an approved name at an internal service), unless the server's configuration sets
//! `api_connectors_private_egress = true`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::{CallError, ErrorCode};

/// Whether an address is on the public internet: not loopback, private (RFC 1918), shared
/// (RFC 6598), link-local (169.254.0.0/16, where cloud metadata services live), unique-local
/// IPv6, multicast, broadcast, reserved or unspecified, and not one of those wrapped in IPv6
/// (mapped, NAT64, 6to4); nor an IPv6 address whose IPv4 destination cannot be told (NAT64 for
/// local use, Teredo).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    let embedded_v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) reach the IPv4 address they carry.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return is_public_v4(embedded_v4(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return is_public_v4(embedded_v4(s[1], s[2]));
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated, still routed inside some sites)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        // NAT64 for local use (RFC 8215, 64:ff9b:1::/48): the operator chooses how it maps to
        // IPv4, so the address it reaches cannot be told.
        || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1)
        // Teredo (2001::/32): tunnels to an IPv4 address carried obfuscated in the address.
        || (s[0] == 0x2001 && s[1] == 0)
        || (s[0] == 0x2001 && s[1] == 2 && s[2] == 0) // benchmarking (2001:2::/48)
        || s[..4] == [0x100, 0, 0, 0] // discard-only (100::/64)
        || s[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible (deprecated)
}

/// The message for a refused destination.
pub fn refusal(host: &str, addrs: &[SocketAddr]) -> String {
    let shown: Vec<String> = addrs.iter().take(3).map(|a| a.ip().to_string()).collect();
    format!(
        "`{host}` resolves only to non-public addresses ({}): connectors defined through the admin API may reach only public addresses; define this connector in the configuration file, or set `api_connectors_private_egress = true` in [server]",
        shown.join(", ")
    )
}

/// Resolves `host` and keeps the public addresses; an error when there are none.
pub async fn resolve_public(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    let all: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("`{host}` could not be resolved: {e}"))?
        .collect();
    let public: Vec<SocketAddr> = all.iter().copied().filter(|a| is_public(a.ip())).collect();
    if public.is_empty() {
        return Err(refusal(host, &all));
    }
    Ok(public)
}

/// A reqwest resolver that hands out only public addresses, for the token, profile and
/// revocation requests of admin-API connectors. (reqwest does not resolve IP literals;
/// [`check_url`] refuses those before a request is built.)
pub struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = resolve_public(&host, 0).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Refuses a URL whose host is a non-public IP literal (names are checked when resolved):
/// `upstream_unreachable`, naming the field.
pub fn check_url(field: &str, url: &str) -> Result<(), CallError> {
    let Ok(parsed) = url::Url::parse(url) else { return Ok(()) };
    let ip = match parsed.host() {
        Some(url::Host::Ipv4(a)) => IpAddr::V4(a),
        Some(url::Host::Ipv6(a)) => IpAddr::V6(a),
        _ => return Ok(()),
    };
    if is_public(ip) {
        return Ok(());
    }
    Err(CallError::new(
        ErrorCode::UpstreamUnreachable,
        format!("{field}: {}", refusal(&ip.to_string(), &[SocketAddr::new(ip, 0)])),
    ))
}

/// How long a name in an API connector's definition may take to resolve when it is written.
const WRITE_RESOLVE_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// SECURITY S16 when an API connector is written: every URL of its definition that Latchkey
/// itself sends to (`base_url` and every other `*_url` but `authorize_url`, which only the
/// browser visits), refused with `egress_refused` naming its field when its host is a non-public
/// address or a name that resolves only to non-public addresses. A name that does not resolve
/// now is left to the check at connect time, which also catches a name rebound later.
pub async fn check_definition(definition: &serde_json::Value) -> Result<(), CallError> {
    let mut urls = Vec::new();
    collect_urls("", definition, &mut urls);
    for (field, url) in urls {
        let Ok(parsed) = url::Url::parse(&url) else { continue };
        let port = parsed.port_or_known_default().unwrap_or(443);
        let (host, addrs): (String, Vec<SocketAddr>) = match parsed.host() {
            Some(url::Host::Ipv4(a)) => (a.to_string(), vec![SocketAddr::new(IpAddr::V4(a), port)]),
            Some(url::Host::Ipv6(a)) => (a.to_string(), vec![SocketAddr::new(IpAddr::V6(a), port)]),
            Some(url::Host::Domain(name)) => {
                let found = tokio::time::timeout(WRITE_RESOLVE_WAIT, tokio::net::lookup_host((name, port))).await;
                match found {
                    Ok(Ok(addrs)) => (name.to_owned(), addrs.collect()),
                    _ => continue,
                }
            }
            None => continue,
        };
        if !addrs.is_empty() && !addrs.iter().any(|a| is_public(a.ip())) {
            let mut e = CallError::new(ErrorCode::EgressRefused, format!("{field}: {}", refusal(&host, &addrs)));
            e.details.insert("field".into(), field.into());
            return Err(e);
        }
    }
    Ok(())
}

/// The URLs under `value` with their dotted field names.
fn collect_urls(at: &str, value: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let field = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
                match v {
                    serde_json::Value::String(url) if k.ends_with("_url") && k != "authorize_url" => {
                        out.push((field, url.clone()));
                    }
                    _ => collect_urls(&field, v, out),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                collect_urls(&format!("{at}[{i}]"), v, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_definition_is_refused_at_the_first_private_url_naming_its_field() {
        let ok = serde_json::json!({"base_url": "https://8.8.8.8", "auth": {"authorize_url": "http://127.0.0.1/a"}});
        assert!(check_definition(&ok).await.is_ok(), "the browser's authorize_url is not Latchkey's egress");
        let bad = serde_json::json!({"base_url": "https://8.8.8.8", "auth": {"token_url": "http://10.0.0.1/token"}});
        let e = check_definition(&bad).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::EgressRefused);
        assert_eq!(e.details["field"], "auth.token_url");
        assert!(e.message.starts_with("auth.token_url: `10.0.0.1`"), "{}", e.message);
        let by_name = serde_json::json!({"base_url": "http://localhost:9/x"});
        assert_eq!(check_definition(&by_name).await.unwrap_err().details["field"], "base_url");
        let unknown = serde_json::json!({"base_url": "https://no-such-host.invalid"});
        assert!(check_definition(&unknown).await.is_ok(), "left to the check at connect time");
    }

    #[test]
    fn internal_and_wrapped_internal_addresses_are_not_public() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
            "::127.0.0.1",
            "64:ff9b:1::a00:1",
            "64:ff9b:1:ffff::808:808",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:2::1",
            "100::1",
            "fec0::1",
        ] {
            assert!(!is_public(a.parse().unwrap()), "{a} must not count as public");
        }
    }

    #[test]
    fn internet_addresses_are_public() {
        for a in [
            "8.8.8.8",
            "1.1.1.1",
            "100.128.0.1",
            "172.32.0.1",
            "2606:4700::1111",
            "64:ff9b::808:808",
            "2001:4860:4860::8888",
            "2001:1::1",
        ] {
            assert!(is_public(a.parse().unwrap()), "{a} is public");
        }
    }

    #[test]
    fn literal_urls_are_checked_and_names_are_left_to_resolution() {
        assert!(check_url("auth.token_url", "http://169.254.169.254/latest").is_err());
        assert!(check_url("auth.token_url", "https://[::1]:8443/token").is_err());
        assert!(check_url("auth.token_url", "https://8.8.8.8/token").is_ok());
        assert!(check_url("auth.token_url", "https://internal.example/token").is_ok());
    }
}
