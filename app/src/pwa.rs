//! The offline side of the app: registers the service worker (`/sw.js`, see
//! `app/static/sw.js`) that keeps the app shell, the engine and the models a person used, and
//! forgets the cached model reads when someone signs out.

use wasm_bindgen::JsCast;

/// Registers `/sw.js` (scope `/`) where the browser supports service workers.
pub fn register_service_worker() {
    let Some(window) = web_sys::window() else {
        return;
    };
    let navigator = window.navigator();
    let supported =
        js_sys::Reflect::has(navigator.as_ref(), &"serviceWorker".into()).unwrap_or(false);
    if !supported {
        return;
    }
    let promise = navigator.service_worker().register("/sw.js");
    // Without it the app still works online; nothing to tell the person.
    wasm_bindgen_futures::spawn_local(async move {
        let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
    });
}

/// Drops the cached model reads (`b3o-data`), so the next account on this browser does not see
/// the previous one's models offline. The engine's own model cache holds only public bytes
/// keyed by version, which need an authorised package read to be found.
pub fn forget_cached_data() {
    let Some(window) = web_sys::window() else {
        return;
    };
    let Ok(caches) = js_sys::Reflect::get(window.as_ref(), &"caches".into()) else {
        return;
    };
    let Ok(delete) = js_sys::Reflect::get(&caches, &"delete".into()) else {
        return;
    };
    if let Some(delete) = delete.dyn_ref::<js_sys::Function>() {
        let _ = delete.call1(&caches, &"b3o-data".into());
    }
}
