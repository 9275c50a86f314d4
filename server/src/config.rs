//! Operator-facing settings of `b3o serve`: flags, each also settable by environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    /// Address to listen on.
    #[arg(long, env = "B3O_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// Directory holding the SQLite database and model blobs; created if missing.
    #[arg(long, env = "B3O_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Database URL; defaults to the SQLite file `b3o.sqlite3` inside the data directory.
    #[arg(long, env = "B3O_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Directory of the built web app (index.html, assets/); the API runs without it.
    #[arg(long, env = "B3O_STATIC_DIR", default_value = "./dist")]
    pub static_dir: PathBuf,
}

impl ServeConfig {
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("b3o.sqlite3").display()))
    }
}
