//! B3O Edge's web app: a Leptos CSR single-page app served by `b3o serve`.
//!
//! It renders pages and talks to the server's JSON API; ML work (inference, training) belongs to
//! the wasm-client engine, run in Web Workers that `engine` talks to, never to this crate. Every
//! HTTP call lives in `api`, who is signed in in `session`, and each page in its own module
//! under `routes`; `pwa` registers the service worker that makes it work offline.

mod api;
mod browser;
mod charts;
mod copy;
mod csv_check;
mod digit;
mod engine;
mod metrics;
mod pwa;
mod routes;
mod session;

use wasm_bindgen::prelude::wasm_bindgen;

/// Entry point called by the generated JS glue once the module is instantiated.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(routes::App);
    pwa::register_service_worker();
}
