//! `api_key_query` and `api_key_header`.

use http::HeaderName;
use secrecy::{ExposeSecret, SecretString};

use super::sign::{QueryParam, Sign, StaticHeader};
use crate::CallError;

pub(super) fn query(name: &str, key: &SecretString) -> Box<dyn Sign> {
    Box::new(QueryParam::new(name, key.clone()))
}

pub(super) fn header(name: &str, prefix: Option<&str>, key: &SecretString) -> Result<Box<dyn Sign>, CallError> {
    let name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| CallError::internal(format!("`{name}` is not a valid header name")))?;
    let text = match prefix {
        Some(p) if !p.is_empty() => SecretString::from(format!("{p} {}", key.expose_secret())),
        _ => key.clone(),
    };
    Ok(Box::new(StaticHeader::new(name, text.expose_secret(), "the API key")?))
}
