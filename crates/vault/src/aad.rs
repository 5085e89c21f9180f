/// Associated data that binds a ciphertext to its record: what kind of record, which one,
/// which field, which environment. Changing any part makes the ciphertext fail to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aad {
    kind: &'static str,
    id: String,
    field: &'static str,
    env: &'static str,
}

impl Aad {
    pub fn new(kind: &'static str, id: impl Into<String>, field: &'static str, env: &'static str) -> Self {
        Self { kind, id: id.into(), field, env }
    }

    pub(crate) fn bytes(&self) -> Vec<u8> {
        // Length-prefixed, so no two different records can produce the same bytes.
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(b"latchkey-aad-v1");
        for part in [self.kind, self.id.as_str(), self.field, self.env] {
            out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
        out
    }

    /// A human description of the record, for integrity errors (names only, no values).
    pub fn describe(&self) -> String {
        format!("{} `{}` field `{}` ({})", self.kind, self.id, self.field, self.env)
    }
}
