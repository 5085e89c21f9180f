//! The store on PostgreSQL, shared by every instance of a deployment.

use std::str::FromStr;

use latchkey_core::store::StoreResult;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};

use crate::{Open, OpenError, WAIT, open_error};

static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

/// The store traits, implemented once in `src/sql/` and compiled here with PostgreSQL's types.
#[expect(clippy::duplicate_mod, reason = "src/sql/ is compiled once per backend on purpose")]
#[path = "sql/mod.rs"]
mod sql;

/// The generation bump of every write (see `sql/generation.rs`), returning the new value and
/// notifying [`crate::listen::CHANNEL`] of it, which PostgreSQL delivers when (and only if)
/// the write commits. A function in `FROM` sees the items before it.
const BUMP_GENERATION: &str = "WITH bumped AS (UPDATE generation SET value = value + 1 WHERE id = 1 RETURNING value) \
     SELECT bumped.value FROM bumped, pg_notify('latchkey_changes', bumped.value::text)";

/// The sweep's subquery locks the rows it picks, skipping rows another sweeper (or a writer)
/// holds, so concurrent sweeps delete disjoint rows and never wait (see `sql/sweep.rs`).
const SKIP_LOCKED: &str = " FOR UPDATE SKIP LOCKED";

/// Whether the migrations table is there (`sql/schema.rs`).
const HAS_MIGRATIONS: &str = "SELECT to_regclass('_sqlx_migrations') IS NOT NULL";

/// What `sql/` is compiled for here.
type Db = sqlx::Postgres;
type ThisStore = PostgresStore;

/// [`latchkey_core::store::Store`] on PostgreSQL.
pub struct PostgresStore {
    pool: PgPool,
    /// What the pool connects with, for the change feed's connection of its own.
    options: PgConnectOptions,
    /// When the change feed checks its connection.
    listen_check: crate::listen::Check,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to `postgres://…` or `postgresql://…` (an existing database) and migrates it.
    /// Migrations take PostgreSQL's advisory lock, so instances starting together are safe.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        Self::open(url, Open::Migrate).await.map_err(|e| match e {
            OpenError::Store(e) => e,
            other => open_error("connect", url, &other),
        })
    }

    /// Connects to `postgres://…` or `postgresql://…` (an existing database): with
    /// [`Open::Migrate`] migrates it, with [`Open::Existing`] only checks that it holds a store
    /// with this version's schema.
    pub async fn open(url: &str, how: Open) -> Result<Self, OpenError> {
        let options =
            PgConnectOptions::from_str(url).map_err(|e| open_error("connect", url, &e))?.application_name("latchkey");
        let options = crate::statement_logging(options);
        // One connection of its own first: it fails with the driver's own words (refused,
        // unknown database, authentication) rather than a pool time-out after retries.
        let mut conn = options.connect().await.map_err(|e| open_error("connect", url, &e))?;
        let schema = match how {
            Open::Migrate => MIGRATOR.run(&mut conn).await.map_err(|e| open_error("migrate", url, &e).into()),
            Open::Existing => sql::schema::applied(&mut conn)
                .await
                .map_err(|e| open_error("connect", url, &e).into())
                .and_then(|applied| crate::check_schema(applied, &MIGRATOR)),
        };
        let _ = conn.close().await;
        schema?;
        let pool = PgPoolOptions::new()
            .acquire_timeout(WAIT)
            .connect_with(options.clone())
            .await
            .map_err(|e| open_error("connect", url, &e))?;
        Ok(PostgresStore { pool, options, listen_check: crate::listen::Check::DEFAULT })
    }

    /// The underlying pool, for diagnostics and tests.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Starts a change feed on a connection of its own (see [`crate::listen`]).
    fn change_feed(&self) -> Option<latchkey_core::store::ChangeFeed> {
        crate::listen::start(&self.options, self.listen_check)
    }

    /// For tests: change feeds started later check their connection after `quiet` without a
    /// notice (30 s by default) and give the check `quiet` to answer (5 s).
    #[doc(hidden)]
    pub fn check_change_feed_after(&mut self, quiet: std::time::Duration) {
        self.listen_check = crate::listen::Check { quiet, answer: quiet };
    }

    /// Waits for queries under way, then closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_bump_notifies_the_channel_the_feed_listens_on() {
        assert!(super::BUMP_GENERATION.contains(&format!("pg_notify('{}',", crate::listen::CHANNEL)));
    }
}
