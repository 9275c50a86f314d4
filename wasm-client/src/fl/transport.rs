//! How a client reaches the server: one request with its whole body in and out, the group's
//! event stream, and a timer (retries and polling need one, and only the transport knows the
//! runtime it lives in: tokio natively, the browser's event loop in wasm).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{MaybeSend, MaybeSync};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// A request to the server. `path` starts with `/` (e.g. `/api/groups/3/ready`); the
/// transport knows the server's base URL.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: Method,
    pub path: String,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn get(path: impl Into<String>) -> Request {
        Request {
            method: Method::Get,
            path: path.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn post(path: impl Into<String>, content_type: &str, body: Vec<u8>) -> Request {
        Request {
            method: Method::Post,
            path: path.into(),
            headers: vec![("content-type".into(), content_type.into())],
            body,
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Request {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }
}

/// The server's answer, whatever its status.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// The request did not get an answer (or the event stream broke): worth retrying.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    #[error("cannot reach the server: {0}")]
    Connect(String),
    #[error("the server did not answer in time")]
    Timeout,
    #[error("the connection broke: {0}")]
    Io(String),
    /// Opening the event stream got a non-2xx answer.
    #[error("the event stream was refused with HTTP {status}")]
    Refused { status: u16, body: Vec<u8> },
    #[error("{0}")]
    Other(String),
}

/// One Server-Sent Event: its name (`event:`) and data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
}

/// A group's open event stream.
pub trait EventStream: MaybeSend {
    /// The next event; `Ok(None)` when the server closed the stream.
    fn next(
        &mut self,
    ) -> impl Future<Output = Result<Option<SseEvent>, TransportError>> + MaybeSend;
}

/// A way to talk to the server.
pub trait Transport: MaybeSend + MaybeSync {
    type Events: EventStream;

    /// Sends one request and reads the whole answer.
    fn send(
        &self,
        request: Request,
    ) -> impl Future<Output = Result<Response, TransportError>> + MaybeSend;

    /// Opens an event stream (`GET`, `text/event-stream`).
    fn events(
        &self,
        request: Request,
    ) -> impl Future<Output = Result<Self::Events, TransportError>> + MaybeSend;

    /// Waits (backoff delays, polling).
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + MaybeSend;
}

impl<T: Transport> Transport for Arc<T> {
    type Events = T::Events;

    fn send(
        &self,
        request: Request,
    ) -> impl Future<Output = Result<Response, TransportError>> + MaybeSend {
        (**self).send(request)
    }

    fn events(
        &self,
        request: Request,
    ) -> impl Future<Output = Result<Self::Events, TransportError>> + MaybeSend {
        (**self).events(request)
    }

    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + MaybeSend {
        (**self).sleep(duration)
    }
}

/// A transport that keeps a copy of every request sent through it (event stream openings
/// included): lets a test, or a person auditing the client, see exactly what left the machine.
pub struct Recording<T> {
    inner: T,
    sent: Arc<Mutex<Vec<Request>>>,
}

impl<T> Recording<T> {
    pub fn new(inner: T) -> Self {
        Recording {
            inner,
            sent: Arc::default(),
        }
    }

    /// A handle on the requests sent so far (it keeps filling as the client runs).
    pub fn log(&self) -> Arc<Mutex<Vec<Request>>> {
        self.sent.clone()
    }

    /// The requests sent so far.
    pub fn sent(&self) -> Vec<Request> {
        self.sent.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn record(&self, request: &Request) {
        self.sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(request.clone());
    }
}

impl<T: Transport> Transport for Recording<T> {
    type Events = T::Events;

    fn send(
        &self,
        request: Request,
    ) -> impl Future<Output = Result<Response, TransportError>> + MaybeSend {
        self.record(&request);
        self.inner.send(request)
    }

    fn events(
        &self,
        request: Request,
    ) -> impl Future<Output = Result<Self::Events, TransportError>> + MaybeSend {
        self.record(&request);
        self.inner.events(request)
    }

    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + MaybeSend {
        self.inner.sleep(duration)
    }
}
