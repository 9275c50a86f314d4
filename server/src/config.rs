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
    /// The server is reached over HTTPS (directly or through a TLS-terminating proxy): session
    /// cookies get `Secure` and the `__Host-` name prefix.
    #[arg(long, env = "B3O_BEHIND_TLS")]
    pub behind_tls: bool,
    /// Let anyone create an account at `POST /api/auth/register`.
    #[arg(long, env = "B3O_ALLOW_REGISTRATION", default_value_t = true, action = clap::ArgAction::Set)]
    pub allow_registration: bool,
    /// How long a login session lasts, in hours.
    #[arg(long, env = "B3O_SESSION_TTL_HOURS", default_value_t = 168)]
    pub session_ttl_hours: u32,
    /// Take the client address for login rate limits from the last `X-Forwarded-For` entry
    /// (only behind a reverse proxy that sets it; otherwise clients could forge it).
    #[arg(long, env = "B3O_TRUST_PROXY")]
    pub trust_proxy: bool,
    /// Origins besides our own allowed to embed the app in a frame (the embed widget), comma
    /// separated, e.g. `https://intranet.example.org`.
    #[arg(long, env = "B3O_FRAME_ANCESTORS", value_delimiter = ',')]
    pub frame_ancestors: Vec<String>,
    /// Email of the first administrator, created at first start only.
    #[arg(long, env = "B3O_ADMIN_EMAIL")]
    pub admin_email: Option<String>,
    /// Password of the first administrator; without it a one-time password is generated and
    /// printed once. Prefer the environment variable to the flag (flags show in `ps`).
    #[arg(long, env = "B3O_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// Largest accepted model update upload, in bytes.
    #[arg(long, env = "B3O_MAX_UPDATE_BYTES", default_value_t = crate::federation::DEFAULT_MAX_UPDATE_BYTES)]
    pub max_update_bytes: usize,
}

impl ServeConfig {
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("b3o.sqlite3").display()))
    }
}
