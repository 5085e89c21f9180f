pub mod authlib;
pub mod browser;
pub mod certs;
pub mod httpbin;
pub mod nginx;
pub mod oidc;
pub(crate) mod process;
pub mod verifiers;
