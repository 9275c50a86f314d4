//! Database connection: SQLite (WAL, foreign keys, `synchronous = FULL`) by default, Postgres
//! when the URL says `postgres://`. Both run behind sqlx's `Any` driver, so every handler runs
//! the same SQL on either: `$1`-style placeholders (SQLite reads them as numbered ones),
//! integers for flags, timestamps bound from Rust ([`now_text`]) rather than SQL date
//! functions. Migrations are kept in one directory per dialect (`server/migrations/sqlite`,
//! `server/migrations/postgres`), with the same versions.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{Any, AnyPool, ConnectOptions, Connection, Executor};

pub type Db = AnyPool;
/// One connection (inside a transaction, `&mut *tx`).
pub type Conn = sqlx::AnyConnection;
/// A transaction on [`Db`].
pub type Tx = sqlx::Transaction<'static, Any>;

/// Which SQL engine a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The engine a database URL names, or an error naming the scheme.
    pub fn of_url(url: &str) -> Result<Self, sqlx::Error> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            let scheme = url.split(':').next().unwrap_or_default();
            Err(sqlx::Error::Configuration(
                format!(
                    "unsupported database URL scheme {scheme:?}: use sqlite://<file> or postgres://<user>@<host>/<database>"
                )
                .into(),
            ))
        }
    }
}

/// The dialect of an open pool.
pub fn dialect(db: &Db) -> Dialect {
    match db.connect_options().database_url.scheme() {
        "sqlite" => Dialect::Sqlite,
        _ => Dialect::Postgres,
    }
}

/// How a pool behaves under load: the server's (durable) or a throwaway simulation's.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    pub max_connections: u32,
    /// SQLite's `synchronous`: `FULL` (an acknowledged write survives power loss) or `OFF`.
    pub sqlite_synchronous_full: bool,
    /// How long SQLite waits for its one writer.
    pub sqlite_busy_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 8,
            sqlite_synchronous_full: true,
            sqlite_busy_timeout: Duration::from_secs(5),
        }
    }
}

/// Opens (creating if needed) the database at `url` and applies pending migrations.
pub async fn connect(url: &str) -> Result<Db, sqlx::Error> {
    connect_with(url, PoolSettings::default()).await
}

/// [`connect`] with explicit pool settings.
pub async fn connect_with(url: &str, settings: PoolSettings) -> Result<Db, sqlx::Error> {
    sqlx::any::install_default_drivers();
    let dialect = Dialect::of_url(url)?;
    if dialect == Dialect::Sqlite {
        prepare_sqlite_file(url).await?;
    }
    let options = AnyConnectOptions::from_str(url)?;
    // Each connection to `sqlite::memory:` is a database of its own: such a pool keeps one,
    // for as long as it lives.
    let memory = dialect == Dialect::Sqlite && is_memory(url);
    let pool = AnyPoolOptions::new()
        .max_connections(if memory { 1 } else { settings.max_connections })
        .idle_timeout((!memory).then_some(Duration::from_secs(600)))
        .max_lifetime((!memory).then_some(Duration::from_secs(1800)))
        // Bursts (a thousand simulated clients uploading at once) queue for SQLite's one
        // writer for seconds; only a wait past the busy timeout is worth a warning.
        .acquire_slow_threshold(Duration::from_secs(10))
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if dialect == Dialect::Sqlite {
                    let sync = if settings.sqlite_synchronous_full {
                        "FULL"
                    } else {
                        "OFF"
                    };
                    let millis = settings.sqlite_busy_timeout.as_millis();
                    conn.execute(
                        format!(
                            "PRAGMA foreign_keys = ON; PRAGMA synchronous = {sync}; PRAGMA busy_timeout = {millis}"
                        )
                        .as_str(),
                    )
                    .await?;
                }
                Ok(())
            })
        })
        .connect_with(options)
        .await?;
    match dialect {
        Dialect::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await?,
        Dialect::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await?,
    }
    Ok(pool)
}

/// Creates the SQLite file if missing and switches it to WAL once (a setting kept in the
/// file; switching needs a lock that the busy timeout cannot wait for, so it is done here, on
/// one connection, before the pool opens). In-memory databases are left alone.
async fn prepare_sqlite_file(url: &str) -> Result<(), sqlx::Error> {
    if is_memory(url) {
        return Ok(());
    }
    let conn = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(5))
        .connect()
        .await?;
    conn.close().await
}

fn is_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

/// The key of the advisory lock every Postgres write transaction takes ("b3o" in ASCII).
const WRITE_LOCK: i64 = 0x0062_336f;

/// Begins a transaction that will write, serialised with every other such transaction on
/// the same database — across processes, so that replicas on one Postgres decide round
/// transitions exactly once:
/// - SQLite: `BEGIN IMMEDIATE` takes the write lock up front (waiting up to the busy
///   timeout). A deferred transaction that reads first and writes later fails at once with
///   `SQLITE_BUSY` when another connection wrote in between (WAL snapshot upgrade), which
///   under load turned a round's aggregation into "internal error".
/// - Postgres: a transaction-scoped advisory lock (`pg_advisory_xact_lock`), released at
///   commit or rollback, so what the transaction read stays true until it commits.
pub async fn begin_write(db: &Db) -> Result<Tx, sqlx::Error> {
    begin_exclusive(db, WRITE_LOCK).await
}

/// Like [`begin_write`], but serialised on Postgres only with the transactions that name the
/// same `lock` (SQLite has one write lock for everything): for writes that touch tables no
/// round transition reads, such as the rate limits' (`accounts::rate_limit`).
pub async fn begin_exclusive(db: &Db, lock: i64) -> Result<Tx, sqlx::Error> {
    match dialect(db) {
        Dialect::Sqlite => db.begin_with("BEGIN IMMEDIATE").await,
        Dialect::Postgres => {
            let mut tx = db.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(lock)
                .execute(&mut *tx)
                .await?;
            Ok(tx)
        }
    }
}

/// Now as the text every timestamp column holds (RFC 3339, UTC, milliseconds, `Z`), the
/// same on every dialect and replica.
pub fn now_text() -> String {
    text_at(time::OffsetDateTime::now_utc())
}

/// [`now_text`]'s format for another instant (`now - duration` cut-offs compare as text).
pub fn text_at(now: time::OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    now.format(&format)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

/// A yes/no read from either dialect: SQLite keeps flags and the value of `EXISTS` or `x IS
/// NULL` as integers, Postgres answers such expressions with booleans. Decodes both (a
/// non-zero integer is yes); flags are stored as integers 0/1 on both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag(pub bool);

impl From<Flag> for bool {
    fn from(flag: Flag) -> bool {
        flag.0
    }
}

impl sqlx::Type<Any> for Flag {
    fn type_info() -> sqlx::any::AnyTypeInfo {
        <i64 as sqlx::Type<Any>>::type_info()
    }

    fn compatible(ty: &sqlx::any::AnyTypeInfo) -> bool {
        <i64 as sqlx::Type<Any>>::compatible(ty) || <bool as sqlx::Type<Any>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, Any> for Flag {
    fn decode(value: sqlx::any::AnyValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        match <i64 as sqlx::Decode<'r, Any>>::decode(value.clone()) {
            Ok(n) => Ok(Flag(n != 0)),
            Err(_) => <bool as sqlx::Decode<'r, Any>>::decode(value).map(Flag),
        }
    }
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
        sqlx::query("CREATE TABLE t (n INTEGER PRIMARY KEY, v INTEGER)")
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
            tokio::spawn(async move {
                sqlx::query("INSERT INTO t (v) VALUES (2)")
                    .execute(&db)
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        sqlx::query("INSERT INTO t (v) VALUES ($1)")
            .bind(n + 1)
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        other.await.unwrap().unwrap();
        let rows: Vec<i64> = sqlx::query_scalar("SELECT v FROM t ORDER BY n")
            .fetch_all(&db)
            .await
            .unwrap();
        assert_eq!(rows, vec![1, 2]);
    }

    #[test]
    fn timestamps_have_the_columns_format() {
        let now = now_text();
        assert_eq!(now.len(), "2026-12-06T06:05:17.123Z".len(), "{now}");
        assert!(now.ends_with('Z') && now.as_bytes()[10] == b'T', "{now}");
    }

    #[test]
    fn urls_name_their_dialect() {
        assert_eq!(Dialect::of_url("sqlite://x.db").unwrap(), Dialect::Sqlite);
        assert_eq!(Dialect::of_url("sqlite::memory:").unwrap(), Dialect::Sqlite);
        assert_eq!(
            Dialect::of_url("postgres://b3o@localhost/b3o").unwrap(),
            Dialect::Postgres
        );
        let err = Dialect::of_url("mysql://x").unwrap_err().to_string();
        assert!(err.contains("mysql"), "{err}");
    }
}
