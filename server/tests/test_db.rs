//! The database every test runs on: SQLite in the test's directory by default, or a fresh
//! Postgres database per directory when `B3O_TEST_POSTGRES` names a server
//! (`postgres://user@host:port`; `scripts/test.sh` starts one from Debian's `postgresql`
//! and runs the suite a second time with it). The same directory always gets the same
//! database, so a test that restarts `b3o serve` on its data directory finds its rows again.

use std::path::Path;

use sqlx::Connection;

/// The variable that switches the suite to Postgres.
pub const POSTGRES_ENV: &str = "B3O_TEST_POSTGRES";

/// Where a test's URL is kept in its directory.
const MARKER: &str = ".test-database-url";

/// The database URL for a test whose files live in `dir` (created if needed).
pub fn database_url(dir: &Path) -> String {
    let Ok(server) = std::env::var(POSTGRES_ENV) else {
        return format!("sqlite://{}", dir.join("b3o.sqlite3").display());
    };
    std::fs::create_dir_all(dir).expect("creating the test directory");
    let marker = dir.join(MARKER);
    if let Ok(url) = std::fs::read_to_string(&marker) {
        return url;
    }
    let name = format!("b3o_test_{:016x}", rand::random::<u64>());
    let server = server.trim_end_matches('/').to_string();
    let create = format!("CREATE DATABASE {name}");
    let admin = format!("{server}/postgres");
    // Its own runtime on its own thread: callers may be sync or inside a runtime.
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(async move {
                sqlx::any::install_default_drivers();
                let mut conn = sqlx::AnyConnection::connect(&admin)
                    .await
                    .unwrap_or_else(|e| panic!("connecting to {admin} ({POSTGRES_ENV}): {e}"));
                sqlx::query(&create)
                    .execute(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("{create}: {e}"));
            })
    })
    .join()
    .expect("creating the test database");
    let url = format!("{server}/{name}");
    std::fs::write(&marker, &url).expect("keeping the test database's URL");
    url
}

/// Whether the suite runs on Postgres.
pub fn on_postgres() -> bool {
    std::env::var_os(POSTGRES_ENV).is_some()
}

/// The `b3o serve` environment that points a spawned server at the test's database.
pub fn serve_env(data_dir: &Path) -> Vec<(&'static str, String)> {
    if on_postgres() {
        vec![("B3O_DATABASE_URL", database_url(data_dir))]
    } else {
        Vec::new()
    }
}

/// Opens the database of a test directory (migrated), for tests that look inside.
pub async fn open(dir: &Path) -> b3o_server::db::Db {
    b3o_server::db::connect(&database_url(dir))
        .await
        .expect("opening the test database")
}

/// Points directory `to` at the database of directory `from`: a second `b3o serve` started
/// on `to` (with [`serve_env`]) is a replica of the first. Postgres only.
pub fn share_database(from: &Path, to: &Path) {
    assert!(on_postgres(), "replicas share a database on Postgres only");
    std::fs::create_dir_all(to).expect("creating the test directory");
    std::fs::write(to.join(MARKER), database_url(from)).expect("sharing the database's URL");
}
