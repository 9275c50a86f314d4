//! What the fuzz targets and the seed generator share: small but real model specs whose
//! layouts, CSV headers and ONNX exports the targets run against, and a small secure
//! aggregation round whose messages the `secagg_messages` target mutates.
//!
//! Built without libFuzzer (the seed generator is a normal binary), so nothing here may use
//! `libfuzzer-sys`.

use b3o_models::ModelSpec;
use b3o_models::Task;
use b3o_models::model::Activation;
use b3o_models::preprocess::{
    FeatureTransform, PREPROCESS_VERSION, PreprocessSpec, TargetEncoding,
};
use b3o_models::secagg::keys::Context;
use b3o_models::secagg::{
    Aggregator, ClientRecord, ClientRound, EffectiveConfig, EncryptedShare, NeighbourKeys,
    SecAggConfig, UnmaskRequest, UnmaskShare, graph,
};
use b3o_models::weights::{TensorSpec, WeightLayout};

/// The churn dataset's feature columns: numeric ones are standardised, `Geography` and `Gender`
/// one-hot encoded (as `PreprocessSpec::build` makes them from the real file).
pub const CHURN_NUMERIC: [&str; 8] = [
    "CreditScore",
    "Age",
    "Tenure",
    "Balance",
    "NumOfProducts",
    "HasCrCard",
    "IsActiveMember",
    "EstimatedSalary",
];

/// The header of a churn-like CSV (identifier columns and the target included).
pub const CHURN_HEADER: &str = "RowNumber,CustomerId,Surname,CreditScore,Geography,Gender,Age,\
Tenure,Balance,NumOfProducts,HasCrCard,IsActiveMember,EstimatedSalary,Exited";

fn standardize(column: &str, mean: f64, std: f64) -> FeatureTransform {
    FeatureTransform::Standardize {
        column: column.to_string(),
        mean,
        std,
        impute: mean,
    }
}

fn one_hot(column: &str, vocabulary: &[&str]) -> FeatureTransform {
    FeatureTransform::OneHot {
        column: column.to_string(),
        vocabulary: vocabulary.iter().map(|v| v.to_string()).collect(),
        impute: vocabulary.first().map(|v| v.to_string()),
    }
}

fn binary_target(column: &str) -> TargetEncoding {
    TargetEncoding::Classes {
        column: column.to_string(),
        labels: vec!["0".into(), "1".into()],
    }
}

/// The churn model: B3O's 128-64-32 MLP over the churn features (15 inputs).
pub fn churn_spec() -> ModelSpec {
    let mut features = vec![standardize("CreditScore", 650.0, 96.0)];
    features.push(one_hot("Geography", &["France", "Germany", "Spain"]));
    features.push(one_hot("Gender", &["Female", "Male"]));
    features.extend(CHURN_NUMERIC[1..].iter().map(|c| standardize(c, 10.0, 3.0)));
    ModelSpec::churn_b3o(PreprocessSpec {
        version: PREPROCESS_VERSION,
        features,
        target: binary_target("Exited"),
        task: Task::BinaryClassification,
    })
}

/// A two-feature tabular model with one-letter column names (`a` numeric, `b` categorical over
/// `x`/`y`, target `t`): short enough for the fuzzer to find a matching header by mutation.
pub fn tiny_spec() -> ModelSpec {
    ModelSpec::tabular(
        PreprocessSpec {
            version: PREPROCESS_VERSION,
            features: vec![standardize("a", 0.0, 1.0), one_hot("b", &["x", "y"])],
            target: binary_target("t"),
            task: Task::BinaryClassification,
        },
        vec![4],
        Activation::Relu,
    )
}

/// A tabular regression model over the tiny spec's features (exercises the `Mul`/`Add` output).
pub fn tiny_regression_spec() -> ModelSpec {
    ModelSpec::tabular(
        PreprocessSpec {
            version: PREPROCESS_VERSION,
            features: vec![standardize("a", 0.0, 1.0), one_hot("b", &["x", "y"])],
            target: TargetEncoding::Standardize {
                column: "t".into(),
                mean: 5.0,
                std: 2.0,
            },
            task: Task::Regression,
        },
        vec![3],
        Activation::LeakyRelu { slope: 0.01 },
    )
}

/// A custom group layout of two small tensors (what `ModelTemplate::Custom` carries).
pub fn tiny_layout() -> WeightLayout {
    WeightLayout(vec![
        TensorSpec::new("w", vec![3, 2]),
        TensorSpec::new("b", vec![2]),
    ])
}

/// The secure round's group and round.
pub const SECAGG_CTX: Context = Context {
    group_id: 77,
    round: 5,
};
/// The secure round's members in ring order (not sorted: mask signs follow ids, shares the
/// ring).
pub const SECAGG_RING: [i64; 4] = [17, 3, 42, 8];
/// Parameters of the secure round's update (its masked vectors have one entry more).
pub const SECAGG_PARAMS: usize = 8;
/// The ring position that shares its keys and then sends no masked vector.
pub const SECAGG_DROPPED: usize = 3;

/// The secure round's settings: the defaults over four clients (complete graph, threshold 3).
pub fn secagg_config() -> EffectiveConfig {
    SecAggConfig::default()
        .for_round(SECAGG_RING.len())
        .expect("the default settings fit four clients")
}

fn rng(seed: u64) -> rand_chacha::ChaCha20Rng {
    use rand_chacha::rand_core::SeedableRng;
    rand_chacha::ChaCha20Rng::seed_from_u64(seed)
}

/// Client `index` of the ring after stage 1 (its keys are the same every time).
fn secagg_client(index: usize) -> ClientRound {
    ClientRound::new(
        SECAGG_CTX,
        SECAGG_RING[index],
        secagg_config(),
        &mut rng(100 + index as u64),
    )
}

/// Every member's advertised keys (stage 1).
pub fn secagg_advertised() -> Vec<NeighbourKeys> {
    (0..SECAGG_RING.len())
        .map(|i| {
            let c = secagg_client(i);
            NeighbourKeys {
                member_id: c.member_id(),
                keys: c.public_keys(),
            }
        })
        .collect()
}

/// Client `index` after stage 2, and the encrypted shares it sent: the same every time, so a
/// target can rebuild a client that has not received its shares yet and seeds hold
/// ciphertexts it decrypts.
pub fn secagg_shared_client(
    index: usize,
    advertised: &[NeighbourKeys],
) -> (ClientRound, Vec<EncryptedShare>) {
    let mut client = secagg_client(index);
    let sent = client
        .share_keys(&SECAGG_RING, advertised, &mut rng(200 + index as u64))
        .expect("every member advertised valid keys");
    (client, sent)
}

/// The secure round played to the unmask stage: every client shared, all but
/// [`SECAGG_DROPPED`] masked, every survivor answered.
pub struct SecAggRound {
    pub cfg: EffectiveConfig,
    pub advertised: Vec<NeighbourKeys>,
    /// The clients after stage 3 (shares received), in ring order.
    pub clients: Vec<ClientRound>,
    /// The shares sent in stage 2, by sender (ring order).
    pub sent: Vec<Vec<EncryptedShare>>,
    pub records: Vec<ClientRecord>,
    /// The sum of the survivors' masked vectors.
    pub sum: Vec<u64>,
    /// The survivors' masked vectors, by ring position (`None`: the dropped one).
    pub masked: Vec<Option<Vec<u64>>>,
    /// What the server asked each survivor in stage 4, by ring position.
    pub requests: Vec<Option<UnmaskRequest>>,
    /// `(holder, share)`: the survivors' answers.
    pub answers: Vec<(i64, UnmaskShare)>,
}

impl SecAggRound {
    /// The shares addressed to `to`.
    pub fn shares_for(&self, to: i64) -> Vec<EncryptedShare> {
        self.sent
            .iter()
            .flatten()
            .filter(|s| s.to == to)
            .cloned()
            .collect()
    }
}

/// Plays [`SecAggRound`] (deterministic).
pub fn secagg_round() -> SecAggRound {
    let cfg = secagg_config();
    let advertised = secagg_advertised();
    let (mut clients, sent): (Vec<ClientRound>, Vec<Vec<EncryptedShare>>) = (0..SECAGG_RING.len())
        .map(|i| secagg_shared_client(i, &advertised))
        .unzip();
    let mut agg = Aggregator::new(SECAGG_PARAMS + 1, cfg.modulus_range);
    let mut masked = Vec::new();
    for (pos, c) in clients.iter_mut().enumerate() {
        let mine: Vec<EncryptedShare> = sent
            .iter()
            .flatten()
            .filter(|s| s.to == c.member_id())
            .cloned()
            .collect();
        c.receive_shares(&mine)
            .expect("the round's own shares decrypt");
        if pos == SECAGG_DROPPED {
            masked.push(None);
            continue;
        }
        let delta: Vec<f32> = (0..SECAGG_PARAMS)
            .map(|k| (k as f32 - 3.5) * 0.1 * (pos as f32 + 1.0))
            .collect();
        let vector = c
            .mask(&delta, 100 * (pos as u64 + 1), &mut rng(300 + pos as u64))
            .expect("the client shared");
        agg.add(&vector).expect("a masked vector fits");
        masked.push(Some(vector));
    }
    let records: Vec<ClientRecord> = clients
        .iter()
        .enumerate()
        .map(|(pos, c)| ClientRecord {
            member_id: c.member_id(),
            keys: Some(c.public_keys()),
            shared: true,
            survived: pos != SECAGG_DROPPED,
        })
        .collect();
    let mut requests = Vec::new();
    let mut answers = Vec::new();
    for (pos, c) in clients.iter().enumerate() {
        if pos == SECAGG_DROPPED {
            requests.push(None);
            continue;
        }
        let me = c.member_id();
        let mut request = UnmaskRequest::default();
        for id in graph::neighbours(&SECAGG_RING, me, cfg.num_shares)
            .into_iter()
            .chain([me])
        {
            if id == SECAGG_RING[SECAGG_DROPPED] {
                request.dropped.push(id);
            } else {
                request.survivors.push(id);
            }
        }
        let shares = c
            .unmask_shares(&request)
            .expect("a survivor answers the round's own request");
        answers.extend(shares.into_iter().map(|s| (me, s)));
        requests.push(Some(request));
    }
    SecAggRound {
        cfg,
        advertised,
        clients,
        sent,
        records,
        sum: agg.into_sum(),
        masked,
        requests,
        answers,
    }
}

thread_local! {
    /// The last panic [`unwind_panics_from`] let unwind on this thread, for the report when
    /// nothing caught it.
    static TOLERATED: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Lets panics raised inside the given dependencies (matched on the panic's source path, e.g.
/// `"/zune-jpeg-"`) unwind instead of aborting at once, for a target whose code under test
/// catches them (`std::panic::catch_unwind`) because the dependency is known to panic on bad
/// input. Call from the target's `init`, and [`forget_tolerated_panic`] at the start of each
/// input. libFuzzer's hook (abort on any panic) stays in charge of every other panic; a
/// tolerated panic that nobody catches still aborts when it reaches the harness ("panic in a
/// function that cannot unwind"), and is then printed first.
pub fn unwind_panics_from(dependencies: &'static [&'static str]) {
    let abort = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let inside = info
            .location()
            .is_some_and(|l| dependencies.iter().any(|d| l.file().contains(d)));
        if inside {
            TOLERATED.with(|t| *t.borrow_mut() = Some(info.to_string()));
            return;
        }
        if let Some(earlier) = TOLERATED.with(|t| t.borrow_mut().take()) {
            eprintln!("this input first raised a panic that nothing caught:\n{earlier}");
        }
        abort(info);
    }));
}

/// Forgets a tolerated panic of an earlier input (see [`unwind_panics_from`]).
pub fn forget_tolerated_panic() {
    TOLERATED.with(|t| t.borrow_mut().take());
}
