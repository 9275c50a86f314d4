//! `b3o`: the B3O Edge binary. `b3o serve` runs the server; later subcommands (`client`,
//! `simulate`) drive the same code from the command line.

use anyhow::Context;
use clap::{Parser, Subcommand};

use b3o_server::config::ServeConfig;

#[derive(Parser)]
#[command(
    name = "b3o",
    version,
    about = "B3O Edge: federated learning and codeless inference"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: web app, API and model registry.
    Serve(ServeConfig),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn,tower_http=info".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Serve(config) => b3o_server::serve(config).await.context("b3o serve failed"),
    }
}
