//! Every HTTP call the app makes, with typed results and errors in plain words.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Health {
    pub status: String,
    pub version: String,
}

/// A failed request, phrased for a person.
#[derive(Debug, Clone)]
pub struct ApiError(pub String);

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub async fn health() -> Result<Health, ApiError> {
    let response = gloo_net::http::Request::get("/healthz")
        .send()
        .await
        .map_err(|e| ApiError(format!("The server could not be reached ({e}).")))?;
    if !response.ok() {
        return Err(ApiError(format!(
            "The server answered {}.",
            response.status()
        )));
    }
    response
        .json::<Health>()
        .await
        .map_err(|e| ApiError(format!("The server's answer was not understood ({e}).")))
}
