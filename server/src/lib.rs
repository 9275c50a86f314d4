//! B3O Edge's server (`b3o serve`): a thin axum application over an embedded SQLite database
//! that serves the web app, coordinates federated rounds and hosts the model registry.
//!
//! It holds no user rows: clients send weight updates and column summaries only.

pub mod access;
pub mod accounts;
pub mod blobs;
pub mod cli;
pub mod config;
pub mod db;
pub mod demo;
pub mod error;
pub mod federation;
pub mod health;
pub mod inference;
pub mod jobs;
pub mod limits;
pub mod listener;
pub mod membership;
pub mod openapi;
pub mod registry;
pub mod simulate;
pub mod state;
pub mod static_files;
pub mod strategy;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use tower_http::compression::CompressionLayer;
use tower_http::trace::TraceLayer;

use crate::config::ServeConfig;
use crate::state::{AppState, RuntimeSettings};

/// The whole HTTP application: API routes, then the web app as the fallback.
pub fn app(state: AppState, static_dir: &Path) -> Router {
    // Outermost, so error responses and static files carry the headers too.
    let security_headers = accounts::security_headers(&state.accounts.settings, static_dir);
    Router::new()
        .merge(health::router())
        .merge(accounts::router())
        .merge(federation::router())
        .merge(registry::router())
        .merge(inference::router())
        .merge(jobs::router())
        .merge(demo::router())
        .merge(openapi::router())
        .merge(static_files::router(static_dir))
        .layer(CompressionLayer::new())
        .layer(TraceLayer::new_for_http())
        .layer(security_headers)
        .with_state(state)
}

/// Opens the data directory and database, binds the socket and serves until Ctrl-C / SIGTERM
/// (see [`listener`] for the connection cap, the timeouts and the shutdown).
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let listener_limits = listener::ListenerLimits::from_limits(&config.limits)?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let store = blobs::BlobStore::open(&config.data_dir, config.blob_store.as_ref())
        .context("opening the blob store")?;
    store
        .check()
        .await
        .with_context(|| format!("reaching the blob store {}", store.describe()))?;
    let store = Arc::new(store);
    // Temporary files of writes a killed process left behind; again every 15 minutes.
    blobs::sweep(&store).await;
    blobs::spawn_temp_sweeper(store.clone());
    let db = db::connect(&config.database_url())
        .await
        .context("opening the database")?;
    // Blobs whose row never committed, an hour on; now and every 15 minutes.
    blobs::spawn_collector(store.clone(), db.clone());
    if !config.static_dir.join("index.html").exists() {
        tracing::warn!(dir = %config.static_dir.display(), "no built web app; serving the API only");
    }
    let accounts = accounts::start(&config, &db).await?;
    let state = AppState::with_settings(
        db,
        store,
        accounts,
        Arc::new(federation::Runtime::new(config.max_update_bytes)),
        Arc::new(config.limits.clone()),
        RuntimeSettings {
            inference: inference::Settings::from_config(&config),
            jobs: jobs::Settings::from_config(&config),
        },
    );
    federation::spawn_driver(state.clone());
    // Batch jobs a stop interrupted, and with `--demo` the demo models, before listening.
    jobs::recover(&state).await?;
    if config.demo {
        demo::seed(&state).await?;
    }
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .with_context(|| format!("binding {}", config.bind))?;
    let addr = listener.local_addr()?;
    // Scripts and tests wait for this exact line to know the server is up.
    println!("B3O Edge is listening on http://{addr}/");
    // Every request gets `ConnectInfo<SocketAddr>`: the peer address feeds the rate limits.
    listener::serve(
        listener,
        app(state, &config.static_dir),
        listener_limits,
        shutdown_signal(),
    )
    .await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
}
