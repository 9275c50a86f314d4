//! `b3o`: the B3O Edge binary. `b3o serve` runs the server; `b3o client` takes part in a
//! federated group from the command line; `b3o simulate` runs virtual clients against the
//! server's code in process; `b3o openapi` prints the API's OpenAPI document.

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
    /// Join a federated group and train on local data, round after round.
    Client(b3o_server::cli::client::ClientArgs),
    /// Simulate a federation: virtual clients, the real server code, in one process.
    Simulate(b3o_server::simulate::SimulateArgs),
    /// Print the API's OpenAPI 3.1 document (what `GET /api/openapi.json` serves) as JSON.
    Openapi,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The command-line tools keep the terminal for their own output.
    let default_filter = match cli.command {
        Command::Serve(_) => "info,sqlx=warn,tower_http=info",
        Command::Client(_) | Command::Simulate(_) | Command::Openapi => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .init();
    match cli.command {
        Command::Openapi => {
            println!("{}", b3o_server::openapi::document_json());
            Ok(())
        }
        Command::Serve(config) => b3o_server::serve(config).await.context("b3o serve failed"),
        Command::Client(args) => {
            b3o_server::cli::client::run(args)
                .await
                .context("b3o client failed")?;
            Ok(())
        }
        Command::Simulate(args) => {
            let report = b3o_server::simulate::run(&args)
                .await
                .context("b3o simulate failed")?;
            println!("{}", b3o_server::simulate::summary(&report));
            println!(
                "Wrote metrics.csv, metrics.json and chart.svg to {}",
                args.out.display()
            );
            Ok(())
        }
    }
}
