//! A TCP proxy in front of a server that can *hold* update uploads: while holding, a
//! connection whose client starts a `POST /api/groups/{id}/rounds/{n}/update` stops being
//! forwarded (the request never reaches the server, the browser waits for an answer), as when
//! a partner's network goes away in the middle of an upload. Everything else is piped both
//! ways untouched, and the bytes the server sends are counted (what a browser downloads, on
//! the wire: headers and compressed bodies, from the page, its workers and its service worker
//! alike). Loopback only.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The proxy: its own origin, and the switch.
pub struct HoldingProxy {
    /// `http://127.0.0.1:<port>`: what the browser opens instead of the server.
    pub url: String,
    hold: Arc<AtomicBool>,
    held: Arc<AtomicUsize>,
    downloaded: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

/// The start of an update upload's request line, and its end.
const UPLOAD_START: &[u8] = b"POST /api/groups/";
const UPLOAD_END: &[u8] = b"/update HTTP/1.1\r\n";

impl HoldingProxy {
    /// Listens on a free loopback port and forwards to `target` (`http://127.0.0.1:<port>`).
    pub async fn start(target: &str) -> Result<HoldingProxy> {
        let target = target
            .strip_prefix("http://")
            .context("the target is not http://")?
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let hold = Arc::new(AtomicBool::new(false));
        let held = Arc::new(AtomicUsize::new(0));
        let downloaded = Arc::new(AtomicU64::new(0));
        let (h, n, d) = (hold.clone(), held.clone(), downloaded.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (target, hold, held, down) = (target.clone(), h.clone(), n.clone(), d.clone());
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&target).await {
                        pipe(client, server, hold, held, down).await;
                    }
                });
            }
        });
        Ok(HoldingProxy {
            url,
            hold,
            held,
            downloaded,
            task,
        })
    }

    /// Holds (`true`) or forwards (`false`) the update uploads that start from now on.
    pub fn hold_uploads(&self, hold: bool) {
        self.hold.store(hold, Ordering::SeqCst);
    }

    /// How many uploads were held so far.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    /// Bytes the server has sent through the proxy so far (responses, headers included).
    pub fn downloaded(&self) -> u64 {
        self.downloaded.load(Ordering::SeqCst)
    }
}

impl Drop for HoldingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Pipes `client` and `server` both ways until either closes; the client's bytes are watched
/// for an upload's request line while holding.
async fn pipe(
    client: TcpStream,
    server: TcpStream,
    hold: Arc<AtomicBool>,
    held: Arc<AtomicUsize>,
    downloaded: Arc<AtomicU64>,
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let down = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = server_read.read(&mut buf).await {
            if n == 0 || client_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
            downloaded.fetch_add(n as u64, Ordering::SeqCst);
        }
    });
    let mut buf = vec![0u8; 64 * 1024];
    // The last bytes seen, for a request line split across reads.
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match client_read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if hold.load(Ordering::SeqCst) {
            let mut seen = std::mem::take(&mut tail);
            seen.extend_from_slice(&buf[..n]);
            if let Some(at) = upload_line(&seen) {
                // Forward what came before the upload's request line, then nothing more.
                let before = at.saturating_sub(seen.len() - n);
                let _ = server_write.write_all(&buf[..before]).await;
                held.fetch_add(1, Ordering::SeqCst);
                // Read and drop until the browser gives up (the tab closes).
                while let Ok(n) = client_read.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
                break;
            }
            let keep = seen.len().saturating_sub(256);
            tail = seen[keep..].to_vec();
        }
        if server_write.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    down.abort();
}

/// Where an update upload's request line starts in `bytes`, if one is there whole.
fn upload_line(bytes: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = find(&bytes[from..], UPLOAD_START) {
        let start = from + i;
        let line_end = find(&bytes[start..], b"\r\n").map(|e| start + e + 2)?;
        if bytes[..line_end].ends_with(UPLOAD_END) {
            return Some(start);
        }
        from = start + 1;
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_an_upload_request_line_and_nothing_else() {
        let get = b"GET /api/groups/3/rounds/current HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        assert_eq!(upload_line(&get), None);
        let mut both = get.clone();
        both.extend_from_slice(b"POST /api/groups/3/rounds/1/update HTTP/1.1\r\nHost: x\r\n");
        assert_eq!(upload_line(&both), Some(get.len()));
        let failure = b"POST /api/groups/3/rounds/1/failure HTTP/1.1\r\n";
        assert_eq!(upload_line(failure), None);
    }
}
