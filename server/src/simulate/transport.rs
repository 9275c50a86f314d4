//! The simulator's transport: requests go straight into the server's axum [`Router`] with
//! tower's `oneshot`, through every layer and handler, without sockets. It lives here rather
//! than in the client crate because the server depends on the client, not the reverse.

use std::time::Duration;

use axum::Router;
use axum::body::{Body, BodyDataStream};
use axum::http;
use b3o_wasm_client::fl::sse::SseParser;
use b3o_wasm_client::fl::{
    EventStream, Method, Request, Response, SseEvent, Transport, TransportError,
};
use futures_util::StreamExt;
use tower::ServiceExt;

/// The server's router as a [`Transport`].
#[derive(Clone)]
pub struct InProcess {
    router: Router,
}

impl InProcess {
    pub fn new(router: Router) -> Self {
        InProcess { router }
    }

    async fn call(&self, request: Request) -> Result<http::Response<Body>, TransportError> {
        let method = match request.method {
            Method::Get => http::Method::GET,
            Method::Post => http::Method::POST,
        };
        let mut builder = http::Request::builder().method(method).uri(&request.path);
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let request = builder
            .body(Body::from(request.body))
            .map_err(|e| TransportError::Other(e.to_string()))?;
        // The router's error type is `Infallible`.
        match self.router.clone().oneshot(request).await {
            Ok(response) => Ok(response),
            Err(never) => match never {},
        }
    }
}

fn headers(map: &http::HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect()
}

impl Transport for InProcess {
    type Events = InProcessEvents;

    async fn send(&self, request: Request) -> Result<Response, TransportError> {
        let response = self.call(request).await?;
        let status = response.status().as_u16();
        let headers = headers(response.headers());
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .map_err(|e| TransportError::Io(e.to_string()))?;
        Ok(Response {
            status,
            headers,
            body: body.to_vec(),
        })
    }

    async fn events(&self, request: Request) -> Result<InProcessEvents, TransportError> {
        let response = self.call(request).await?;
        let status = response.status().as_u16();
        if !response.status().is_success() {
            let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap_or_default();
            return Err(TransportError::Refused {
                status,
                body: body.to_vec(),
            });
        }
        Ok(InProcessEvents {
            body: response.into_body().into_data_stream(),
            parser: SseParser::new(),
        })
    }

    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await
    }
}

/// An SSE response body read in process.
pub struct InProcessEvents {
    body: BodyDataStream,
    parser: SseParser,
}

impl EventStream for InProcessEvents {
    async fn next(&mut self) -> Result<Option<SseEvent>, TransportError> {
        loop {
            if let Some(event) = self.parser.next_event() {
                return Ok(Some(event));
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.parser.push(&chunk),
                Some(Err(e)) => return Err(TransportError::Io(e.to_string())),
                None => return Ok(None),
            }
        }
    }
}
