//! The audit log (SECURITY S8): one JSON line per call (proxy or named) and per credential
//! change made through the API, written before the call goes upstream or the change is made.
//! When the line cannot be written the request is refused with 503 `unavailable` and nothing
//! else happens: fail closed, as Vault does with a blocked audit device. Strings that may carry
//! caller data (proxy paths and queries, user ids) appear only as HMAC-SHA256 under a
//! per-install key (`hmac-sha256:<hex>`); `POST /v1/admin/audit-hash` computes the same for a
//! value, so an admin can look it up. Secret values never appear, hashed or not.
//!
//! Each line is one `write(2)` to a file opened for appending: complete lines, in order, even
//! with several serving threads; durable when the process dies, not when the machine does
//! (no `fsync` per call).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use latchkey_core::ErrorCode;
use latchkey_core::engine::AuditKey;
use serde_json::{Map, Value};

use crate::ApiError;

pub struct Audit {
    file: Mutex<std::fs::File>,
    path: PathBuf,
    key: AuditKey,
}

impl Audit {
    /// Opens (or creates, readable by the owner only) the log at `path` for appending.
    pub fn open(path: &Path, key: AuditKey) -> std::io::Result<Audit> {
        let mut options = std::fs::OpenOptions::new();
        options.append(true).create(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        Ok(Audit { file: Mutex::new(options.open(path)?), path: path.to_owned(), key })
    }

    /// `hmac-sha256:<hex>` of `value` under the install's audit key.
    pub fn hash(&self, value: &str) -> String {
        latchkey_core::engine::audit::hash(&self.key, value)
    }

    /// Writes one record (`at` is added), or says why the request cannot go on.
    pub fn record(&self, kind: &str, mut fields: Map<String, Value>) -> Result<(), ApiError> {
        fields.insert("at".into(), latchkey_core::time_fmt::rfc3339(latchkey_core::time_fmt::now_ms()).into());
        fields.insert("kind".into(), kind.into());
        let mut line = serde_json::to_vec(&Value::Object(fields)).unwrap_or_default();
        line.push(b'\n');
        let written = self.file.lock().unwrap_or_else(|e| e.into_inner()).write_all(&line);
        written.map_err(|e| {
            tracing::error!(path = %self.path.display(), error = %e, "the audit log cannot be written: refusing calls and credential changes");
            ApiError::new(
                ErrorCode::Unavailable,
                format!(
                    "the audit log cannot be written ({e}); calls and credential changes are refused until it can be \
                     (check `[server] audit_log` and the disk)"
                ),
            )
        })
    }
}
