//! `fetch` and the Cache API behind the loader's [`Fetch`] and [`Store`] traits.

use js_sys::{Promise, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Cache, CacheStorage, Headers, Request, RequestCredentials, RequestInit, Response};

use super::js;
use super::loader::{Fetch, HttpResponse, Store};

/// The Cache API cache holding model packages and ONNX files.
pub const CACHE_NAME: &str = "b3o-models-v1";

#[wasm_bindgen]
extern "C" {
    /// The global `fetch`, in a window or a worker.
    #[wasm_bindgen(js_name = fetch)]
    fn global_fetch(request: &Request) -> Promise;
}

/// GET requests to one B3O server.
pub struct WebFetch {
    credentials: RequestCredentials,
    token: Option<String>,
}

impl WebFetch {
    /// For `server` (`""`: this origin). Same-origin requests carry the session cookie;
    /// cross-origin ones carry no cookies (public models, embeds), only `token` if given.
    pub fn new(server: &str, token: Option<String>) -> Self {
        let server = server.trim_end_matches('/');
        let same_origin = server.is_empty() || js::origin().is_some_and(|o| o == server);
        Self {
            credentials: if same_origin {
                RequestCredentials::Include
            } else {
                RequestCredentials::Omit
            },
            token: token.filter(|t| !t.is_empty()),
        }
    }
}

async fn body(response: &Response) -> Result<Vec<u8>, String> {
    let promise = response.array_buffer().map_err(|e| js::message(&e))?;
    let buffer = JsFuture::from(promise).await.map_err(|e| js::message(&e))?;
    Ok(Uint8Array::new(&buffer).to_vec())
}

impl Fetch for WebFetch {
    async fn get(&self, url: &str) -> Result<HttpResponse, String> {
        let init = RequestInit::new();
        init.set_method("GET");
        init.set_credentials(self.credentials);
        if let Some(token) = &self.token {
            let headers = Headers::new().map_err(|e| js::message(&e))?;
            headers
                .set("Authorization", &format!("Bearer {token}"))
                .map_err(|e| js::message(&e))?;
            init.set_headers(&headers);
        }
        let request = Request::new_with_str_and_init(url, &init).map_err(|e| js::message(&e))?;
        let response: Response = JsFuture::from(global_fetch(&request))
            .await
            .map_err(|e| js::message(&e))?
            .dyn_into()
            .map_err(|_| "fetch did not return a Response".to_string())?;
        Ok(HttpResponse {
            status: response.status(),
            body: body(&response).await?,
        })
    }
}

/// The Cache API, or nothing where the page has none (an insecure origin): then every load
/// downloads.
pub struct WebCache {
    cache: Option<Cache>,
}

impl WebCache {
    pub async fn open() -> Self {
        let cache = async {
            let storage: CacheStorage = js::global_get("caches")?.dyn_into().ok()?;
            JsFuture::from(storage.open(CACHE_NAME))
                .await
                .ok()?
                .dyn_into::<Cache>()
                .ok()
        }
        .await;
        Self { cache }
    }
}

impl Store for WebCache {
    async fn load(&self, url: &str) -> Option<Vec<u8>> {
        let cache = self.cache.as_ref()?;
        let found = JsFuture::from(cache.match_with_str(url)).await.ok()?;
        let response: Response = found.dyn_into().ok()?;
        body(&response).await.ok()
    }

    async fn save(&self, url: &str, bytes: &[u8], content_type: &str) {
        let Some(cache) = &self.cache else { return };
        let Ok(response) = Response::new_with_opt_buffer_source(Some(&Uint8Array::from(bytes)))
        else {
            return;
        };
        let _ = response.headers().set("Content-Type", content_type);
        // Quota errors and the like only cost a later download.
        let _ = JsFuture::from(cache.put_with_str(url, &response)).await;
    }
}

/// Removes every cached model (the "forget downloaded models" action).
pub async fn clear_cache() -> bool {
    let Some(storage) = js::global_get("caches").and_then(|c| c.dyn_into::<CacheStorage>().ok())
    else {
        return false;
    };
    JsFuture::from(storage.delete(CACHE_NAME))
        .await
        .ok()
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
}
