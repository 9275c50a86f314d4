//! `b3o simulate` through the library: the original B3O churn scenario against its
//! centralised baseline, a non-IID MNIST federation catching up with centralised training,
//! the written report, and input errors. Full-size runs are in BENCHMARKS.md.

use std::path::PathBuf;

use b3o_server::simulate::report::SimReport;
use b3o_server::simulate::{SimError, SimulateArgs, simulate};
use clap::Parser;

fn dataset(name: &str) -> Option<PathBuf> {
    let path = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/datasets/"
    ))
    .join(name);
    if path.exists() {
        Some(path)
    } else {
        eprintln!("skipped: {} is missing", path.display());
        None
    }
}

fn args(extra: &[&str]) -> SimulateArgs {
    let mut all = vec!["simulate", "--quiet"];
    all.extend_from_slice(extra);
    SimulateArgs::try_parse_from(all).unwrap()
}

/// The issue's acceptance scenario at full size: churn split 10/20/30/40% over four clients,
/// FedAvg, 5 rounds of 5 local epochs, within one accuracy point of the same network trained
/// centrally for 25 epochs on all the training rows.
#[tokio::test(flavor = "multi_thread")]
async fn the_churn_scenario_matches_its_centralised_baseline() {
    let Some(csv) = dataset("churn_modelling.csv") else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let csv = csv.display().to_string();
    let out_dir = out.path().display().to_string();
    let a = args(&[
        "--data",
        &csv,
        "--target",
        "Exited",
        "--fractions",
        "10,20,30,40",
        "--strategy",
        "fedavg",
        "--rounds",
        "5",
        "--epochs",
        "5",
        "--out",
        &out_dir,
    ]);
    let report = b3o_server::simulate::run(&a).await.unwrap();
    eprintln!("{}", b3o_server::simulate::summary(&report));
    assert_eq!(report.client_rows, vec![800, 1600, 2400, 3200]);
    assert_eq!(report.test_rows, 2000);
    // Rounds 0 (the initial model) to 5, each aggregating the four updates.
    let rounds: Vec<i64> = report.rounds.iter().map(|r| r.round).collect();
    assert_eq!(rounds, vec![0, 1, 2, 3, 4, 5]);
    assert!(
        report.rounds[1..]
            .iter()
            .all(|r| r.updates == 4 && r.failure.is_none())
    );
    assert!(report.rounds[1..].iter().all(|r| r.seconds > 0.0));
    assert_eq!(report.baseline.last().unwrap().epochs, 25);
    let (fed, central) = (report.federated().unwrap(), report.centralised().unwrap());
    assert!(fed > 0.80, "federated accuracy {fed}");
    assert!(
        fed >= central - 0.01,
        "federated {fed:.4} vs centralised {central:.4}"
    );
    // The written report: one CSV line per round, the JSON, and a chart with both curves.
    let csv_out = std::fs::read_to_string(out.path().join("metrics.csv")).unwrap();
    assert_eq!(csv_out.lines().count(), 7);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("metrics.json")).unwrap()).unwrap();
    assert_eq!(json["client_rows"][3], 3200);
    let svg = std::fs::read_to_string(out.path().join("chart.svg")).unwrap();
    assert_eq!(svg.matches("<polyline").count(), 2);
}

/// Label skew (Dirichlet 0.5 over 10 clients) on an MNIST subset: the federated model starts
/// well behind centralised training and closes most of the gap over the rounds.
#[tokio::test(flavor = "multi_thread")]
async fn a_non_iid_mnist_federation_narrows_its_gap_to_centralised() {
    let (Some(images), Some(labels)) = (
        dataset("mnist/mnist-10k-images-idx3-ubyte.gz"),
        dataset("mnist/mnist-10k-labels-idx1-ubyte.gz"),
    ) else {
        return;
    };
    let (images, labels) = (images.display().to_string(), labels.display().to_string());
    let a = args(&[
        "--mnist-idx",
        &images,
        &labels,
        "--limit",
        "2500",
        "--clients",
        "10",
        "--dirichlet",
        "0.5",
        "--rounds",
        "4",
        "--epochs",
        "1",
        "--lr",
        "0.003",
    ]);
    let report = simulate(&a).await.unwrap();
    eprintln!("{}", b3o_server::simulate::summary(&report));
    for r in &report.rounds {
        eprintln!(
            "round {}: federated {:?}, gap {:.4}",
            r.round,
            r.test.accuracy,
            report.gap(r.round)
        );
    }
    assert_eq!(report.client_rows.len(), 10);
    assert_eq!(report.client_rows.iter().sum::<usize>(), 2000);
    // Label skew: some client's rows are dominated by few classes (checked on sizes only
    // here; the partition's skew has its own unit test).
    let (first, last) = (report.gap(1), report.gap(4));
    assert!(
        first > 0.0,
        "after one round the skewed federation trails: {first}"
    );
    assert!(last < first, "the gap narrows: {first:.4} -> {last:.4}");
    assert!(report.federated().unwrap() > 0.6);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_simulation_input_is_named() {
    let Some(csv) = dataset("churn_modelling.csv") else {
        return;
    };
    let csv = csv.display().to_string();
    let err = simulate(&args(&["--data", &csv, "--by-column", "Planet"]))
        .await
        .unwrap_err();
    assert!(matches!(err, SimError::Input(_)), "{err}");
    assert!(err.to_string().contains("no column `Planet`"), "{err}");
    let err = simulate(&args(&["--data", &csv, "--limit", "20", "--clients", "50"]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("50 clients but only 16"), "{err}");
    let err = simulate(&args(&[
        "--data",
        &csv,
        "--strategy",
        "fedmagic",
        "--limit",
        "50",
    ]))
    .await
    .unwrap_err();
    assert!(err.to_string().contains("strategy"), "{err}");
}

/// One client per value of a column (three countries), with FedProx: a different partition and
/// strategy through the same path.
#[tokio::test(flavor = "multi_thread")]
async fn by_column_partitions_with_fedprox() {
    let Some(csv) = dataset("churn_modelling.csv") else {
        return;
    };
    let csv = csv.display().to_string();
    let a = args(&[
        "--data",
        &csv,
        "--limit",
        "1500",
        "--by-column",
        "Geography",
        "--strategy",
        "fedprox",
        "--rounds",
        "2",
        "--epochs",
        "1",
        "--no-baseline",
    ]);
    let report = simulate(&a).await.unwrap();
    assert_eq!(report.client_rows.len(), 3, "France, Germany, Spain");
    assert_eq!(report.strategy["name"], "fedprox");
    assert!(report.baseline.is_empty());
    assert!(report.rounds.iter().all(|r| r.failure.is_none()));
    assert!(report.federated().unwrap() > 0.7);
}

/// The same simulation without and with `--secure`.
async fn plain_and_secure(common: &[&str]) -> (SimReport, SimReport) {
    let plain = simulate(&args(common)).await.unwrap();
    let mut secure = common.to_vec();
    secure.push("--secure");
    (plain, simulate(&args(&secure)).await.unwrap())
}

/// Secure aggregation on the churn scenario: the same clients, data and seeds as the plain
/// run, with SecAgg+ (Flower's defaults) in every round; the quantization must not cost more
/// than half an accuracy point (issue #13).
#[tokio::test(flavor = "multi_thread")]
async fn secure_churn_ends_within_half_a_point_of_the_plain_run() {
    let Some(csv) = dataset("churn_modelling.csv") else {
        return;
    };
    let csv = csv.display().to_string();
    let common = [
        "--data",
        csv.as_str(),
        "--target",
        "Exited",
        "--fractions",
        "10,20,30,40",
        "--rounds",
        "5",
        "--epochs",
        "5",
        "--no-baseline",
    ];
    let (plain, secure) = plain_and_secure(&common).await;
    eprintln!("{}", b3o_server::simulate::summary(&secure));
    assert!(
        secure.rounds[1..]
            .iter()
            .all(|r| r.updates == 4 && r.failure.is_none()),
        "{:?}",
        secure.rounds
    );
    let (p, s) = (plain.federated().unwrap(), secure.federated().unwrap());
    assert!(s > 0.80, "secure accuracy {s}");
    assert!((p - s).abs() <= 0.005, "plain {p:.4} vs secure {s:.4}");
}

/// A server optimiser on a secure group: FedAdam steps from the unmasked mean as from a plain
/// round's (issue #13: mean-type strategies and the server optimisers work on the sum), and
/// ends where the plain run ends. `tau` 1e-3: with Flower's 1e-9, Adam turns every near-zero
/// component of the mean change into a full `eta` step whose sign the quantization (or any
/// other tiny noise) decides, and the run is chaotic either way.
#[tokio::test(flavor = "multi_thread")]
async fn fedadam_runs_on_the_unmasked_sum_of_a_secure_group() {
    let Some(csv) = dataset("churn_modelling.csv") else {
        return;
    };
    let csv = csv.display().to_string();
    let common = [
        "--data",
        csv.as_str(),
        "--limit",
        "2000",
        "--clients",
        "3",
        "--strategy",
        r#"{"name":"fedadam","eta":0.01,"tau":0.001}"#,
        "--rounds",
        "3",
        "--epochs",
        "2",
        "--no-baseline",
    ];
    let (plain, report) = plain_and_secure(&common).await;
    assert_eq!(report.strategy["name"], "fedadam");
    assert!(
        report.rounds[1..]
            .iter()
            .all(|r| r.updates == 3 && r.failure.is_none()),
        "{:?}",
        report.rounds
    );
    let (p, s) = (plain.federated().unwrap(), report.federated().unwrap());
    assert!(s > 0.7, "secure FedAdam accuracy {s}");
    assert!((p - s).abs() <= 0.005, "plain {p:.4} vs secure {s:.4}");
}

/// Compressed updates through the real participant: the clients read the group's encoding
/// from the round config and upload int8 or top-k deltas; the report counts the bytes.
#[tokio::test(flavor = "multi_thread")]
async fn compressed_updates_cost_fewer_bytes_and_still_learn() {
    let Some(csv) = dataset("churn_modelling.csv") else {
        return;
    };
    let csv = csv.display().to_string();
    let mut seen = Vec::new();
    for encoding in ["f32", "int8-tensor", "topk:0.1"] {
        let a = args(&[
            "--data",
            &csv,
            "--target",
            "Exited",
            "--limit",
            "3000",
            "--clients",
            "3",
            "--rounds",
            "3",
            "--epochs",
            "2",
            "--no-baseline",
            "--update-encoding",
            encoding,
        ]);
        let report = simulate(&a).await.unwrap();
        eprintln!("{}", b3o_server::simulate::summary(&report));
        assert_eq!(report.update_encoding, encoding);
        assert_eq!(report.uploads, 9, "3 clients x 3 rounds");
        assert!(report.parameters > 1000);
        let acc = report.federated().unwrap();
        assert!(acc > 0.78, "{encoding}: accuracy {acc}");
        seen.push((encoding, report.bytes_per_parameter, acc));
    }
    let bpp = |e: &str| seen.iter().find(|s| s.0 == e).unwrap().1;
    assert!((4.0..4.2).contains(&bpp("f32")), "{seen:?}");
    assert!((1.0..1.3).contains(&bpp("int8-tensor")), "{seen:?}");
    assert!((0.6..0.9).contains(&bpp("topk:0.1")), "{seen:?}");
}

/// Differential privacy end to end (issue #14): central, local and sampled (fraction_fit 0.5)
/// groups run every planned round with every selected client (their updates pass the server's
/// clipping check), each version's epsilon is the accountant's for the rounds so far at the
/// round's sampling rate, and the calibrated noise spends at most the target. Accuracy against
/// epsilon is in BENCHMARKS.md.
#[tokio::test(flavor = "multi_thread")]
async fn differential_privacy_spends_its_budget_round_by_round() {
    let Some(csv) = dataset("churn_modelling.csv") else {
        return;
    };
    let csv = csv.display().to_string();
    for (extra, q, clients_per_round) in [
        (vec!["--dp-placement", "central"], 1.0, 10),
        (vec!["--dp-placement", "local"], 1.0, 10),
        (vec!["--fraction-fit", "0.5"], 0.5, 5),
    ] {
        let mut a = vec![
            "--data",
            csv.as_str(),
            "--target",
            "Exited",
            "--clients",
            "10",
            "--rounds",
            "3",
            "--epochs",
            "1",
            "--no-baseline",
            "--dp-epsilon",
            "4",
        ];
        a.extend(extra.iter().copied());
        let report = simulate(&args(&a)).await.unwrap();
        eprintln!("{}", b3o_server::simulate::summary(&report));
        let dp = report.dp.as_ref().expect("a DP group");
        assert_eq!(dp.params.sampling_rate, q, "{extra:?}");
        let z = dp.params.noise_multiplier;
        for r in &report.rounds {
            assert!(r.failure.is_none(), "{extra:?}: {r:?}");
            if r.round > 0 {
                assert_eq!(r.updates, clients_per_round, "{extra:?}: {r:?}");
            }
            let mut acc = b3o_models::dp::accountant::Accountant::new();
            acc.compose(q, z, r.round as u32);
            let want = acc.epsilon(1e-5);
            let got = r.epsilon.expect("each version's epsilon");
            assert!(
                (got - want).abs() <= 1e-9 * want.max(1.0),
                "{extra:?}: {got} vs {want}"
            );
        }
        assert_eq!(report.rounds.len(), 4);
        assert!(dp.spent_epsilon <= 4.0 && dp.spent_epsilon > 3.9, "{dp:?}");
        assert!(dp.budget_exhausted.is_none());
    }
}

/// `--async --buffer 3` with the largest of four clients ten times slower (issue #17): every
/// version is published from a full buffer without waiting for the slow client, and the
/// model still learns; `metrics.csv` gives each version's wall time since the start.
#[tokio::test(flavor = "multi_thread")]
async fn an_asynchronous_run_publishes_full_buffers_without_waiting_for_a_slow_client() {
    let Some(csv) = dataset("churn_modelling.csv") else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let (csv, out_dir) = (csv.display().to_string(), out.path().display().to_string());
    let common = [
        "--data",
        &csv,
        "--target",
        "Exited",
        "--fractions",
        "10,20,30,40",
        "--epochs",
        "2",
        "--no-baseline",
        "--slow-clients",
        "0.25",
        "--slowdown",
        "10",
        "--out",
        &out_dir,
    ];
    let mut extra = common.to_vec();
    extra.extend(["--async", "--buffer", "3", "--rounds", "4"]);
    let report = simulate(&args(&extra)).await.unwrap();
    let versions: Vec<i64> = report.rounds.iter().map(|r| r.round).collect();
    assert_eq!(versions, vec![0, 1, 2, 3, 4]);
    assert!(
        report.rounds[1..]
            .iter()
            .all(|r| r.updates >= 3 && r.failure.is_none()),
        "{:?}",
        report.rounds
    );
    // A synchronous round waits for all four clients; the first buffer fills with the three
    // fast ones while the slow one still trains.
    assert_eq!(report.rounds[1].updates, 3, "{:?}", report.rounds);
    let elapsed: Vec<f64> = report.rounds[1..].iter().map(|r| r.elapsed).collect();
    assert!(elapsed.windows(2).all(|w| w[0] <= w[1]), "{elapsed:?}");
    let accuracy = report.federated().unwrap();
    assert!(accuracy > 0.80, "asynchronous accuracy {accuracy}");

    // `--buffer` needs `--async` and `--async` a buffer; a share of slow clients outside
    // [0, 1] is named.
    let parse = |extra: &[&str]| {
        SimulateArgs::try_parse_from([&["simulate", "--data", &csv][..], extra].concat())
    };
    assert!(parse(&["--buffer", "3"]).is_err());
    assert!(parse(&["--async"]).is_err());
    let e = simulate(&parse(&["--target", "Exited", "--slow-clients", "1.5"]).unwrap())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("--slow-clients"), "{e}");
}
