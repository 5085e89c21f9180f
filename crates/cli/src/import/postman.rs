//! `latchkey import postman`.

use super::model::Connector;

pub fn import(_text: &str, _name: Option<&str>) -> anyhow::Result<(String, Connector)> {
    anyhow::bail!("not yet")
}
