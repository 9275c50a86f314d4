//! `b3o client`: takes part in a federated group from the command line, like the original
//! B3O Python client: join with the group's code, train on a local CSV (or a folder of class
//! subfolders of images) round after round, upload only the weights, print the final model's
//! metrics on the rows held out locally.
//!
//! ```text
//! b3o client --server https://fl.example.org --code K7M2QX9PAB --data train.csv --target Exited \
//!     --token b3o_...
//! ```
//!
//! With `--email/--password` instead of `--token` it signs in and creates an API token named
//! `b3o client` that expires after 7 days. Run it again after an interruption: joining is
//! idempotent and the client carries on with the group's current round.
//!
//! With `--evaluate-version <ID>` it trains nothing: it scores that model version of a group
//! the account is a member of on the rows it holds out (`--test-fraction`, `--seed`: the same
//! rows as when training), reports the metrics to the server (`POST
//! /api/versions/{id}/evaluation`: only the metrics and the number of rows leave), prints
//! them and exits. The registry shows them beside the other members', and a deployment's
//! promotion gate compares versions by them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use b3o_models::protocol::ModelTemplate;
use b3o_wasm_client::fl::data::LocalData;
use b3o_wasm_client::fl::native::{FileLedger, HttpTransport};
use b3o_wasm_client::fl::trainer::ThreadTrainer;
use b3o_wasm_client::fl::{
    Api, Auth, ClientEvent, FlError, Participant, ParticipantOptions, Report,
};
use indicatif::{ProgressBar, ProgressStyle};

/// `b3o client` options.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// The server, e.g. https://fl.example.org.
    #[arg(long, env = "B3O_SERVER")]
    pub server: String,
    /// The group's join code.
    #[arg(long, required_unless_present_any = ["group", "evaluate_version", "check_drift"])]
    pub code: Option<String>,
    /// A group this account already joined (instead of --code).
    #[arg(long, conflicts_with = "code")]
    pub group: Option<i64>,
    /// A CSV file, or a folder with one subfolder of PNG/JPEG images per class.
    #[arg(long)]
    pub data: PathBuf,
    /// The CSV's target column; must be the group's.
    #[arg(long)]
    pub target: Option<String>,
    /// An API token (`b3o_...`, created in your profile).
    #[arg(long, env = "B3O_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Sign in with an email and password instead of a token.
    #[arg(
        long,
        env = "B3O_EMAIL",
        conflicts_with = "token",
        requires = "password"
    )]
    pub email: Option<String>,
    #[arg(long, env = "B3O_PASSWORD", hide_env_values = true, requires = "email")]
    pub password: Option<String>,
    /// How the other members see you (default: your organisation).
    #[arg(long)]
    pub name: Option<String>,
    /// Share of your rows held out to evaluate each round's model (0: none).
    #[arg(long, default_value_t = 0.2)]
    pub test_fraction: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print the final report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Evaluate this model version (of a group you are a member of) on your held-out rows,
    /// report the metrics and exit, without training.
    #[arg(long, value_name = "VERSION_ID", conflicts_with_all = ["code", "group"])]
    pub evaluate_version: Option<i64>,
    /// Check your file (`--data`, a CSV) for drift against what deployment NAME was trained
    /// on: summarised and compared here, the per-feature report printed; nothing is sent
    /// unless `--share-drift`. Exits without training.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["code", "group", "evaluate_version"])]
    pub check_drift: Option<String>,
    /// With `--check-drift`: also send the file's summary (counts and histograms per column, no
    /// row) to the deployment's drift view, where the group sees it.
    #[arg(long, requires = "check_drift")]
    pub share_drift: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Where your privacy ledgers are kept (groups with differential privacy): the epsilon you
    /// spent in each group, counted on this machine. Default: `$XDG_DATA_HOME/b3o/` or
    /// `~/.local/share/b3o/privacy-ledger.json`.
    #[arg(long, env = "B3O_PRIVACY_LEDGER")]
    pub privacy_ledger: Option<PathBuf>,
    /// Your own privacy budget: in a group with differential privacy, stop before spending more
    /// than this epsilon. It replaces a limit given in an earlier run (kept in the ledger); only
    /// a limit below the target you accepted when you joined changes anything.
    #[arg(long)]
    pub max_epsilon: Option<f64>,
}

/// The ledger file: `--privacy-ledger`, else under `$XDG_DATA_HOME` or `~/.local/share`, else
/// the working directory.
fn ledger_path(args: &ClientArgs) -> PathBuf {
    if let Some(path) = &args.privacy_ledger {
        return path.clone();
    }
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")));
    match base {
        Some(base) => base.join("b3o").join("privacy-ledger.json"),
        None => PathBuf::from("b3o-privacy-ledger.json"),
    }
}

/// Why `b3o client` stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Fl(#[from] FlError),
}

/// What `b3o client` did.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Took part in the group's training to its end.
    Trained(Report),
    /// Evaluated one version (`--evaluate-version`).
    Evaluated(VersionEvaluated),
    /// Checked the file for drift (`--check-drift`).
    Drift(b3o_models::drift::DriftReport),
}

/// `--evaluate-version`: the version's metrics on the member's held-out rows, as reported.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VersionEvaluated {
    pub version_id: i64,
    pub group_id: i64,
    /// The round that made the version (the evaluation is recorded for it).
    pub round: i64,
    pub member_id: i64,
    pub num_samples: u64,
    pub metrics: std::collections::BTreeMap<String, f64>,
}

/// Runs the client to the end of the group's training, or evaluates one version
/// (`--evaluate-version`).
pub async fn run(args: ClientArgs) -> Result<Outcome, ClientError> {
    if let Some(e) = args.max_epsilon
        && !(e.is_finite() && e >= 0.0)
    {
        return Err(ClientError::Usage(
            "--max-epsilon must be a number >= 0".into(),
        ));
    }
    if !(0.0..0.9).contains(&args.test_fraction) {
        return Err(ClientError::Usage(
            "--test-fraction must be at least 0 and below 0.9".into(),
        ));
    }
    let transport =
        HttpTransport::new(&args.server).map_err(|e| ClientError::Usage(e.to_string()))?;
    let auth = authenticate(&args, &transport).await?;
    if let Some(name) = &args.check_drift {
        return check_drift(&args, Api::new(transport, auth), name)
            .await
            .map(Outcome::Drift);
    }
    if let Some(version_id) = args.evaluate_version {
        return evaluate_version(&args, Api::new(transport, auth), version_id)
            .await
            .map(Outcome::Evaluated);
    }
    train(args, transport, auth).await.map(Outcome::Trained)
}

/// The credentials: `--token`, or a token created after signing in with `--email` and
/// `--password`.
async fn authenticate(args: &ClientArgs, transport: &HttpTransport) -> Result<Auth, ClientError> {
    Ok(match (&args.token, &args.email, &args.password) {
        (Some(token), _, _) => Auth::Bearer(token.trim().to_string()),
        (None, Some(email), Some(password)) => {
            let anonymous = Api::new(transport.clone(), Auth::None);
            let session = anonymous.login(email, password).await?;
            let signed_in = Api::new(
                transport.clone(),
                Auth::Session {
                    cookie: Some(session.cookie),
                    csrf_token: session.csrf_token,
                },
            );
            let token = signed_in.create_token("b3o client", Some(7)).await?;
            eprintln!("Signed in; created the API token `b3o client` (expires in 7 days).");
            Auth::Bearer(token)
        }
        _ => {
            return Err(ClientError::Usage(
                "give --token (or B3O_TOKEN), or --email and --password".into(),
            ));
        }
    })
}

/// `--evaluate-version`: scores the version on the held-out rows (the split training uses),
/// reports the metrics (only they and the row count leave), prints them.
async fn evaluate_version(
    args: &ClientArgs,
    api: Api<HttpTransport>,
    version_id: i64,
) -> Result<VersionEvaluated, ClientError> {
    if args.test_fraction <= 0.0 {
        return Err(ClientError::Usage(
            "--evaluate-version scores the rows you hold out: give a --test-fraction above 0"
                .into(),
        ));
    }
    let data = LocalData::load(&args.data).map_err(FlError::from)?;
    if let Some(target) = &args.target {
        let version = api.version(version_id).await?;
        let group = api.group(version.group_id).await?;
        if let ModelTemplate::Tabular { schema, .. } = &group.model
            && schema.target.name != *target
        {
            return Err(ClientError::Usage(format!(
                "this group predicts `{}`, not `{target}`",
                schema.target.name
            )));
        }
    }
    let score = b3o_wasm_client::fl::evaluate::evaluate_version(
        &api,
        &ThreadTrainer::cpu(),
        &data,
        args.test_fraction,
        args.seed,
        version_id,
    )
    .await?;
    let num_samples = score.num_samples;
    let metrics = score.metrics.clone();
    let done = VersionEvaluated {
        version_id,
        group_id: score.group_id,
        round: score.round,
        member_id: score.member_id,
        num_samples,
        metrics,
    };
    println!(
        "Version {version_id} (round {}) of group {} on your {num_samples} held-out row(s): {}. \
         Reported to the server (only these metrics).",
        done.round,
        done.group_id,
        metrics_text(&done.metrics)
    );
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&done).unwrap_or_else(|_| "{}".into())
        );
    }
    Ok(done)
}

/// `--check-drift`: the file's drift against the deployment's training data, computed here;
/// with `--share-drift` its summary (never a row) is sent to the deployment's drift view.
async fn check_drift(
    args: &ClientArgs,
    api: Api<HttpTransport>,
    name: &str,
) -> Result<b3o_models::drift::DriftReport, ClientError> {
    let bytes = std::fs::read(&args.data)
        .map_err(|e| ClientError::Usage(format!("reading {}: {e}", args.data.display())))?;
    let table = b3o_models::tabular::read_csv(bytes.as_slice())
        .map_err(|e| ClientError::Usage(format!("{}: {e}", args.data.display())))?;
    let reference = api.drift_reference(name).await?;
    let (report, summary) =
        b3o_models::monitor::check_table(&reference, &table).map_err(ClientError::Usage)?;
    println!(
        "{} of {} features drifted ({:.0}%; `{name}` marks drift from {:.0}%) in your {} rows, \
         against version {}:",
        report.drifted_features,
        report.features.len(),
        report.drift_share * 100.0,
        reference.settings.drift_share * 100.0,
        report.rows,
        reference.version_id
    );
    for f in &report.features {
        let method = f.method.as_str();
        let unseen = if f.unseen.is_empty() {
            String::new()
        } else {
            let values: Vec<String> = f
                .unseen
                .iter()
                .map(|u| format!("{} ({})", u.value, u.count))
                .collect();
            format!("; never seen in training: {}", values.join(", "))
        };
        println!(
            "  {} {:<24} {method} {:.4} (threshold {}), PSI {:.3}, missing {:.1}%{unseen}",
            if f.drifted { "DRIFT" } else { "  ok " },
            f.name,
            f.score,
            f.threshold,
            f.psi,
            f.missing_current * 100.0,
        );
    }
    if args.share_drift {
        let body = b3o_models::protocol::monitoring::PartnerSummary {
            version_id: reference.version_id,
            summary,
        };
        let check = api.share_drift(name, &body).await?;
        println!(
            "Shared your file's summary (no rows) with `{name}`'s drift view, as {}.",
            check.member
        );
    } else if !args.quiet {
        println!("Nothing was sent (add --share-drift to share the summary with the group).");
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).unwrap_or_else(|_| "{}".into())
        );
    }
    Ok(report)
}

/// Takes part in the group's training to its end.
async fn train(
    args: ClientArgs,
    transport: HttpTransport,
    auth: Auth,
) -> Result<Report, ClientError> {
    let data = LocalData::load(&args.data).map_err(FlError::from)?;

    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new_spinner()
    };
    bar.enable_steady_tick(Duration::from_millis(200));
    let ui = bar.clone();
    let observer = move |event: &ClientEvent| show(&ui, event);
    let options = ParticipantOptions {
        name: args.name.clone(),
        test_fraction: args.test_fraction,
        seed: args.seed,
        poll_interval: Duration::from_secs(10),
        evaluate: args.test_fraction > 0.0,
        max_epsilon: args.max_epsilon,
    };
    let ledger = FileLedger::new(ledger_path(&args), &args.server);
    let api = Api::new(transport, auth);
    let mut participant = Participant::new(api, ThreadTrainer::cpu(), observer, data, options)
        .with_ledger(Arc::new(ledger));
    let cancel = participant.cancel_token();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            cancel.cancel();
        }
    });
    match (&args.code, args.group) {
        (Some(code), _) => {
            participant.join(code).await?;
        }
        (None, Some(group)) => participant.attach(group),
        (None, None) => return Err(ClientError::Usage("give --code or --group".into())),
    }
    let group = participant.prepare().await?;
    if let (Some(target), ModelTemplate::Tabular { schema, .. }) = (&args.target, &group.model)
        && schema.target.name != *target
    {
        return Err(ClientError::Usage(format!(
            "this group predicts `{}`, not `{target}`",
            schema.target.name
        )));
    }
    bar.println(format!(
        "Group {} \"{}\": {} round(s); {} member(s), {} ready.",
        group.id, group.name, group.hyperparameters.rounds, group.members, group.ready_members
    ));
    let report = participant.run().await;
    bar.finish_and_clear();
    let report = report?;
    println!("{}", final_words(&report));
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).unwrap_or_else(|_| "{}".into())
        );
    }
    Ok(report)
}

fn metrics_text(metrics: &std::collections::BTreeMap<String, f64>) -> String {
    metrics
        .iter()
        .map(|(k, v)| format!("{k} {v:.4}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn show(bar: &ProgressBar, event: &ClientEvent) {
    match event {
        ClientEvent::Joined { group_id, .. } => {
            bar.set_message(format!("joined group {group_id}"));
        }
        ClientEvent::StatisticsSent { .. } => {
            bar.println("Sent your columns' summary statistics (no rows).");
        }
        ClientEvent::Ready {
            train_samples,
            test_samples,
            ..
        } => bar.println(format!(
            "Ready: {train_samples} row(s) to train on, {test_samples} held out for evaluation."
        )),
        ClientEvent::Waiting { round } => {
            bar.set_style(ProgressStyle::default_spinner());
            bar.set_message(match round {
                None => "waiting for the owner to start training".to_string(),
                Some(r) => format!("waiting for the next round (round {r} is on)"),
            });
        }
        ClientEvent::RoundStarted { round, epochs, .. } => {
            bar.set_style(
                ProgressStyle::with_template("{spinner} round {msg} {bar:30} {pos}/{len} batches")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_position(0);
            bar.set_message(format!("{round}: training {epochs} epoch(s)"));
        }
        ClientEvent::Training {
            round,
            epoch,
            epochs,
            batch,
            batches_per_epoch,
            loss,
        } => {
            bar.set_length((epochs * batches_per_epoch) as u64);
            bar.set_position((epoch * batches_per_epoch + batch + 1) as u64);
            if *batch == 0 || batch + 1 == *batches_per_epoch {
                bar.set_message(format!(
                    "{round}: epoch {}/{epochs}, loss {loss:.4}",
                    epoch + 1
                ));
            }
        }
        ClientEvent::Uploaded { round, metrics, .. } => bar.println(format!(
            "Round {round}: update accepted (on your training rows: {}).",
            metrics_text(metrics)
        )),
        ClientEvent::Skipped { round, reason } => {
            bar.println(format!("Round {round}: update not taken: {reason}"));
        }
        ClientEvent::Kept { .. } => {}
        ClientEvent::Resumed { round, epochs_done } => bar.println(format!(
            "Round {round}: resuming after the {epochs_done} epoch(s) done before."
        )),
        ClientEvent::KeptUploaded {
            round, buffered_in, ..
        } => bar.println(format!(
            "Round {round}: the update kept from before was sent{}.",
            buffered_in.map_or(String::new(), |b| format!(" (counted in round {b})"))
        )),
        ClientEvent::KeptDiscarded { round, reason } => bar.println(format!(
            "Round {round}: the update kept from before was not taken: {reason}"
        )),
        ClientEvent::Failed { round, reason } => {
            bar.println(format!("Round {round}: local training failed: {reason}"));
        }
        ClientEvent::Evaluated { round, metrics, .. } => bar.println(format!(
            "Round {round}'s global model on your held-out rows: {}.",
            metrics_text(metrics)
        )),
        ClientEvent::Retrying {
            what,
            attempt,
            delay_ms,
            error,
        } => bar.println(format!(
            "{what}: {error}; retrying in {:.1} s (attempt {})",
            *delay_ms as f64 / 1000.0,
            attempt + 1
        )),
        ClientEvent::Finished { .. } => bar.set_message("done"),
        ClientEvent::Privacy {
            round,
            epsilon,
            budget,
            delta,
            ..
        } => bar.println(match round {
            None => format!(
                "Differential privacy: your budget in this group is epsilon {budget} at delta \
                 {delta:e}; spent so far {epsilon:.3} (counted on this machine)."
            ),
            Some(r) => format!(
                "Round {r}: privacy spent epsilon {epsilon:.3} of {budget} (delta {delta:e})."
            ),
        }),
        ClientEvent::PrivacyRefused { round, reason, .. } => {
            bar.println(format!("Round {round}: not taking part: {reason}"));
        }
    }
}

fn final_words(report: &Report) -> String {
    let head = format!(
        "Training finished: group {}, {} round(s), your updates in {} of them; final model: version {}.",
        report.group_id,
        report.last_round,
        report.rounds_trained.len(),
        report.version_id.map_or("-".to_string(), |v| v.to_string())
    );
    match (&report.metrics, report.metrics_on.as_deref()) {
        (Some(m), Some(on)) => {
            let rows = if on == "test" { "held-out" } else { "training" };
            format!(
                "{head}\nOn your {} {rows} row(s): {}.",
                m.num_samples,
                metrics_text(&m.to_map())
            )
        }
        _ => head,
    }
}
