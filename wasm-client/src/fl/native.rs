//! The native transport: HTTP(S) with reqwest (rustls), for `b3o client` and for simulated
//! participants talking to a real server.

use std::time::Duration;

use super::sse::SseParser;
use super::transport::{
    EventStream, Method, Request, Response, SseEvent, Transport, TransportError,
};

/// A server at `base` (e.g. `https://fl.example.org`).
#[derive(Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
    base: String,
    timeout: Duration,
}

impl HttpTransport {
    /// `base`: scheme, host and port, without a trailing path.
    pub fn new(base: &str) -> Result<HttpTransport, TransportError> {
        let base = base.trim().trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(TransportError::Other(format!(
                "`{base}` is not an http:// or https:// URL"
            )));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("b3o-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| TransportError::Other(e.to_string()))?;
        Ok(HttpTransport {
            client,
            base,
            // Large models upload slowly on thin links; a stalled request still ends.
            timeout: Duration::from_secs(300),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn build(&self, request: Request) -> reqwest::RequestBuilder {
        let url = format!("{}{}", self.base, request.path);
        let mut builder = match request.method {
            Method::Get => self.client.get(url),
            Method::Post => self.client.post(url).body(request.body),
        };
        for (name, value) in request.headers {
            builder = builder.header(name, value);
        }
        builder
    }
}

fn transport_error(e: reqwest::Error) -> TransportError {
    if e.is_timeout() {
        TransportError::Timeout
    } else if e.is_connect() {
        TransportError::Connect(e.to_string())
    } else if e.is_builder() {
        TransportError::Other(e.to_string())
    } else {
        TransportError::Io(e.to_string())
    }
}

fn headers(map: &reqwest::header::HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect()
}

impl Transport for HttpTransport {
    type Events = HttpEvents;

    async fn send(&self, request: Request) -> Result<Response, TransportError> {
        let response = self
            .build(request)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status().as_u16();
        let headers = headers(response.headers());
        let body = response.bytes().await.map_err(transport_error)?.to_vec();
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    async fn events(&self, request: Request) -> Result<HttpEvents, TransportError> {
        let response = self.build(request).send().await.map_err(transport_error)?;
        let status = response.status().as_u16();
        if !response.status().is_success() {
            let body = response.bytes().await.unwrap_or_default().to_vec();
            return Err(TransportError::Refused { status, body });
        }
        Ok(HttpEvents {
            response,
            parser: SseParser::new(),
        })
    }

    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await
    }
}

/// An open SSE response.
pub struct HttpEvents {
    response: reqwest::Response,
    parser: SseParser,
}

impl EventStream for HttpEvents {
    async fn next(&mut self) -> Result<Option<SseEvent>, TransportError> {
        loop {
            if let Some(event) = self.parser.next_event() {
                return Ok(Some(event));
            }
            match self.response.chunk().await.map_err(transport_error)? {
                Some(chunk) => self.parser.push(&chunk),
                None => return Ok(None),
            }
        }
    }
}

/// Privacy ledgers in a JSON file (`b3o client --privacy-ledger`): `{"ledgers": {key: ledger}}`,
/// the key prefixed with the server's base URL (one file serves several servers). Every save
/// rewrites the file through a temporary one, fsynced, then renamed over it: a crash leaves the
/// old ledger or the new one, never a torn file.
#[derive(Debug)]
pub struct FileLedger {
    path: std::path::PathBuf,
    prefix: String,
    lock: std::sync::Mutex<()>,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct LedgerFile {
    #[serde(default)]
    ledgers: std::collections::BTreeMap<String, b3o_models::dp::ledger::GroupLedger>,
}

impl FileLedger {
    /// Ledgers of the server at `server` kept in the file at `path` (created on first save).
    pub fn new(path: impl Into<std::path::PathBuf>, server: &str) -> FileLedger {
        FileLedger {
            path: path.into(),
            prefix: format!("{} ", server.trim_end_matches('/')),
            lock: std::sync::Mutex::new(()),
        }
    }

    fn read(&self) -> Result<LedgerFile, String> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("{} is not a privacy ledger: {e}", self.path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LedgerFile::default()),
            Err(e) => Err(format!("reading {}: {e}", self.path.display())),
        }
    }

    fn write(&self, file: &LedgerFile) -> Result<(), String> {
        use std::io::Write;
        let at = |e: std::io::Error| format!("writing {}: {e}", self.path.display());
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(at)?;
        let json = serde_json::to_vec_pretty(file).map_err(|e| e.to_string())?;
        let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(at)?;
        tmp.write_all(&json).map_err(at)?;
        tmp.as_file().sync_all().map_err(at)?;
        tmp.persist(&self.path).map_err(|e| at(e.error))?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl super::privacy::LedgerStore for FileLedger {
    fn load<'a>(
        &'a self,
        key: &'a str,
    ) -> super::privacy::StoreFuture<'a, Result<Option<b3o_models::dp::ledger::GroupLedger>, String>>
    {
        let found = {
            let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.read()
                .map(|mut f| f.ledgers.remove(&format!("{}{key}", self.prefix)))
        };
        Box::pin(async move { found })
    }

    fn save<'a>(
        &'a self,
        key: &'a str,
        ledger: &'a b3o_models::dp::ledger::GroupLedger,
    ) -> super::privacy::StoreFuture<'a, Result<(), String>> {
        let saved = {
            let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.read().and_then(|mut f| {
                f.ledgers
                    .insert(format!("{}{key}", self.prefix), ledger.clone());
                self.write(&f)
            })
        };
        Box::pin(async move { saved })
    }
}
