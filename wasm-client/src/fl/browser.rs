//! The browser transport: `fetch` (gloo-net) for requests and `EventSource` for the group's
//! events. Works in a window and in a Web Worker (both have `fetch`, `EventSource` and
//! `setTimeout` on their global object). The session cookie goes with every same-origin
//! request; [`super::Auth::Session`] adds the CSRF token to state-changing ones.

use std::pin::Pin;
use std::time::Duration;

use futures_util::stream::{SelectAll, Stream, StreamExt};
use gloo_net::eventsource::EventSourceError;
use gloo_net::eventsource::futures::EventSource;
use wasm_bindgen::{JsCast, JsValue};

use super::transport::{
    EventStream, Method, Request, Response, SseEvent, Transport, TransportError,
};

/// The server at `base` (`""`: the page's own origin).
#[derive(Debug, Clone, Default)]
pub struct FetchTransport {
    base: String,
}

impl FetchTransport {
    pub fn new(base: &str) -> FetchTransport {
        FetchTransport {
            base: base.trim().trim_end_matches('/').to_string(),
        }
    }
}

/// Events the participant reacts to (`member_joined` is left out on purpose).
const KINDS: &[&str] = &[
    "snapshot",
    "phase_changed",
    "round_opened",
    "round_closed",
    "round_failed",
    "lagged",
];

impl Transport for FetchTransport {
    type Events = BrowserEvents;

    async fn send(&self, request: Request) -> Result<Response, TransportError> {
        let url = format!("{}{}", self.base, request.path);
        let method = match request.method {
            Method::Get => gloo_net::http::Method::GET,
            Method::Post => gloo_net::http::Method::POST,
        };
        let mut builder = gloo_net::http::RequestBuilder::new(&url).method(method);
        for (name, value) in &request.headers {
            // Browsers manage cookies themselves.
            if name != "cookie" {
                builder = builder.header(name, value);
            }
        }
        let built = if request.method == Method::Get {
            builder.build()
        } else {
            builder.body(js_sys::Uint8Array::from(request.body.as_slice()))
        }
        .map_err(|e| TransportError::Other(e.to_string()))?;
        let response = built
            .send()
            .await
            .map_err(|e| TransportError::Connect(e.to_string()))?;
        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .map(|(n, v)| (n.to_ascii_lowercase(), v))
            .collect();
        let body = response
            .binary()
            .await
            .map_err(|e| TransportError::Io(e.to_string()))?;
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    async fn events(&self, request: Request) -> Result<BrowserEvents, TransportError> {
        let url = format!("{}{}", self.base, request.path);
        let mut source =
            EventSource::new(&url).map_err(|e| TransportError::Connect(e.to_string()))?;
        let mut all = SelectAll::new();
        for kind in KINDS {
            let subscription = source
                .subscribe(*kind)
                .map_err(|e| TransportError::Other(e.to_string()))?;
            all.push(Box::pin(subscription) as Subscription);
        }
        Ok(BrowserEvents {
            _source: source,
            all,
        })
    }

    async fn sleep(&self, duration: Duration) {
        sleep(duration).await
    }
}

type Subscription =
    Pin<Box<dyn Stream<Item = Result<(String, web_sys::MessageEvent), EventSourceError>>>>;

/// The group's `EventSource`; closed when dropped.
pub struct BrowserEvents {
    _source: EventSource,
    all: SelectAll<Subscription>,
}

impl EventStream for BrowserEvents {
    async fn next(&mut self) -> Result<Option<SseEvent>, TransportError> {
        match self.all.next().await {
            Some(Ok((event, message))) => Ok(Some(SseEvent {
                event,
                data: message.data().as_string().unwrap_or_default(),
            })),
            Some(Err(e)) => Err(TransportError::Io(e.to_string())),
            None => Ok(None),
        }
    }
}

/// Resolves after `duration` through the global `setTimeout` (a macrotask: messages posted
/// to a worker are handled meanwhile).
pub async fn sleep(duration: Duration) {
    let ms = duration.as_millis().min(i32::MAX as u128) as i32;
    let promise = js_sys::Promise::new(&mut |resolve, _reject| {
        let global = js_sys::global();
        let timer = js_sys::Reflect::get(&global, &JsValue::from_str("setTimeout"))
            .ok()
            .and_then(|f| f.dyn_into::<js_sys::Function>().ok());
        let scheduled = timer
            .map(|f| f.call2(&global, &resolve, &JsValue::from(ms)).is_ok())
            .unwrap_or(false);
        if !scheduled {
            let _ = resolve.call0(&JsValue::NULL);
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// Privacy ledgers in this browser's IndexedDB, through `globalThis.b3oPrivacyLedger`
/// (`js/privacy-ledger.js`, installed by the training worker).
#[derive(Debug, Default)]
pub struct IndexedDbLedger;

/// Calls `b3oPrivacyLedger[name](...args)` and awaits its promise.
async fn ledger_call(name: &str, args: &[JsValue]) -> Result<JsValue, String> {
    global_call("b3oPrivacyLedger", name, args).await
}

/// Calls `globalThis[object][name](...args)` (a module the worker installed) and awaits its
/// promise.
async fn global_call(object: &str, name: &str, args: &[JsValue]) -> Result<JsValue, String> {
    use js_sys::{Array, Function, Promise, Reflect};
    let api = Reflect::get(&js_sys::global(), &object.into())
        .ok()
        .filter(|v| v.is_object())
        .ok_or_else(|| format!("this page has no {object}"))?;
    let f: Function = Reflect::get(&api, &name.into())
        .ok()
        .and_then(|f| f.dyn_into().ok())
        .ok_or_else(|| format!("{object}.{name} is missing"))?;
    let promise: Promise = f
        .apply(&api, &args.iter().collect::<Array>())
        .map_err(|e| format!("{e:?}"))?
        .dyn_into()
        .map_err(|_| format!("{object}.{name} did not return a promise"))?;
    wasm_bindgen_futures::JsFuture::from(promise)
        .await
        .map_err(|e| {
            e.dyn_ref::<js_sys::Error>()
                .map(|e| String::from(e.message()))
                .unwrap_or_else(|| format!("{e:?}"))
        })
}

impl super::privacy::LedgerStore for IndexedDbLedger {
    fn load<'a>(
        &'a self,
        key: &'a str,
    ) -> super::privacy::StoreFuture<'a, Result<Option<b3o_models::dp::ledger::GroupLedger>, String>>
    {
        Box::pin(async move {
            let value = ledger_call("load", &[JsValue::from_str(key)]).await?;
            match value.as_string() {
                None => Ok(None),
                Some(json) => serde_json::from_str(&json)
                    .map(Some)
                    .map_err(|e| format!("the stored privacy ledger is unreadable: {e}")),
            }
        })
    }

    fn save<'a>(
        &'a self,
        key: &'a str,
        ledger: &'a b3o_models::dp::ledger::GroupLedger,
    ) -> super::privacy::StoreFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let json = serde_json::to_string(ledger).map_err(|e| e.to_string())?;
            ledger_call("save", &[JsValue::from_str(key), JsValue::from_str(&json)]).await?;
            Ok(())
        })
    }
}

/// Unsent updates in this browser's IndexedDB, through `globalThis.b3oKeptUpdates`
/// (`js/kept-updates.js`, installed by the training worker).
#[derive(Debug, Default)]
pub struct IndexedDbKept;

impl super::kept::KeptStore for IndexedDbKept {
    fn load<'a>(
        &'a self,
        key: &'a str,
    ) -> super::privacy::StoreFuture<'a, Result<Option<super::kept::Kept>, String>> {
        Box::pin(async move {
            let value = global_call("b3oKeptUpdates", "load", &[JsValue::from_str(key)]).await?;
            if value.is_null() || value.is_undefined() {
                return Ok(None);
            }
            let round = js_sys::Reflect::get(&value, &"round".into())
                .ok()
                .and_then(|r| r.as_f64())
                .filter(|r| r.fract() == 0.0 && *r >= 1.0)
                .ok_or("the kept update has no round")?;
            let bytes: js_sys::Uint8Array = js_sys::Reflect::get(&value, &"bytes".into())
                .ok()
                .and_then(|b| b.dyn_into().ok())
                .ok_or("the kept update has no bytes")?;
            Ok(Some((round as i64, bytes.to_vec())))
        })
    }

    fn save<'a>(
        &'a self,
        key: &'a str,
        round: i64,
        bytes: &'a [u8],
    ) -> super::privacy::StoreFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let array = js_sys::Uint8Array::from(bytes);
            global_call(
                "b3oKeptUpdates",
                "save",
                &[
                    JsValue::from_str(key),
                    JsValue::from_f64(round as f64),
                    array.into(),
                ],
            )
            .await?;
            Ok(())
        })
    }

    fn remove<'a>(&'a self, key: &'a str) -> super::privacy::StoreFuture<'a, Result<(), String>> {
        Box::pin(async move {
            global_call("b3oKeptUpdates", "remove", &[JsValue::from_str(key)]).await?;
            Ok(())
        })
    }
}
