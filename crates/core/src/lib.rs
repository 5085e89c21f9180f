//! Latchkey's domain and engine.
//!
//! - [`config`]: the configuration model, parsed once and validated with every problem listed.
//! - [`template`]: `<name>` placeholders in paths, queries, headers and JSON bodies.
//! - [`auth`]: one file per authentication method, behind the closed enum [`auth::PreparedAuth`].
//! - [`engine`]: the call pipeline (resolve connector and call, obtain credential, build and
//!   sign the request, send) and the in-memory runtime that keeps the hot path free of store
//!   round trips and decryption.
//! - [`store`]: the `Store` trait that `latchkey-store` implements on SQLite and PostgreSQL.
//! - [`callers`]: admin and app keys: generation, hashing, constant-time verification, caching.
//!
//! Architecture invariant: core knows nothing of HTTP servers (no axum) or SQL (no sqlx).

pub mod auth;
pub mod callers;
pub mod clock;
pub mod config;
pub mod engine;
pub mod env;
pub mod error;
pub mod event;
pub mod http;
pub mod providers;
pub mod secret;
pub mod secrets;
pub mod store;
pub mod template;
pub mod time_fmt;
pub mod token;
pub mod upstream;

pub use env::Env;
pub use error::{CallError, ErrorCode, Origin, Retry};
