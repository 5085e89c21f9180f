//! The one hardened HTTP client builder. Clippy forbids `reqwest::Client::builder` elsewhere.

use std::time::Duration;

/// Redirects are returned to the caller, never followed (credentials must not travel to
/// another origin); connections are pooled and kept alive; no system proxy is consulted.
#[allow(clippy::disallowed_methods)]
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .no_proxy()
        .user_agent(concat!("latchkey/", env!("CARGO_PKG_VERSION")))
}

#[expect(clippy::expect_used, reason = "the default HTTP client configuration is valid")]
pub fn default_client() -> reqwest::Client {
    client_builder().build().expect("the default HTTP client configuration is valid")
}
