//! The federated learning client: one protocol implementation for the browser (a Web Worker),
//! `b3o client` and `b3o simulate`.
//!
//! - [`transport`]: the [`Transport`] trait (requests with whole bodies, the group's event
//!   stream, timers) and its implementations: [`native::HttpTransport`] (reqwest, not on
//!   wasm32), [`browser::FetchTransport`] (fetch and `EventSource`, wasm32 only), and in the
//!   server crate the in-process transport of the simulator. [`transport::Recording`] keeps a
//!   copy of every request a client sends (what the privacy test inspects).
//! - [`api`]: typed calls of the federation API with retries and exponential backoff
//!   ([`retry::Backoff`]); server refusals become [`FlError::Api`] with the server's message.
//! - [`data`]: the member's [`LocalData`] (a CSV table or labelled 28x28 images), the column
//!   summaries of the statistics phase and the model inputs. Rows stay here.
//! - [`trainer`]: where local training runs: [`trainer::ThreadTrainer`] (native threads) or
//!   [`trainer::AsyncTrainer`] (the browser, asynchronous reads for WebGPU).
//! - [`participant`]: the state machine: join by code, upload summaries, ready, wait for
//!   rounds, download the global weights, train, upload the update, report evaluations, and
//!   resume after a lost connection or a restart.
//!
//! **Invariant:** only weight updates (safetensors) and mergeable column summaries
//! ([`b3o_models::stats::Summary`]) leave a client, besides small control messages (join code,
//! sample counts, metrics). Never rows.

pub mod api;
pub mod data;
pub mod evaluate;
pub mod kept;
pub mod participant;
pub mod privacy;
pub mod retry;
pub mod sse;
pub mod trainer;
pub mod transport;

#[cfg(target_arch = "wasm32")]
pub mod browser;
#[cfg(not(target_arch = "wasm32"))]
pub mod native;

pub use api::{Api, Auth, FlError};
pub use data::{DataError, LocalData};
pub use participant::{
    CancelToken, ClientEvent, Observer, Participant, ParticipantOptions, Report,
};
pub use retry::Backoff;
pub use trainer::Trainer;
pub use transport::{EventStream, Method, Request, Response, SseEvent, Transport, TransportError};

/// `Send` natively, nothing in the browser: the native client and the simulator run their
/// futures on tokio's threads, the browser's futures (fetch, `EventSource`) are not `Send`.
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSend: Send {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send + ?Sized> MaybeSend for T {}
/// `Send` natively, nothing in the browser.
#[cfg(target_arch = "wasm32")]
pub trait MaybeSend {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSend for T {}

/// `Sync` natively, nothing in the browser.
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSync: Sync {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Sync + ?Sized> MaybeSync for T {}
/// `Sync` natively, nothing in the browser.
#[cfg(target_arch = "wasm32")]
pub trait MaybeSync {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSync for T {}
