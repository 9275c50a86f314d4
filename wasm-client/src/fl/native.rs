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
