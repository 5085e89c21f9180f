//! `latchkey import openapi`.

use super::model::Connector;

pub struct Select {
    pub tags: Vec<String>,
    pub operations: Vec<String>,
}

pub fn import(_text: &str, _name: Option<&str>, _select: &Select) -> anyhow::Result<(String, Connector)> {
    anyhow::bail!("not yet")
}
