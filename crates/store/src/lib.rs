//! The [`Store`] trait of `latchkey-core` on SQLite ([`SqliteStore`], the default) and
//! PostgreSQL ([`PostgresStore`]), over sqlx.
//!
//! - [`connect`] picks the backend from the URL scheme (`sqlite://PATH`, `sqlite::memory:`,
//!   `postgres://…`, `postgresql://…`), runs the embedded migrations and returns the store;
//!   [`open`] with [`Open::Existing`] creates and migrates nothing, and says when there is no
//!   store or its schema is not this version's ([`OpenError`]).
//! - Both backends run the same SQL text through one implementation (`src/sql/`, one module
//!   per aggregate), compiled once per backend with its concrete types; rows are read through
//!   the `sqlx::FromRow` structs of `src/rows.rs`. The schemas live in `migrations/sqlite`
//!   and `migrations/postgres`.
//! - Every failure is [`StoreError::Unavailable`] naming the operation (the trait method, or
//!   `connect` / `migrate`) and sqlx's message, which never carries a bound value. A URL in a
//!   message is shown without its user and password ([`redact_url`]).

mod listen;
mod postgres;
mod rows;
mod sqlite;

use std::sync::Arc;

use latchkey_core::store::{Store, StoreError, StoreResult};

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// How long an operation waits for a free pooled connection, and SQLite for a lock.
const WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A statement slower than this is logged at warn.
const SLOW_STATEMENT: std::time::Duration = std::time::Duration::from_secs(1);

/// `options` logging each statement at trace (sqlx's default, debug, would print the sync's
/// poll every second at `LATCHKEY_LOG=debug`) and one slower than [`SLOW_STATEMENT`] at warn.
fn statement_logging<O: sqlx::ConnectOptions>(options: O) -> O {
    options.log_statements(log::LevelFilter::Trace).log_slow_statements(log::LevelFilter::Warn, SLOW_STATEMENT)
}

/// Which database a store URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend for `url`'s scheme, or `Unavailable` naming the scheme it does not know.
    pub fn of_url(url: &str) -> StoreResult<Backend> {
        let scheme = url.split_once(':').map(|(scheme, _)| scheme.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("sqlite") => Ok(Backend::Sqlite),
            Some("postgres" | "postgresql") => Ok(Backend::Postgres),
            Some(other) if !other.is_empty() && !other.contains(['/', '\\', '@']) => {
                Err(unsupported(format!("unsupported store URL scheme `{other}:`")))
            }
            // Not echoed: without a scheme there is no telling where a password would be.
            _ => Err(unsupported("the store URL has no scheme".to_owned())),
        }
    }
}

fn unsupported(what: String) -> StoreError {
    StoreError::Unavailable {
        op: "connect",
        reason: format!("{what}: use sqlite://PATH (or sqlite::memory:) or postgres://USER@HOST:PORT/DATABASE"),
    }
}

/// Opens the store `url` names, creating (SQLite) and migrating its schema as needed.
pub async fn connect(url: &str) -> StoreResult<Arc<dyn Store>> {
    open(url, Open::Migrate).await.map_err(|e| match e {
        OpenError::Store(e) => e,
        other => StoreError::Unavailable { op: "connect", reason: other.to_string() },
    })
}

/// What [`open`] may do to the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    /// Create (SQLite: the file too) and migrate the schema as needed.
    Migrate,
    /// Open only a store that is there with this version's schema: create and migrate nothing
    /// (for read-only commands, which should not change a database they were pointed at).
    Existing,
}

/// Why [`open`] did not open the store.
#[derive(Debug)]
pub enum OpenError {
    /// [`Open::Existing`]: the database holds no Latchkey store (no migrations table, or an
    /// empty one); nothing was created.
    NoStore,
    /// [`Open::Existing`]: the store's schema is older than this version's (`applied` is its
    /// last migration, `latest` this version's); nothing was migrated.
    Behind { applied: i64, latest: i64 },
    /// [`Open::Existing`]: the store's schema is newer than this version knows.
    Ahead { applied: i64, latest: i64 },
    /// The database could not be opened or migrated.
    Store(StoreError),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::NoStore => f.write_str("the database holds no Latchkey store"),
            OpenError::Behind { applied, latest } => write!(
                f,
                "the store's schema is at migration {applied}, older than this Latchkey's ({latest}), and this \
                 command does not migrate it: run `latchkey serve` with this version once (it migrates the store \
                 at start; see Upgrades in docs/operations.md), then try again"
            ),
            OpenError::Ahead { applied, latest } => write!(
                f,
                "the store's schema is at migration {applied}, newer than this Latchkey knows ({latest}): a newer \
                 Latchkey migrated it; use that version"
            ),
            OpenError::Store(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OpenError::Store(e) => Some(e),
            _ => None,
        }
    }
}

impl From<StoreError> for OpenError {
    fn from(e: StoreError) -> Self {
        OpenError::Store(e)
    }
}

/// Opens the store `url` names, as `how` allows.
pub async fn open(url: &str, how: Open) -> Result<Arc<dyn Store>, OpenError> {
    Ok(match Backend::of_url(url)? {
        Backend::Sqlite => Arc::new(SqliteStore::open_url(url, how).await?),
        Backend::Postgres => Arc::new(PostgresStore::open(url, how).await?),
    })
}

/// Whether the migrations `applied` (version, success), as the migrations table holds them,
/// are this version's `migrator`'s: `None` when there is no table.
fn check_schema(applied: Option<Vec<(i64, bool)>>, migrator: &sqlx::migrate::Migrator) -> Result<(), OpenError> {
    let applied = applied.unwrap_or_default();
    let Some(&(top, _)) = applied.iter().max_by_key(|(version, _)| *version) else {
        return Err(OpenError::NoStore);
    };
    let latest = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    if top > latest {
        return Err(OpenError::Ahead { applied: top, latest });
    }
    let done = |version| applied.iter().any(|&(v, success)| v == version && success);
    if migrator.iter().any(|m| !done(m.version)) {
        let applied = applied.iter().filter(|(_, success)| *success).map(|(v, _)| *v).max().unwrap_or(0);
        return Err(OpenError::Behind { applied, latest });
    }
    Ok(())
}

/// `url` without its userinfo (`user:password@`), for messages and logs.
///
/// Everything between `://` and the last `@` goes, so a password holding `/`, `?` or `@`
/// cannot leak; at worst a path holding `@` is shortened too.
pub fn redact_url(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    match url[start..].rfind('@') {
        Some(at) => format!("{}{}", &url[..start], &url[start + at + 1..]),
        None => url.to_owned(),
    }
}

/// The password in `url`'s userinfo, as written there, if any.
fn password_of(url: &str) -> Option<&str> {
    let start = url.find("://")? + 3;
    let userinfo = &url[start..start + url[start..].rfind('@')?];
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then_some(password)
}

/// `Unavailable` for a failure to open or migrate the store at `url`: names the URL without
/// userinfo, and scrubs the password from the driver's text in case it echoed it.
fn open_error(op: &'static str, url: &str, error: &dyn std::fmt::Display) -> StoreError {
    let mut error = error.to_string();
    if let Some(password) = password_of(url) {
        error = error.replace(password, "***");
    }
    StoreError::Unavailable { op, reason: format!("{}: {error}", redact_url(url)) }
}

/// Maps a sqlx error to `Unavailable` for the trait method `op`.
pub(crate) fn fail(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |error| StoreError::Unavailable { op, reason: error.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_userinfo() {
        assert_eq!(redact_url("postgres://alice:s3cret@db:5432/lk"), "postgres://db:5432/lk");
        assert_eq!(redact_url("postgres://alice:pa/ss@w?rd@db/lk?sslmode=require"), "postgres://db/lk?sslmode=require");
        assert_eq!(redact_url("postgres://db/lk"), "postgres://db/lk");
        assert_eq!(redact_url("sqlite:///var/lib/lk.db"), "sqlite:///var/lib/lk.db");
        assert_eq!(redact_url("sqlite::memory:"), "sqlite::memory:");
    }

    #[test]
    fn open_error_scrubs_the_password_from_the_reason() {
        let url = "postgres://alice:s3cret@db/lk";
        let error = open_error("connect", url, &"driver said s3cret and alice:s3cret");
        let text = error.to_string();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("postgres://db/lk: driver said *** and alice:***"), "{text}");
        // A user without a password is no secret, and its name may be a common word.
        let url = "postgres://postgres@db/lk";
        let text = open_error("connect", url, &"role \"postgres\" denied").to_string();
        assert!(text.contains("postgres://db/lk: role \"postgres\" denied"), "{text}");
    }

    #[test]
    fn picks_the_backend_from_the_scheme() {
        assert_eq!(Backend::of_url("sqlite:///x.db").unwrap(), Backend::Sqlite);
        assert_eq!(Backend::of_url("sqlite::memory:").unwrap(), Backend::Sqlite);
        assert_eq!(Backend::of_url("SQLite://x.db").unwrap(), Backend::Sqlite);
        assert_eq!(Backend::of_url("postgres://h/d").unwrap(), Backend::Postgres);
        assert_eq!(Backend::of_url("postgresql://h/d").unwrap(), Backend::Postgres);
        let error = Backend::of_url("mysql://root:pw@h/d").unwrap_err().to_string();
        assert!(error.contains("`mysql:`") && !error.contains("pw"), "{error}");
        let error = Backend::of_url("/var/lib/u:pw@x.db").unwrap_err().to_string();
        assert!(error.contains("no scheme") && !error.contains("pw"), "{error}");
    }
}
