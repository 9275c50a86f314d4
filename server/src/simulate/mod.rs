//! `b3o simulate`: N virtual clients in one process, through the real server code.
//!
//! The server runs in process: the real router ([`crate::app`]) over a temporary SQLite
//! database and data directory, the real federation rounds and strategies, the real accounts
//! (one API token per client). Each virtual client is a real
//! [`b3o_wasm_client::fl::Participant`] talking to the router through
//! [`transport::InProcess`]: it joins with the group's code, sends its column summaries,
//! marks ready, trains each round on its partition ([`partition`]) and uploads its update.
//! Training runs on a pool of threads (one per core by default).
//!
//! Afterwards every round's global model is evaluated on a held-out test split, next to a
//! centralised baseline (the same model from the same initial weights, trained on all the
//! training rows for as many epochs as the federation ran), and written out by [`report`].
//!
//! The temporary server data (database and blobs) lives on a RAM disk (`/dev/shm`) where
//! there is one, else in the system's temporary directory (`--work-dir` to choose), with
//! SQLite's `synchronous = OFF`: the server fsyncs every update it acknowledges, which on a
//! disk would dominate a simulation's time and buys nothing for throwaway data. It is deleted
//! at the end.

pub mod identities;
pub mod partition;
pub mod report;
pub mod transport;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use b3o_models::Device;
use b3o_models::compress::UpdateEncoding;
use b3o_models::dataset::{Dataset, train_test_split};
use b3o_models::dp::{DpConfig, DpPlacement};
use b3o_models::image::mnist_dataset;
use b3o_models::metrics::Metrics;
use b3o_models::model::ModelSpec;
use b3o_models::protocol::{
    AsyncConfig, CreateGroup, GroupEvent, Hyperparameters, ModelTemplate, Optimizer, Phase,
};
use b3o_models::tabular::{InferOptions, Table, infer_schema, read_csv};
use b3o_models::train::{Optimizer as LocalOptimizer, TrainConfig, TrainError};
use b3o_models::weights::{self, WeightSet};
use b3o_wasm_client::fl::data::LocalData;
use b3o_wasm_client::fl::trainer::{ProgressFn, ThreadTrainer, TrainJob};
use b3o_wasm_client::fl::{
    Api, Auth, ClientEvent, EventStream, FlError, Participant, ParticipantOptions, Trainer,
};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use self::partition::{Partition, PartitionError};
use self::report::{BaselineRecord, RoundRecord, SimReport};
use self::transport::InProcess;
use crate::error::ApiError;
use crate::state::AppState;

/// `b3o simulate` options.
#[derive(Debug, Clone, Parser)]
#[command(name = "simulate")]
pub struct SimulateArgs {
    /// A CSV file (with --target), or a folder with one subfolder of PNG/JPEG images per class.
    #[arg(long, conflicts_with = "mnist_idx")]
    pub data: Option<PathBuf>,
    /// The CSV's target column (default: inferred, e.g. `Exited`, `label`, `target`).
    #[arg(long)]
    pub target: Option<String>,
    /// MNIST-style IDX files (optionally gzipped): images, then labels.
    #[arg(long, num_args = 2, value_names = ["IMAGES", "LABELS"])]
    pub mnist_idx: Option<Vec<PathBuf>>,
    /// Use only the first N rows or images.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Number of virtual clients (IID and Dirichlet partitions).
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Split by these shares, one client each, e.g. `10,20,30,40`.
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["dirichlet", "by_column"])]
    pub fractions: Option<Vec<f64>>,
    /// Label skew: class proportions per client drawn from Dirichlet(alpha); smaller is more
    /// skewed (0.5 is common).
    #[arg(long, conflicts_with = "by_column")]
    pub dirichlet: Option<f64>,
    /// One client per value of this column (e.g. `Geography`, a hospital id).
    #[arg(long)]
    pub by_column: Option<String>,
    /// `fedavg`, `fedprox`, `fedavgm`, `fedadam`, `fedyogi`, `fedadagrad`, `fedmedian`,
    /// `fedtrimmedavg`, `krum`, `bulyan`, or a JSON object such as `{"name":"fedprox","proximal_mu":0.1}`.
    #[arg(long, default_value = "fedavg")]
    pub strategy: String,
    #[arg(long, default_value_t = 5)]
    pub rounds: u32,
    /// Local epochs per round.
    #[arg(long, default_value_t = 5)]
    pub epochs: u32,
    #[arg(long, default_value_t = 32)]
    pub batch_size: u32,
    /// `adam` or `sgd`.
    #[arg(long, default_value = "adam")]
    pub optimizer: String,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Share of the clients trained each round.
    #[arg(long, default_value_t = 1.0)]
    pub fraction_fit: f64,
    /// Hidden layer widths of the tabular MLP (default 128,64,32).
    #[arg(long, value_delimiter = ',')]
    pub hidden: Option<Vec<usize>>,
    /// Share of the rows held out to test every round's model.
    #[arg(long, default_value_t = 0.2)]
    pub test_fraction: f64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Training threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Where metrics.csv, metrics.json and chart.svg go.
    #[arg(long, default_value = "simulation")]
    pub out: PathBuf,
    /// Skip the centralised baseline.
    #[arg(long)]
    pub no_baseline: bool,
    /// Where the temporary server data goes (default: /dev/shm when writable, else the
    /// system's temporary directory).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Secure aggregation (SecAgg+ with Flower's defaults): the server only learns each
    /// round's sum. Mean-type strategies only.
    #[arg(long)]
    pub secure: bool,
    /// How clients send their updates: `f32`, `f16`, `int8` (a scale per output channel),
    /// `int8-tensor` (a scale per tensor) or `topk:FRACTION` (e.g. `topk:0.01`).
    #[arg(long, default_value = "f32")]
    pub update_encoding: UpdateEncoding,
    /// Differential privacy: the target epsilon. The noise multiplier is calibrated so that
    /// `--rounds` rounds spend at most this (at `--dp-delta`); clients clip to `--dp-clip`.
    #[arg(long)]
    pub dp_epsilon: Option<f64>,
    /// The target delta (with `--dp-epsilon`).
    #[arg(long, default_value_t = 1e-5, requires = "dp_epsilon")]
    pub dp_delta: f64,
    /// Where the noise goes: `central` (clients clip, the aggregate gets the noise) or `local`
    /// (each client adds its full noise).
    #[arg(long, default_value = "central", requires = "dp_epsilon")]
    pub dp_placement: DpPlacement,
    /// The clipping norm of an update (the initial one with `--dp-adaptive`).
    #[arg(long, requires = "dp_epsilon")]
    pub dp_clip: Option<f64>,
    /// Adaptive clipping (Andrew et al. 2021): the norm follows the median update norm.
    #[arg(long, requires = "dp_epsilon")]
    pub dp_adaptive: bool,
    /// Asynchronous buffered aggregation (FedBuff): clients train whenever they are ready and
    /// a version is published every `--buffer` updates; `--rounds` counts versions.
    #[arg(long = "async", requires = "buffer")]
    pub asynchronous: bool,
    /// The buffer size K of `--async`.
    #[arg(long, requires = "asynchronous")]
    pub buffer: Option<u32>,
    /// With `--async`: updates more versions behind than this are refused.
    #[arg(long, default_value_t = 10, requires = "asynchronous")]
    pub max_staleness: u32,
    /// With `--async`: a stale update weighs `(1 + staleness)^-EXPONENT` (0.5: FedBuff's).
    #[arg(long, default_value_t = 0.5, requires = "asynchronous")]
    pub staleness_exponent: f64,
    /// Share of the clients that are slower (the last ones), e.g. 0.25: each of their
    /// trainings takes `--slowdown` times as long (they wait out the difference), like a
    /// partner on an old laptop.
    #[arg(long, default_value_t = 0.0)]
    pub slow_clients: f64,
    /// How many times slower the `--slow-clients` are.
    #[arg(long, default_value_t = 10.0)]
    pub slowdown: f64,
}

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Partition(#[from] PartitionError),
    #[error("the in-process server: {0}")]
    Server(#[from] ApiError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("a virtual client: {0}")]
    Client(#[from] FlError),
    #[error("training the baseline: {0}")]
    Train(#[from] TrainError),
    #[error("{path}: {message}")]
    Io { path: String, message: String },
}

fn io(path: &std::path::Path) -> impl Fn(std::io::Error) -> SimError + '_ {
    move |e| SimError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// The rows to share out.
enum Source {
    Table {
        table: Table,
        target: String,
    },
    Images {
        dataset: Dataset,
        labels: Vec<String>,
    },
}

impl Source {
    fn len(&self) -> usize {
        match self {
            Source::Table { table, .. } => table.n_rows,
            Source::Images { dataset, .. } => dataset.n_rows,
        }
    }

    /// The partitioning key of each row of `rows`: its class (Dirichlet) or a column's value.
    fn keys(&self, rows: &[usize], column: Option<&str>) -> Result<Vec<String>, SimError> {
        match self {
            Source::Table { table, target } => {
                let name = column.unwrap_or(target);
                let col = table.column(name).ok_or_else(|| {
                    SimError::Input(format!(
                        "no column `{name}`; the file has: {}",
                        table.names().join(", ")
                    ))
                })?;
                Ok(rows
                    .iter()
                    .map(|&r| col.values[r].clone().unwrap_or_default())
                    .collect())
            }
            Source::Images { dataset, labels } => {
                if column.is_some() {
                    return Err(SimError::Input(
                        "--by-column needs a CSV; images have no columns".into(),
                    ));
                }
                Ok(rows
                    .iter()
                    .map(|&r| labels[dataset.targets[r] as usize].clone())
                    .collect())
            }
        }
    }

    fn local(&self, rows: &[usize]) -> LocalData {
        match self {
            Source::Table { table, .. } => LocalData::Table(table.select_rows(rows)),
            Source::Images { dataset, labels } => LocalData::Inputs {
                dataset: dataset.subset(rows),
                labels: labels.clone(),
            },
        }
    }
}

fn load(args: &SimulateArgs) -> Result<(Source, ModelTemplate), SimError> {
    let limit = |n: usize| args.limit.map_or(n, |l| l.min(n));
    if let Some(paths) = &args.mnist_idx {
        let images = std::fs::read(&paths[0]).map_err(io(&paths[0]))?;
        let labels = std::fs::read(&paths[1]).map_err(io(&paths[1]))?;
        let dataset = mnist_dataset(&images, &labels)
            .map_err(|e| SimError::Input(format!("MNIST files: {e}")))?;
        let dataset = dataset.subset(&(0..limit(dataset.n_rows)).collect::<Vec<_>>());
        let labels: Vec<String> = (0..10).map(|d| d.to_string()).collect();
        let template = ModelTemplate::ImageCnn {
            labels: labels.clone(),
        };
        return Ok((Source::Images { dataset, labels }, template));
    }
    let path = args.data.as_ref().ok_or_else(|| {
        SimError::Input("give --data FILE.csv (or a folder) or --mnist-idx".into())
    })?;
    if path.is_dir() {
        let LocalData::Images(images) = LocalData::load(path).map_err(FlError::from)? else {
            return Err(SimError::Input(format!("{}: no images", path.display())));
        };
        let mut labels: Vec<String> = images.iter().map(|i| i.label.clone()).collect();
        labels.sort();
        labels.dedup();
        if labels.len() < 2 {
            return Err(SimError::Input(
                "an image folder needs at least two class subfolders".into(),
            ));
        }
        // A seeded shuffle, so that --limit keeps every class.
        let mut order: Vec<usize> = (0..images.len()).collect();
        {
            use rand::SeedableRng;
            use rand::seq::SliceRandom;
            order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(args.seed));
        }
        order.truncate(limit(images.len()));
        let mut features = Vec::with_capacity(order.len() * 784);
        let mut targets = Vec::with_capacity(order.len());
        for &i in &order {
            features.extend_from_slice(&images[i].pixels);
            targets.push(
                labels
                    .iter()
                    .position(|l| *l == images[i].label)
                    .unwrap_or(0) as f32,
            );
        }
        let dataset =
            Dataset::new(features, targets, 784).map_err(|e| SimError::Input(e.to_string()))?;
        let template = ModelTemplate::ImageCnn {
            labels: labels.clone(),
        };
        return Ok((Source::Images { dataset, labels }, template));
    }
    let bytes = std::fs::read(path).map_err(io(path))?;
    let table =
        read_csv(&bytes).map_err(|e| SimError::Input(format!("{}: {e}", path.display())))?;
    let table = table.select_rows(&(0..limit(table.n_rows)).collect::<Vec<_>>());
    let options = InferOptions {
        target: args.target.clone(),
        ..Default::default()
    };
    let mut schema = infer_schema(&table, &options).map_err(|e| SimError::Input(format!("{e}")))?;
    // A partitioning column is who holds the rows, not something to learn from.
    if let Some(col) = &args.by_column {
        schema.features.retain(|f| &f.name != col);
    }
    let target = schema.target.name.clone();
    let template = ModelTemplate::Tabular {
        schema,
        hidden: args.hidden.clone(),
    };
    Ok((Source::Table { table, target }, template))
}

impl SimulateArgs {
    fn partition(&self) -> Partition {
        if let Some(f) = &self.fractions {
            Partition::Fractions(f.clone())
        } else if let Some(alpha) = self.dirichlet {
            Partition::Dirichlet {
                clients: self.clients,
                alpha,
            }
        } else if self.by_column.is_some() {
            Partition::ByValue
        } else {
            Partition::Iid {
                clients: self.clients,
            }
        }
    }

    fn partition_name(&self) -> String {
        match self.partition() {
            Partition::Iid { .. } => "IID".into(),
            Partition::Fractions(f) => format!(
                "fractions {}",
                f.iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            ),
            Partition::Dirichlet { alpha, .. } => format!("Dirichlet({alpha})"),
            Partition::ByValue => format!("by {}", self.by_column.as_deref().unwrap_or("column")),
        }
    }

    fn strategy_json(&self) -> Result<Value, SimError> {
        let s = self.strategy.trim();
        let mut v: Value = if s.starts_with('{') {
            serde_json::from_str(s)
                .map_err(|e| SimError::Input(format!("--strategy is not valid JSON: {e}")))?
        } else {
            json!({ "name": s.to_ascii_lowercase() })
        };
        // Parameters without a default, filled with common values.
        match v["name"].as_str() {
            Some("fedprox") if v.get("proximal_mu").is_none() => v["proximal_mu"] = json!(0.1),
            _ => {}
        }
        Ok(v)
    }

    fn optimizer(&self) -> Result<Optimizer, SimError> {
        match self.optimizer.to_ascii_lowercase().as_str() {
            "adam" => Ok(Optimizer::Adam),
            "sgd" => Ok(Optimizer::Sgd),
            other => Err(SimError::Input(format!(
                "--optimizer must be adam or sgd, not `{other}`"
            ))),
        }
    }
}

/// Updates received per round, for the progress bar and the round records.
#[derive(Default)]
struct Tally {
    opened: BTreeMap<i64, Instant>,
    seconds: BTreeMap<i64, f64>,
    /// When each round's version was published.
    closed: BTreeMap<i64, Instant>,
}

/// Runs a simulation and writes its report into `args.out`.
pub async fn run(args: &SimulateArgs) -> Result<SimReport, SimError> {
    let report = simulate(args).await?;
    report.write(&args.out).map_err(io(&args.out))?;
    Ok(report)
}

/// Runs a simulation; writes nothing.
pub async fn simulate(args: &SimulateArgs) -> Result<SimReport, SimError> {
    let started = Instant::now();
    if !(0.0..1.0).contains(&args.test_fraction) {
        return Err(SimError::Input("--test-fraction must be in [0, 1)".into()));
    }
    if !((0.0..=1.0).contains(&args.slow_clients) && (1.0..=1000.0).contains(&args.slowdown)) {
        return Err(SimError::Input(
            "--slow-clients must be in [0, 1] and --slowdown in [1, 1000]".into(),
        ));
    }

    let strategy = args.strategy_json()?;
    let optimizer = args.optimizer()?;
    let (source, template) = load(args)?;
    let (train_rows, test_rows) = train_test_split(source.len(), args.test_fraction, args.seed);
    if test_rows.is_empty() {
        return Err(SimError::Input(
            "no test rows: raise --test-fraction or the data size".into(),
        ));
    }
    let scheme = args.partition();
    let keys = match scheme {
        Partition::Dirichlet { .. } => source.keys(&train_rows, None)?,
        Partition::ByValue => source.keys(&train_rows, args.by_column.as_deref())?,
        _ => Vec::new(),
    };
    let parts = partition::split(&train_rows, &keys, &scheme, args.seed)?;
    let n = parts.len();

    // The server, in process.
    let base = args.work_dir.clone().unwrap_or_else(default_work_dir);
    let work = tempfile::Builder::new()
        .prefix("b3o-simulate-")
        .tempdir_in(&base)
        .map_err(io(&base))?;
    let db = scratch_db(&work.path().join("b3o.sqlite3")).await?;
    let store = crate::blobs::BlobStore::local(work.path()).map_err(ApiError::from)?;
    let state = AppState::new(
        db,
        Arc::new(store),
        Arc::default(),
        Arc::default(),
        Arc::default(),
    );
    crate::federation::spawn_driver(state.clone());
    let transport = InProcess::new(crate::app(state.clone(), &work.path().join("no-static")));
    let tokens = identities::create(&state, n + 1).await?;
    let owner = Api::new(transport.clone(), Auth::Bearer(tokens[0].clone()));
    let selected = ((args.fraction_fit * n as f64).ceil() as u32).clamp(1, n as u32);
    let request = CreateGroup::<Value> {
        name: "simulation".into(),
        description: format!("b3o simulate: {n} clients, {}", args.partition_name()),
        model: template,
        hyperparameters: Hyperparameters {
            rounds: args.rounds,
            local_epochs: args.epochs,
            batch_size: args.batch_size,
            optimizer,
            lr: args.lr,
        },
        strategy: strategy.clone(),
        min_clients: selected,
        fraction_fit: args.fraction_fit,
        round_deadline_secs: 7 * 24 * 3600,
        max_update_norm: None,
        secagg: args.secure.then(b3o_models::secagg::SecAggConfig::default),
        update_encoding: args.update_encoding,
        dp: args.dp_epsilon.map(|epsilon| DpConfig {
            epsilon,
            delta: args.dp_delta,
            placement: args.dp_placement,
            clipping_norm: args.dp_clip,
            noise_multiplier: None,
            adaptive: args.dp_adaptive.then(Default::default),
        }),
        asynchronous: args
            .buffer
            .filter(|_| args.asynchronous)
            .map(|buffer_size| AsyncConfig {
                buffer_size,
                max_staleness: args.max_staleness,
                staleness_exponent: args.staleness_exponent,
            }),
    };
    let created = owner.create_group(&request).await?;
    let gid = created.group_id;

    // Progress: one tick per accepted update.
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        let per_round = args
            .buffer
            .filter(|_| args.asynchronous)
            .unwrap_or(selected);
        ProgressBar::new(u64::from(args.rounds) * u64::from(per_round))
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} updates · {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(format!("{n} clients joining"));
    let ticker = bar.clone();
    // Updates accepted and their bytes on the wire.
    let uploaded = Arc::new(Mutex::new((0u64, 0u64)));
    let counted = uploaded.clone();
    let observer = Arc::new(move |e: &ClientEvent| {
        if let ClientEvent::Uploaded { bytes, .. } = e {
            ticker.inc(1);
            let mut c = counted.lock().unwrap_or_else(|e| e.into_inner());
            c.0 += 1;
            c.1 += bytes;
        }
    });

    // The virtual clients.
    // Twice the cores: a few clients of unequal sizes then share the cores evenly instead
    // of queueing behind the largest.
    let threads = args.threads.unwrap_or_else(|| {
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        n.min(2 * cores)
    });
    let trainer = Arc::new(ThreadTrainer::new(Device::flex(), threads));
    let slow = (args.slow_clients * n as f64).ceil() as usize;
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(n);
    let mut tasks = Vec::with_capacity(n);
    let client_rows: Vec<usize> = parts.iter().map(Vec::len).collect();
    for (i, rows) in parts.iter().enumerate() {
        let api = Api::new(transport.clone(), Auth::Bearer(tokens[i + 1].clone()));
        let options = ParticipantOptions {
            name: Some(format!("client {}", i + 1)),
            test_fraction: 0.0,
            seed: args.seed.wrapping_add(i as u64 + 1),
            poll_interval: Duration::from_secs(30),
            evaluate: false,
            max_epsilon: None,
        };
        let factor = if i >= n - slow { args.slowdown } else { 1.0 };
        let mut participant = Participant::new(
            api,
            Slowed {
                inner: trainer.clone(),
                factor,
            },
            observer.clone(),
            source.local(rows),
            options,
        );
        let code = created.join_code.clone();
        let ready = ready_tx.clone();
        tasks.push(tokio::spawn(async move {
            participant.join(&code).await?;
            participant.prepare().await?;
            let _ = ready.send(()).await;
            // Closes the channel once every client is ready or has failed.
            drop(ready);
            participant.run().await
        }));
    }
    drop(ready_tx);
    let mut ready = 0;
    while ready < n && ready_rx.recv().await.is_some() {
        ready += 1;
    }
    if ready < n {
        // A client failed before being ready: its error says why.
        return Err(first_error(tasks).await);
    }

    // Round timings from the group's events, read by the owner.
    let mut events = owner
        .events(gid)
        .await
        .map_err(|e| SimError::Client(FlError::Protocol(e.to_string())))?;
    let tally = Arc::new(Mutex::new(Tally::default()));
    let watcher = {
        let tally = tally.clone();
        let bar = bar.clone();
        let rounds = args.rounds;
        tokio::spawn(async move {
            while let Ok(Some(event)) = events.next().await {
                let Ok(event) = serde_json::from_str::<GroupEvent>(&event.data) else {
                    continue;
                };
                let mut t = tally.lock().unwrap_or_else(|e| e.into_inner());
                match event {
                    GroupEvent::RoundOpened { round, .. } => {
                        t.opened.insert(round, Instant::now());
                        bar.set_message(format!("round {round}/{rounds}"));
                    }
                    GroupEvent::RoundClosed { round, .. }
                    | GroupEvent::RoundFailed { round, .. } => {
                        if let Some(at) = t.opened.get(&round) {
                            let s = at.elapsed().as_secs_f64();
                            t.seconds.insert(round, s);
                        }
                        t.closed.insert(round, Instant::now());
                    }
                    GroupEvent::PhaseChanged {
                        phase: Phase::Finished,
                    } => break,
                    _ => {}
                }
            }
        })
    };
    let setup_seconds = started.elapsed().as_secs_f64();
    let training_started = Instant::now();
    owner.start(gid).await?;
    let aborts: Vec<_> = tasks.iter().map(|t| t.abort_handle()).collect();
    for task in tasks {
        let outcome = task
            .await
            .map_err(|e| SimError::Client(FlError::Protocol(format!("a client task: {e}"))));
        if let Err(e) = outcome.and_then(|r| r.map_err(SimError::from)) {
            aborts.iter().for_each(|a| a.abort());
            watcher.abort();
            bar.abandon();
            return Err(e);
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), watcher).await;
    let train_seconds = started.elapsed().as_secs_f64() - setup_seconds;
    bar.finish_with_message("evaluating");

    // Every round's global model on the test rows.
    let versions = owner.versions(gid).await?.versions;
    let first = versions
        .first()
        .ok_or_else(|| SimError::Input("the group has no model version".into()))?;
    let spec: Arc<ModelSpec> = Arc::new(
        serde_json::from_value(first.spec.clone())
            .map_err(|e| SimError::Input(format!("the model spec: {e}")))?,
    );
    let test = Arc::new(
        source
            .local(&test_rows)
            .dataset(&spec)
            .map_err(FlError::from)?,
    );
    let rounds_view: BTreeMap<i64, _> = owner
        .rounds(gid)
        .await?
        .rounds
        .into_iter()
        .map(|r| (r.round, r))
        .collect();
    let (seconds, closed) = {
        let t = tally.lock().unwrap_or_else(|e| e.into_inner());
        (t.seconds.clone(), t.closed.clone())
    };
    let elapsed = |round: i64| {
        closed
            .get(&round)
            .map_or(0.0, |at| at.duration_since(training_started).as_secs_f64())
    };
    let mut records = Vec::new();
    let mut initial = None;
    for v in &versions {
        let bytes = owner.version_weights(v.id).await?;
        let (set, _) =
            weights::decode(&bytes, &spec.layout(), usize::MAX).map_err(FlError::from)?;
        let test_metrics = evaluate(&spec, &set, &test).await?;
        if v.round == 0 {
            initial = Some(set);
        }
        let round = rounds_view.get(&v.round);
        records.push(RoundRecord {
            round: v.round,
            seconds: seconds.get(&v.round).copied().unwrap_or(0.0),
            elapsed: elapsed(v.round),
            updates: round.map_or(0, |r| r.reported),
            failure: None,
            test: test_metrics,
            train: round.and_then(|r| r.metrics.clone()).unwrap_or_default(),
            epsilon: v.privacy.map(|p| p.epsilon),
        });
    }
    for r in rounds_view.values().filter(|r| r.failure.is_some()) {
        records.push(RoundRecord {
            round: r.round,
            seconds: seconds.get(&r.round).copied().unwrap_or(0.0),
            elapsed: elapsed(r.round),
            updates: r.reported,
            failure: r.failure.clone(),
            test: Metrics::default(),
            train: BTreeMap::new(),
            epsilon: None,
        });
    }
    records.sort_by_key(|r| r.round);

    // The centralised baseline: all training rows, the same epochs budget, evaluated after
    // each round's worth of epochs.
    let mut baseline = Vec::new();
    if !args.no_baseline
        && let Some(initial) = initial
    {
        let train = Arc::new(
            source
                .local(&train_rows)
                .dataset(&spec)
                .map_err(FlError::from)?,
        );
        baseline.push(BaselineRecord {
            round: 0,
            epochs: 0,
            test: evaluate(&spec, &initial, &test).await?,
        });
        let mut current = initial;
        for round in 1..=i64::from(args.rounds) {
            let config = TrainConfig {
                epochs: args.epochs as usize,
                batch_size: args.batch_size as usize,
                optimizer: match optimizer {
                    Optimizer::Adam => LocalOptimizer::Adam,
                    Optimizer::Sgd => LocalOptimizer::Sgd { momentum: 0.0 },
                },
                lr: args.lr,
                fedprox_mu: 0.0,
                seed: args.seed.wrapping_add(round as u64),
            };
            let (spec2, train2) = (spec.clone(), train.clone());
            let outcome = tokio::task::spawn_blocking(move || {
                b3o_models::train::train_local(
                    &spec2,
                    &current,
                    &train2,
                    &config,
                    &Device::flex(),
                    &mut |_| std::ops::ControlFlow::Continue(()),
                )
            })
            .await
            .map_err(|e| SimError::Input(format!("baseline thread: {e}")))??;
            current = outcome.weights;
            baseline.push(BaselineRecord {
                round,
                epochs: round as u64 * u64::from(args.epochs),
                test: evaluate(&spec, &current, &test).await?,
            });
        }
    }

    let (uploads, upload_bytes) = *uploaded.lock().unwrap_or_else(|e| e.into_inner());
    let params = spec.layout().num_params() as f64;
    let timed: Vec<f64> = records
        .iter()
        .filter(|r| r.round > 0)
        .map(|r| r.seconds)
        .collect();
    Ok(SimReport {
        task: spec.task,
        strategy,
        partition: args.partition_name(),
        client_rows,
        test_rows: test.n_rows,
        rounds: records,
        baseline,
        setup_seconds,
        seconds_per_round: if timed.is_empty() {
            train_seconds
        } else {
            timed.iter().sum::<f64>() / timed.len() as f64
        },
        total_seconds: started.elapsed().as_secs_f64(),
        update_encoding: args.update_encoding.to_string(),
        dp: owner.group(gid).await?.dp,
        parameters: params as u64,
        uploads,
        upload_bytes,
        bytes_per_parameter: if uploads == 0 || params == 0.0 {
            0.0
        } else {
            upload_bytes as f64 / uploads as f64 / params
        },
    })
}

/// A client's trainer, `factor` times slower than the shared one: it waits out the difference
/// after each training (the cores stay free for the others, as on a partner's own machine).
struct Slowed {
    inner: Arc<ThreadTrainer>,
    factor: f64,
}

impl Trainer for Slowed {
    async fn train(
        &self,
        job: TrainJob,
        progress: ProgressFn,
    ) -> Result<b3o_models::train::TrainOutcome, FlError> {
        let started = Instant::now();
        let outcome = self.inner.train(job, progress).await?;
        if self.factor > 1.0 {
            tokio::time::sleep(started.elapsed().mul_f64(self.factor - 1.0)).await;
        }
        Ok(outcome)
    }

    async fn evaluate(
        &self,
        spec: Arc<ModelSpec>,
        weights: WeightSet,
        data: Arc<Dataset>,
    ) -> Result<Metrics, FlError> {
        self.inner.evaluate(spec, weights, data).await
    }
}

/// A RAM disk where there is one (Linux's `/dev/shm`): the server fsyncs every update and
/// version it stores, which on a disk would dominate a simulation's time.
fn default_work_dir() -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    let writable = tempfile::Builder::new()
        .prefix("b3o-probe-")
        .tempfile_in(&shm)
        .is_ok();
    if writable { shm } else { std::env::temp_dir() }
}

/// The simulation's database: the server's schema, without the durability a throwaway
/// database does not need (`synchronous = OFF`), and a long busy timeout for a thousand
/// clients writing at once.
async fn scratch_db(path: &std::path::Path) -> Result<crate::db::Db, sqlx::Error> {
    let url = format!("sqlite://{}", path.display());
    crate::db::connect_with(
        &url,
        crate::db::PoolSettings {
            max_connections: 8,
            sqlite_synchronous_full: false,
            sqlite_busy_timeout: Duration::from_secs(120),
        },
    )
    .await
}

async fn evaluate(
    spec: &Arc<ModelSpec>,
    weights: &WeightSet,
    data: &Arc<Dataset>,
) -> Result<Metrics, SimError> {
    let (spec, weights, data) = (spec.clone(), weights.clone(), data.clone());
    tokio::task::spawn_blocking(move || b3o_models::train::evaluate(&spec, &weights, &data))
        .await
        .map_err(|e| SimError::Input(format!("evaluation thread: {e}")))?
        .map_err(SimError::from)
}

/// The error of the first client task that failed.
async fn first_error(
    tasks: Vec<tokio::task::JoinHandle<Result<b3o_wasm_client::fl::Report, FlError>>>,
) -> SimError {
    for task in tasks {
        if task.is_finished() {
            match task.await {
                Ok(Err(e)) => return SimError::Client(e),
                Err(e) => return SimError::Client(FlError::Protocol(e.to_string())),
                Ok(Ok(_)) => {}
            }
        } else {
            task.abort();
        }
    }
    SimError::Input("a client stopped before getting ready".into())
}

/// A one-paragraph summary for the terminal.
pub fn summary(report: &SimReport) -> String {
    let metric = report.headline();
    let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
    format!(
        "{} clients ({}), {} rounds: federated {metric} {}, centralised {metric} {}; \
         {:.3} s per round, {:.1} s in all; updates {} at {:.3} bytes per parameter",
        report.client_rows.len(),
        report.partition,
        report.rounds.iter().filter(|r| r.round > 0).count(),
        fmt(report.federated()),
        fmt(report.centralised()),
        report.seconds_per_round,
        report.total_seconds,
        report.update_encoding,
        report.bytes_per_parameter,
    ) + &report.dp.as_ref().map_or(String::new(), |dp| {
        format!(
            "; differential privacy ({}): epsilon {:.3} of {} spent at delta {:e}, noise \
             multiplier {:.4}",
            dp.params.placement.as_str(),
            dp.spent_epsilon,
            dp.params.epsilon,
            dp.params.delta,
            dp.params.noise_multiplier,
        )
    })
}
