//! B3O Edge's server (`b3o serve`): a thin axum application over an embedded SQLite database
//! that serves the web app, coordinates federated rounds and hosts the model registry.
//!
//! It holds no user rows: clients send weight updates and column summaries only.

pub mod access;
pub mod accounts;
pub mod blobs;
#[cfg(feature = "train")]
pub mod cli;
pub mod cluster;
pub mod config;
pub mod db;
pub mod demo;
pub mod error;
pub mod federation;
pub mod health;
pub mod inference;
pub mod jobs;
pub mod lifecycle;
pub mod limits;
pub mod listener;
pub mod membership;
pub mod monitoring;
pub mod openapi;
pub mod registry;
#[cfg(feature = "train")]
pub mod simulate;
pub mod state;
pub mod static_files;
pub mod strategy;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
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
        .merge(monitoring::router())
        .merge(jobs::router())
        .merge(demo::router())
        .merge(openapi::router())
        .merge(static_files::router(static_dir))
        .layer(CompressionLayer::new())
        .layer(TraceLayer::new_for_http())
        .layer(security_headers)
        // Every request, by method, route template and status class (`/metrics`).
        .layer(middleware::from_fn(inference::telemetry::track_http))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            close_connections_while_draining,
        ))
        .with_state(state)
}

/// While the replica drains (`lifecycle`), every response asks the client to close its
/// connection: clients that keep connections alive, pinned to this replica by a
/// connection-level balancer, open new ones, which reach a replica that is ready.
async fn close_connections_while_draining(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    if state.lifecycle.phase() >= lifecycle::Phase::Draining {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Opens the data directory and database, binds the socket and serves until Ctrl-C / SIGTERM,
/// then drains and stops (see [`lifecycle`] for readiness and the shutdown sequence, and
/// [`listener`] for the connection cap, the timeouts and the bounded wait for requests in
/// flight).
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let listener_limits = listener::ListenerLimits::from_limits(&config.limits)?
        .with_shutdown_grace(config.shutdown.grace());
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
    let mut state = AppState::with_settings(
        db,
        store,
        accounts,
        Arc::new(federation::Runtime::new(config.max_update_bytes)),
        Arc::new(config.limits.clone()),
        RuntimeSettings {
            inference: inference::Settings::from_config(&config),
            jobs: jobs::Settings::from_config(&config),
            monitoring: monitoring::Settings::from_config(&config),
        },
    );
    // Not ready (`/readyz` 503) until the start-up work below is done.
    state.lifecycle = lifecycle::Lifecycle::starting();
    let lifecycle = state.lifecycle.clone();
    // Replicas on one Postgres share events, presence and deployment changes.
    if db::dialect(&state.db) == db::Dialect::Postgres {
        cluster::start(&state, &config.database_url());
    }
    federation::spawn_driver(state.clone());
    monitoring::spawn_flusher(state.clone());
    // Batch jobs a stop interrupted, before listening: a job submitted meanwhile would be
    // resumed as well as started, and its upload taken for an orphan.
    jobs::recover(&state).await?;
    // Jobs queued on any replica, and those a dead replica held, once their lease ran out.
    jobs::spawn_sweeper(state.clone());
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .with_context(|| format!("binding {}", config.bind))?;
    let addr = listener.local_addr()?;
    let grpc_listener = match config.grpc_bind {
        Some(grpc_addr) => Some(
            tokio::net::TcpListener::bind(grpc_addr)
                .await
                .with_context(|| format!("binding the gRPC address {grpc_addr}"))?,
        ),
        None => None,
    };
    let signals = lifecycle::signals();
    // Every request gets `ConnectInfo<SocketAddr>`: the peer address feeds the rate limits.
    let server = tokio::spawn(listener::serve(
        listener,
        app(state.clone(), &config.static_dir),
        listener_limits,
        lifecycle::drain_on(lifecycle.clone(), config.shutdown.drain(), signals),
    ));
    // The gRPC service stops with the HTTP listener: when the shutdown sequence reaches
    // `Stopping` (`lifecycle::drain_on`), then lets its calls finish within the same grace.
    let grpc = match grpc_listener {
        Some(grpc_listener) => {
            let grpc_addr = grpc_listener.local_addr()?;
            let limits = inference::grpc::GrpcLimits::new(&config.limits, config.shutdown.grace());
            let task = tokio::spawn(inference::grpc::serve(
                grpc_listener,
                state.clone(),
                limits,
                lifecycle::stopping(lifecycle.subscribe()),
            ));
            Some((grpc_addr, task))
        }
        None => None,
    };
    // With `--demo`, the demo models, while `/healthz` already answers and `/readyz` says 503.
    if config.demo {
        demo::seed(&state).await?;
    }
    lifecycle.mark_ready();
    if let Some((grpc_addr, _)) = &grpc {
        println!("B3O Edge gRPC is listening on {grpc_addr}");
    }
    // Scripts and tests wait for this exact line to know the server is up (and ready).
    println!("B3O Edge is listening on http://{addr}/");
    server.await.context("the listener stopped abnormally")?;
    if let Some((_, task)) = grpc {
        task.await
            .context("the gRPC server stopped abnormally")?
            .context("the gRPC server")?;
    }
    tracing::info!("stopped");
    Ok(())
}
