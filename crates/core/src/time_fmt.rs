//! Timestamps: stored as Unix milliseconds, shown as RFC 3339.

/// The system's time, from the one place that reads it ([`crate::clock::system_now_ms`]).
pub fn now_ms() -> i64 {
    crate::clock::system_now_ms()
}

pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}
