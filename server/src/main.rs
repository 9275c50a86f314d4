//! `b3o`: the B3O Edge binary. `b3o serve` runs the server; `b3o client` takes part in a
//! federated group from the command line; `b3o simulate` runs virtual clients against the
//! server's code in process; `b3o openapi` prints the API's OpenAPI document.
//!
//! `client` and `simulate` train, and need the `train` feature (on by default); a serving-only
//! build (`--no-default-features`, what `scripts/run.sh` builds) says so when asked for them.

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
// Parsed once per process: the size of the serving-only build's placeholder variants is moot.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Run the server: web app, API and model registry.
    Serve(ServeConfig),
    /// Join a federated group and train on local data, round after round.
    #[cfg(feature = "train")]
    Client(b3o_server::cli::client::ClientArgs),
    /// Simulate a federation: virtual clients, the real server code, in one process.
    #[cfg(feature = "train")]
    Simulate(b3o_server::simulate::SimulateArgs),
    /// Not in this build: `b3o client` trains (see the error it prints).
    #[cfg(not(feature = "train"))]
    #[command(hide = true)]
    Client {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Not in this build: `b3o simulate` trains (see the error it prints).
    #[cfg(not(feature = "train"))]
    #[command(hide = true)]
    Simulate {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Print the API's OpenAPI 3.1 document (what `GET /api/openapi.json` serves) as JSON.
    Openapi,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The command-line tools keep the terminal for their own output.
    let default_filter = match cli.command {
        Command::Serve(_) => "info,sqlx=warn,tower_http=info",
        _ => "warn",
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
        #[cfg(not(feature = "train"))]
        Command::Client { .. } | Command::Simulate { .. } => anyhow::bail!(
            "this `b3o` serves only: it was built without the `train` feature, which `b3o client` \
             and `b3o simulate` need (scripts/run.sh builds the server that way, to start \
             sooner). Build the full binary with `cargo install --locked --path server` or \
             `cargo build --release -p b3o-server`."
        ),
        #[cfg(feature = "train")]
        Command::Client(args) => {
            b3o_server::cli::client::run(args)
                .await
                .context("b3o client failed")?;
            Ok(())
        }
        #[cfg(feature = "train")]
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
