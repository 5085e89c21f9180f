//! Test support for Latchkey's integration tests.
//!
//! - [`latchkey`]: run the real `latchkey` binary in its own data directory on port 0, capture
//!   everything it prints, and talk to it.
//! - [`peers`]: real third-party servers on loopback (httpbin under gunicorn, nginx with
//!   `ssl_verify_client`), started once per test binary; a missing peer fails the test with
//!   the command that installs it.
//! - [`recorder`]: an in-process upstream that records exactly what arrived (raw path, headers,
//!   body) and can misbehave on request (status codes, redirects, cookies, slowness).
//! - [`forwarder`]: an HTTP forwarder in front of a real peer that counts and records requests.
//! - [`canary`]: unique secret values and a scanner for them.
//! - [`hostile_provider`]: an OAuth provider whose answers a test writes: it echoes the
//!   request into its error, answers any JSON, or streams bodies too large to read.
//! - [`tcp_proxy`]: a TCP forwarder in front of the store that a test can pause (a network
//!   partition) or cut (a restart).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test and benchmark code: a panic is the failure report")]

pub mod canary;
pub mod fake_oauth;
pub mod forwarder;
pub mod hostile_provider;
pub mod latchkey;
pub mod peers;
pub mod recorder;
pub mod tcp_proxy;
