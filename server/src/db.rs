//! Database connection: SQLite (WAL, foreign keys) by default, migrations embedded from
//! `server/migrations`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub type Db = SqlitePool;

/// Opens (creating if needed) the database at `url` and applies pending migrations.
pub async fn connect(url: &str) -> Result<Db, sqlx::Error> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // FULL: an acknowledged write survives power loss, not only a process crash.
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5));
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        // Bursts (a thousand simulated clients uploading at once) queue for SQLite's one
        // writer for seconds; only a wait past the busy timeout is worth a warning.
        .acquire_slow_threshold(Duration::from_secs(10))
        .connect_with(options)
        .await?;
    sqlx::migrate!("./migrations").run(&pool).await?;
    Ok(pool)
}

/// Begins a transaction that will write: `BEGIN IMMEDIATE` takes SQLite's write lock up front
/// (waiting up to the busy timeout). A deferred transaction that reads first and writes later
/// fails at once with `SQLITE_BUSY` when another connection wrote in between (WAL snapshot
/// upgrade), which under load turned a round's aggregation into "internal error".
pub async fn begin_write(db: &Db) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
    db.begin_with("BEGIN IMMEDIATE").await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of a round's close: read, then write, while another connection writes in
    /// between. Both writes must land.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_transaction_that_reads_then_writes_survives_a_concurrent_writer() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.sqlite3").display());
        let db = connect(&url).await.unwrap();
        sqlx::query("CREATE TABLE t (v INTEGER)")
            .execute(&db)
            .await
            .unwrap();
        let mut tx = begin_write(&db).await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        let other = {
            let db = db.clone();
            tokio::spawn(async move { sqlx::query("INSERT INTO t VALUES (2)").execute(&db).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        sqlx::query("INSERT INTO t VALUES (?)")
            .bind(n + 1)
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        other.await.unwrap().unwrap();
        let rows: Vec<i64> = sqlx::query_scalar("SELECT v FROM t ORDER BY rowid")
            .fetch_all(&db)
            .await
            .unwrap();
        assert_eq!(rows, vec![1, 2]);
    }
}
