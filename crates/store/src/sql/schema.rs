//! Which migrations the database holds, read without changing anything (for
//! [`crate::Open::Existing`]).

use super::{Db, HAS_MIGRATIONS};

const APPLIED: &str = "SELECT version, success FROM _sqlx_migrations ORDER BY version";

/// The migrations applied (version, success), or `None` when there is no migrations table.
pub(crate) async fn applied(
    conn: &mut <Db as sqlx::Database>::Connection,
) -> Result<Option<Vec<(i64, bool)>>, sqlx::Error> {
    if !sqlx::query_scalar::<_, bool>(HAS_MIGRATIONS).fetch_one(&mut *conn).await? {
        return Ok(None);
    }
    Ok(Some(sqlx::query_as::<_, (i64, bool)>(APPLIED).fetch_all(&mut *conn).await?))
}
