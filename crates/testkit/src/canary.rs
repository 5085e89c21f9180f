//! Canary secrets: unique values planted in every secret field, then searched for in
//! everything Latchkey emitted.

use std::path::Path;

/// A unique, recognisable secret value.
#[expect(clippy::disallowed_methods, reason = "a stand-in for another system, which has its own clock")]
pub fn canary(label: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("CANARY{label}x{nanos:x}x{n}")
}

static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The canaries (or their percent-encoded forms) found in `haystack`.
pub fn find<'a>(haystack: &[u8], canaries: &'a [String]) -> Vec<&'a str> {
    canaries.iter().filter(|c| contains(haystack, c.as_bytes())).map(String::as_str).collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every byte of every file under `dir` (the data directory: database, WAL, key file).
pub fn read_dir_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.extend_from_slice(&bytes);
            }
        }
    }
    out
}
