//! The store in one SQLite file: WAL journal, foreign keys on, a 5 s busy timeout.

use std::path::Path;
use std::str::FromStr;

use latchkey_core::store::StoreResult;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{ConnectOptions, Connection};

use crate::{Open, OpenError, WAIT, open_error};

static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

/// The store traits, implemented once in `src/sql/` and compiled here with SQLite's types.
#[expect(clippy::duplicate_mod, reason = "src/sql/ is compiled once per backend on purpose")]
#[path = "sql/mod.rs"]
mod sql;

/// Whether the migrations table is there (`sql/schema.rs`).
const HAS_MIGRATIONS: &str =
    "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations')";

/// What `sql/` is compiled for here.
type Db = sqlx::Sqlite;
type ThisStore = SqliteStore;

/// The generation bump of every write (see `sql/generation.rs`), returning the new value.
/// No one listens on SQLite: other processes notice by polling the generation.
const BUMP_GENERATION: &str = "UPDATE generation SET value = value + 1 WHERE id = 1 RETURNING value";

/// The sweep's row-locking clause: none, SQLite serializes writers (see `sql/sweep.rs`).
const SKIP_LOCKED: &str = "";

/// Writes serialize on SQLite anyway; a few connections let reads go on beside a write.
const MAX_CONNECTIONS: u32 = 4;

/// [`latchkey_core::store::Store`] on SQLite.
pub struct SqliteStore {
    pool: SqlitePool,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens `sqlite://PATH` (created if missing, with its directory) or `sqlite::memory:`
    /// (one connection, gone with the store), and migrates it.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        Self::open_url(url, Open::Migrate).await.map_err(|e| match e {
            OpenError::Store(e) => e,
            other => open_error("connect", url, &other),
        })
    }

    /// Opens `sqlite://PATH` or `sqlite::memory:` as `how` allows: with [`Open::Existing`]
    /// nothing is created (a missing file is [`OpenError::NoStore`]) or migrated.
    pub async fn open_url(url: &str, how: Open) -> Result<Self, OpenError> {
        let options = SqliteConnectOptions::from_str(url).map_err(|e| open_error("connect", url, &e))?;
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        Self::open_with(options, in_memory, url, how).await
    }

    /// Opens the database file at `path`, creating it (readable by its owner only) and its
    /// directory if missing, and migrates it.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        let options = SqliteConnectOptions::new().filename(path);
        Self::open_with(options, false, &path.display().to_string(), Open::Migrate).await.map_err(|e| match e {
            OpenError::Store(e) => e,
            other => open_error("connect", &path.display().to_string(), &other),
        })
    }

    async fn open_with(
        options: SqliteConnectOptions,
        in_memory: bool,
        shown: &str,
        how: Open,
    ) -> Result<Self, OpenError> {
        let create = how == Open::Migrate;
        let mut options = options.create_if_missing(create).busy_timeout(WAIT).foreign_keys(true);
        if create {
            // Kept in the file: an existing store is in WAL mode already, and an empty file
            // opened to look is left as it was.
            options = options.journal_mode(SqliteJournalMode::Wal);
        }
        let options = crate::statement_logging(options);
        if !in_memory && create {
            create_file(options.get_filename()).await.map_err(|e| open_error("connect", shown, &e))?;
        }
        if !in_memory && !create && !options.get_filename().exists() {
            return Err(OpenError::NoStore);
        }
        // One connection of its own first: it fails with the driver's own words rather than
        // a pool time-out, and it keeps an in-memory database alive until the pool holds it.
        let mut conn = options.connect().await.map_err(|e| open_error("connect", shown, &e))?;
        match how {
            Open::Migrate => MIGRATOR.run(&mut conn).await.map_err(|e| open_error("migrate", shown, &e))?,
            Open::Existing => {
                let applied = sql::schema::applied(&mut conn).await.map_err(|e| open_error("connect", shown, &e))?;
                crate::check_schema(applied, &MIGRATOR)?;
            }
        }
        let pool = if in_memory {
            SqlitePoolOptions::new().max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None)
        } else {
            SqlitePoolOptions::new().max_connections(MAX_CONNECTIONS)
        };
        let pool =
            pool.acquire_timeout(WAIT).connect_with(options).await.map_err(|e| open_error("connect", shown, &e))?;
        let _ = conn.close().await;
        Ok(SqliteStore { pool })
    }

    /// The underlying pool, for diagnostics and tests.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// None: processes sharing a SQLite file notice each other's writes by polling.
    fn change_feed(&self) -> Option<latchkey_core::store::ChangeFeed> {
        None
    }

    /// Waits for queries under way, then closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Creates the database file's directory, and the file itself empty with mode 0600, so that
/// SQLite (which gives its -wal and -shm files the main file's mode) never makes them
/// readable by others.
async fn create_file(path: &Path) -> std::io::Result<()> {
    if path.as_os_str().is_empty() || path.to_string_lossy().starts_with("file:") {
        return Ok(());
    }
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot create directory {}: {e}", dir.display())))?;
    }
    let mut open = tokio::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    open.mode(0o600);
    match open.open(path).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(std::io::Error::new(e.kind(), format!("cannot create {}: {e}", path.display()))),
    }
}
