//! Several `b3o serve` replicas on one Postgres database and one S3-compatible object store
//! (`s3s-fs`), behind a real haproxy: the deployment of issue #15, for browser tests that
//! cross replicas. Needs `B3O_TEST_POSTGRES` (a Postgres server, `postgres://user@host:port`,
//! where this harness creates a fresh database with `psql`), `B3O_S3S_FS` (the `s3s-fs`
//! binary) and `haproxy`; `scripts/test.sh` provides all three for its e2e step.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::{Server, free_port};

const BUCKET: &str = "b3o-blobs";
const ACCESS_KEY: &str = "b3o-e2e-access";
const SECRET_KEY: &str = "b3o-e2e-secret-0123456789";

/// What a fleet needs that this machine lacks, if anything (the test then says so and skips).
pub fn missing() -> Option<String> {
    let mut missing = Vec::new();
    if std::env::var_os("B3O_TEST_POSTGRES").is_none() {
        missing.push("B3O_TEST_POSTGRES (a Postgres server)");
    }
    if std::env::var_os("B3O_S3S_FS").is_none() {
        missing.push("B3O_S3S_FS (the s3s-fs binary)");
    }
    if !runs(&haproxy(), "-v") {
        missing.push("haproxy");
    }
    (!missing.is_empty()).then(|| missing.join(", "))
}

fn haproxy() -> String {
    std::env::var("B3O_HAPROXY").unwrap_or_else(|_| "haproxy".into())
}

fn runs(bin: &str, arg: &str) -> bool {
    Command::new(bin)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `psql` on the PATH, else Debian's versioned one.
fn psql() -> Result<PathBuf> {
    if runs("psql", "--version") {
        return Ok("psql".into());
    }
    let found = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|d| d.path().join("bin/psql"))
        .find(|p| p.exists());
    found.context("psql not found (Debian's postgresql-client)")
}

/// A fresh database on `B3O_TEST_POSTGRES`; its URL.
fn create_database() -> Result<String> {
    let server = std::env::var("B3O_TEST_POSTGRES").context("B3O_TEST_POSTGRES is not set")?;
    let server = server.trim_end_matches('/');
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .subsec_nanos();
    let name = format!("b3o_e2e_{}_{nanos}", std::process::id());
    let out = Command::new(psql()?)
        .args(["-v", "ON_ERROR_STOP=1", "-q"])
        .arg(format!("{server}/postgres"))
        .args(["-c", &format!("CREATE DATABASE {name}")])
        .output()
        .context("running psql")?;
    ensure!(
        out.status.success(),
        "CREATE DATABASE {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(format!("{server}/{name}"))
}

fn wait_listening(port: u16, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("{what} never listened on port {port}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// A child process killed (and reaped) on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Replicas, the balancer in front of them, and what they share. Fields drop in order: the
/// balancer, the replicas, then the object store and its files.
pub struct Fleet {
    /// haproxy: the one origin browsers and clients use.
    pub balancer: Server,
    /// Each replica, by its own origin; `None` once killed.
    pub replicas: Vec<Option<Server>>,
    _s3: Killed,
    _dir: tempfile::TempDir,
}

impl Fleet {
    /// `n` replicas of `b3o serve` with extra `args`, on a fresh Postgres database and a
    /// fresh bucket, behind haproxy configured as `deploy/haproxy.cfg` is (health checks on
    /// `/readyz`, connection failures retried on another replica, round robin).
    pub fn start(n: usize, args: &[&str]) -> Result<Fleet> {
        if let Some(missing) = missing() {
            bail!("a fleet needs {missing}");
        }
        let dir = tempfile::tempdir()?;
        let root = dir.path().join("s3");
        std::fs::create_dir_all(root.join(BUCKET))?;
        let s3_port = free_port()?;
        let s3 = Command::new(std::env::var_os("B3O_S3S_FS").context("B3O_S3S_FS")?)
            .args(["--host", "127.0.0.1", "--port", &s3_port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&root)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting s3s-fs")?;
        let s3 = Killed(s3);
        wait_listening(s3_port, "s3s-fs")?;
        let blob_store = format!(
            "s3://{BUCKET}?endpoint=http://127.0.0.1:{s3_port}&region=us-east-1\
             &access_key_id={ACCESS_KEY}&secret_access_key={SECRET_KEY}"
        );
        let database = create_database()?;
        let mut all = vec![
            "--database-url",
            &database,
            "--blob-store",
            &blob_store,
            "--trust-proxy",
        ];
        all.extend_from_slice(args);
        // One after the other: the first migrates the database and creates the administrator.
        let replicas = (0..n)
            .map(|_| Server::start_with(&all).map(Some))
            .collect::<Result<Vec<_>>>()?;

        let port = free_port()?;
        let servers: String = replicas
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, r)| format!("    server r{i} {}\n", r.url.trim_start_matches("http://")))
            .collect();
        let cfg = format!(
            "global\n    maxconn 2048\n\
             defaults\n    mode http\n    timeout connect 1s\n    timeout client 60s\n\
             \x20   timeout server 60s\n    timeout tunnel 1h\n    retries 3\n\
             \x20   retry-on conn-failure\n    option redispatch 1\n\
             frontend b3o\n    bind 127.0.0.1:{port}\n    option forwardfor\n\
             \x20   default_backend replicas\n\
             backend replicas\n    balance roundrobin\n    option httpchk\n\
             \x20   http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host b3o\n\
             \x20   http-check expect status 200\n\
             \x20   default-server check inter 300ms fall 1 rise 1\n{servers}"
        );
        let cfg_path = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg_path, cfg)?;
        let lb = Command::new(haproxy())
            .arg("-db")
            .arg("-f")
            .arg(&cfg_path)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting haproxy")?;
        let balancer = Server::wrap(lb, format!("http://127.0.0.1:{port}"))?;
        wait_listening(port, "haproxy")?;
        Ok(Fleet {
            balancer,
            replicas,
            _s3: s3,
            _dir: dir,
        })
    }

    /// Kills replica `i` with SIGKILL, as `kill -9` does.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut replica) = self.replicas[i].take() {
            replica.stop();
        }
    }
}
