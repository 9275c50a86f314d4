//! The HTTP listener of `b3o serve`: an accept loop on hyper's HTTP/1.1 server with a cap on
//! open connections, a header read timeout and a request body idle timeout.
//!
//! It replaces `axum::serve`, which has none of these: idle, slow-header and stalled-body
//! connections stayed open indefinitely (issue #19, item 7).
//!
//! - At most `--max-connections` connections are open. While that many are, the loop stops
//!   accepting: further clients wait in the kernel's listen backlog, not refused, and are
//!   taken as connections close.
//! - A client has `--header-timeout-secs` to send a request's headers, counted from when the
//!   connection is ready for a request; an idle keep-alive connection is closed after the
//!   same time.
//! - A request body that sends nothing for `--body-timeout-secs` fails its read: the handler
//!   reading it answers with an error and the connection closes.
//! - Responses are not timed: a Server-Sent Events stream, whose request is complete, stays
//!   open as long as the client reads it.
//! - On the shutdown signal the loop stops accepting, connections finish the request they are
//!   on (idle ones close at once) and the call returns, after the shutdown grace at most
//!   (`--shutdown-grace-secs`, [`SHUTDOWN_GRACE`] by default). Event streams end on the same
//!   cue (`crate::lifecycle`, [`crate::federation::event_stream`]); a stream that did not would
//!   be cut at the end of the grace. `b3o serve` gives the signal after its drain
//!   ([`crate::lifecycle::drain_on`]).
//!
//! Every request carries `ConnectInfo<SocketAddr>` with the peer's address, as
//! `into_make_service_with_connect_info::<SocketAddr>` does (the rate limits read it).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tower::Service;
use tower_http::timeout::TimeoutBody;

use crate::limits::Limits;

/// Longest wait for open connections after the shutdown signal, unless
/// `--shutdown-grace-secs` says otherwise.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Pause after an accept error other than a failed handshake (out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// The listener's limits, checked.
#[derive(Debug, Clone, Copy)]
pub struct ListenerLimits {
    max_connections: u32,
    header_timeout: Duration,
    body_timeout: Duration,
    shutdown_grace: Duration,
}

/// A limit flag that makes no sense; the message names the flag.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidLimit(String);

impl ListenerLimits {
    pub fn from_limits(limits: &Limits) -> Result<Self, InvalidLimit> {
        let max_connections = u32::try_from(limits.max_connections)
            .ok()
            .filter(|n| *n >= 1 && (*n as usize) <= Semaphore::MAX_PERMITS)
            .ok_or_else(|| {
                InvalidLimit(format!(
                    "--max-connections must be between 1 and {}, not {}",
                    u32::MAX,
                    limits.max_connections
                ))
            })?;
        let seconds = |flag: &str, secs: u64| {
            if secs == 0 {
                Err(InvalidLimit(format!("{flag} must be at least 1")))
            } else {
                Ok(Duration::from_secs(secs))
            }
        };
        Ok(ListenerLimits {
            max_connections,
            header_timeout: seconds("--header-timeout-secs", limits.header_timeout_secs)?,
            body_timeout: seconds("--body-timeout-secs", limits.body_timeout_secs)?,
            shutdown_grace: SHUTDOWN_GRACE,
        })
    }

    /// The longest wait for requests in flight once the shutdown signal came.
    pub fn with_shutdown_grace(self, shutdown_grace: Duration) -> Self {
        ListenerLimits {
            shutdown_grace,
            ..self
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then drains (see the module
/// comment).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ListenerLimits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections as usize));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);

    loop {
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                // Never closed; nothing sensible to serve without it.
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) if is_handshake_error(&e) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed; retrying");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        tokio::spawn(connection(
            http.clone(),
            stream,
            peer,
            app.clone(),
            limits.body_timeout,
            stop_rx.clone(),
            slot,
        ));
    }

    drop(listener);
    // Connections close gracefully; each gives its slot back when done, so having every slot
    // again means every connection is done.
    let _ = stop_tx.send(true);
    let all = slots.acquire_many(limits.max_connections);
    if tokio::time::timeout(limits.shutdown_grace, all)
        .await
        .is_err()
    {
        tracing::info!(
            open = limits.max_connections as usize - slots.available_permits(),
            "connections still open after the shutdown grace period; closing them"
        );
    }
}

/// Errors of one client's handshake, not of the listener: take the next one at once.
fn is_handshake_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// Serves one connection; `_slot` is its place under the connection cap.
async fn connection(
    http: http1::Builder,
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    body_timeout: Duration,
    mut stop: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let mut request = request.map(|body| Body::new(TimeoutBody::new(body_timeout, body)));
        request.extensions_mut().insert(ConnectInfo(peer));
        app.clone().call(request)
    });
    let conn = http.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let stopping = async move {
        // An error means the loop is gone: stop too.
        let _ = stop.wait_for(|stop| *stop).await;
    };
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = stopping => {
            conn.as_mut().graceful_shutdown();
            conn.as_mut().await
        }
    };
    if let Err(e) = result {
        // Timeouts and clients hanging up: routine, not worth more than a debug line.
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
