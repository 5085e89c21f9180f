//! `basic`: RFC 7617 `Authorization: Basic base64(username:password)`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::header::AUTHORIZATION;
use secrecy::{ExposeSecret, SecretString};

use super::sign::{Sign, StaticHeader};
use crate::CallError;

pub(super) fn header(username: &str, password: &SecretString) -> Result<Box<dyn Sign>, CallError> {
    let encoded =
        SecretString::from(format!("Basic {}", STANDARD.encode(format!("{username}:{}", password.expose_secret()))));
    Ok(Box::new(StaticHeader::new(AUTHORIZATION, encoded.expose_secret(), "the password")?))
}
