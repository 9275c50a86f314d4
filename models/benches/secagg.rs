//! SecAgg+ overhead against plain FedAvg: one full secure round in memory (`ClientRound`,
//! `Aggregator`, `unmask`, `dequantize_mean`, the JSON wire types and the masked safetensors)
//! for 10, 100 and 1,000 simulated clients, with and without 10% of the clients dropping after
//! the share stage. Prints client and server CPU time and bytes per client on the wire, next to
//! plain FedAvg's.
//!
//! Run with `cargo bench -p b3o-models --no-default-features --bench secagg` (release);
//! `-- --quick` (or `B3O_BENCH_QUICK=1`) runs 10 and 100 clients only. Results go to
//! BENCHMARKS.md.
//!
//! What is timed (this thread's CPU time, `CLOCK_THREAD_CPUTIME_ID`):
//! - client, per stage: **keys** (two X25519 key pairs, the advertise JSON), **shares** (parsing
//!   the share-stage view, `share_keys`, the upload JSON; then parsing the masked-stage view and
//!   `receive_shares`), **mask** (`mask`: quantize, weight, self mask and one PRG expansion per
//!   neighbour, then `encode_masked`), **unmask** (parsing the unmask view, `unmask_shares`, the
//!   answer JSON). Median over the clients of each stage and of their sum.
//! - server: **sum** (`decode_masked` + `Aggregator::add` of every masked vector), **unmask**
//!   (parsing the answers, Shamir reconstruction, PRG re-expansion of every survivor's self
//!   mask and of the pairwise masks of the dropped clients' surviving neighbours),
//!   **dequantize**. Routing (the views, the share mailbox), HTTP and the database are not
//!   timed.
//! - plain FedAvg: client = `weights::encode` of its f32 update; server = `weights::decode` of
//!   every update and a sample-weighted f64 sum.
//!
//! Training is the same in both and is not run.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::OnceLock;
use std::time::Instant;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use b3o_models::Task;
use b3o_models::model::{Activation, Architecture, MlpConfig, ModelSpec};
use b3o_models::protocol::secagg::{SecAggStage, SecAggView, ShareUpload, UnmaskUpload};
use b3o_models::secagg::keys::Context;
use b3o_models::secagg::wire::{self, MaskedMeta};
use b3o_models::secagg::{
    Aggregator, ClientRecord, ClientRound, EffectiveConfig, EncryptedShare, NeighbourKeys,
    PublicKeys, SecAggConfig, ShareCount, UnmaskInputs, UnmaskRequest, UnmaskShare,
    dequantize_mean, error_bound, graph, quantize, unmask,
};
use b3o_models::weights::{self, Dtype, UpdateMeta, WeightLayout, WeightSet};

const CTX: Context = Context {
    group_id: 1,
    round: 1,
};
/// An RFC 3339 deadline as the server writes it (only its length matters).
const DEADLINE: &str = "2026-12-06T12:00:00.000000Z";

/// This thread's CPU time in nanoseconds (`CLOCK_THREAD_CPUTIME_ID`); wall time since the first
/// call where that clock is not available.
fn cpu_ns() -> u64 {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
        if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0 {
            return ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
        }
    }
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// The cost of one `cpu_ns()` reading, subtracted from each measured interval.
fn clock_overhead() -> u64 {
    let mut samples: Vec<u64> = (0..200)
        .map(|_| {
            let t = cpu_ns();
            cpu_ns() - t
        })
        .collect();
    samples.sort_unstable();
    samples[samples.len() / 2]
}

/// Runs `f`, returns its result and its CPU time in ns (clock overhead removed).
fn timed<T>(overhead: u64, f: impl FnOnce() -> T) -> (T, u64) {
    let t = cpu_ns();
    let out = f();
    let spent = cpu_ns().saturating_sub(t).saturating_sub(overhead);
    (out, spent)
}

fn median(values: &[u64]) -> u64 {
    let mut v = values.to_vec();
    v.sort_unstable();
    if v.is_empty() { 0 } else { v[v.len() / 2] }
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// The churn MLP: 12 inputs -> 128 -> 64 -> 32 -> 1 output, weights and biases.
fn churn_layout() -> WeightLayout {
    ModelSpec {
        architecture: Architecture::Mlp(MlpConfig {
            hidden: vec![128, 64, 32],
            activation: Activation::Relu,
        }),
        preprocessing: None,
        task: Task::BinaryClassification,
        labels: vec!["0".into(), "1".into()],
        input_shape: vec![12],
        ood: None,
    }
    .layout()
}

/// A model of `params` parameters: the churn MLP's layout when it has that many, else one
/// tensor.
fn layout_of(params: usize) -> WeightLayout {
    let churn = churn_layout();
    if churn.num_params() == params {
        churn
    } else {
        WeightLayout(vec![weights::TensorSpec::new("weights", vec![params])])
    }
}

fn weight_set(layout: &WeightLayout, flat: Vec<f32>) -> WeightSet {
    WeightSet::from_flat(layout, flat).expect("flat vector of the layout's size")
}

/// The graph of a round of `n`: the complete graph up to 10 clients, else the smallest odd
/// `num_shares` >= 2 log2(n) + 1 (Bell et al.'s logarithmic degree); the threshold is Flower's
/// default proportion 0.51 of it, a strict majority.
fn config_for(n: usize) -> EffectiveConfig {
    let num_shares = if n <= 10 {
        n as u32
    } else {
        let at_least = (2.0 * (n as f64).log2() + 1.0).ceil() as u32;
        // The next odd number.
        at_least | 1
    };
    let cfg = SecAggConfig {
        num_shares: ShareCount::Count(num_shares),
        ..SecAggConfig::default()
    }
    .for_round(n)
    .expect("valid config");
    assert_eq!(cfg.num_shares, num_shares);
    assert_eq!(cfg.reconstruction_threshold, num_shares / 2 + 1);
    assert_eq!(
        (
            cfg.clipping_range,
            cfg.quantization_range,
            cfg.modulus_range,
            cfg.max_weight
        ),
        (8.0, 1 << 22, 1 << 32, 1000.0)
    );
    cfg
}

fn view(
    cfg: &EffectiveConfig,
    ring: &[i64],
    stage: SecAggStage,
    keys: Vec<NeighbourKeys>,
    shares: Vec<EncryptedShare>,
    unmask: Option<UnmaskRequest>,
) -> String {
    serde_json::to_string(&SecAggView {
        round: CTX.round,
        stage,
        stage_deadline_at: DEADLINE.into(),
        config: cfg.clone(),
        ring: ring.to_vec(),
        keys,
        shares,
        unmask,
        expected: true,
    })
    .expect("serialisable view")
}

/// One configuration's measurements.
struct Row {
    n: usize,
    params: usize,
    num_shares: u32,
    threshold: u32,
    dropped: usize,
    /// Median client CPU per stage: keys, shares, mask, unmask; and of the total.
    client_stages: [u64; 4],
    client_total: u64,
    /// Server CPU: sum, unmask, dequantize.
    server_stages: [u64; 3],
    /// Median bytes per surviving client.
    up: usize,
    down: usize,
    /// Of `down`: the four stage views (without the global model).
    down_views: usize,
    plain_client: u64,
    plain_server: u64,
    plain_up: usize,
    plain_down: usize,
    /// Largest error of the unmasked mean against the exact weighted mean, and its bound.
    error: f64,
    bound: f64,
}

impl Row {
    fn server_total(&self) -> u64 {
        self.server_stages.iter().sum()
    }
}

fn run(n: usize, params: usize, drop_fraction: f64, overhead: u64, seed: u64) -> Row {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let cfg = config_for(n);
    let layout = layout_of(params);
    assert_eq!(layout.num_params(), params);
    // Member ids as the server numbers them, in a shuffled ring order.
    let mut ring: Vec<i64> = (0..n as i64).map(|i| 1000 + 3 * i).collect();
    ring.shuffle(&mut rng);
    let n_dropped = (n as f64 * drop_fraction).round() as usize;
    let mut positions: Vec<usize> = (0..n).collect();
    positions.shuffle(&mut rng);
    let dropped: Vec<bool> = {
        let mut d = vec![false; n];
        for &p in &positions[..n_dropped] {
            d[p] = true;
        }
        d
    };
    let meta = MaskedMeta {
        model_id: "churn".into(),
        round: CTX.round as u64,
        metrics: BTreeMap::from([("loss".into(), 0.5)]),
    };
    // The global model every client downloads (both protocols).
    let global: Vec<f32> = (0..params).map(|_| rng.random_range(-0.3..0.3)).collect();
    let global_bytes = weights::encode(
        &weight_set(&layout, global),
        &UpdateMeta {
            model_id: "churn".into(),
            round: CTX.round as u64,
            ..UpdateMeta::default()
        },
        Dtype::F32,
    )
    .expect("encodable")
    .len();

    let mut up = vec![0usize; n];
    let mut down_views = vec![0usize; n];
    let mut stage = vec![[0u64; 4]; n];

    // Stage 1: advertise keys.
    let mut clients = Vec::with_capacity(n);
    let mut advertised = Vec::with_capacity(n);
    for (i, &id) in ring.iter().enumerate() {
        let v = view(&cfg, &ring, SecAggStage::Advertise, vec![], vec![], None);
        down_views[i] += v.len();
        let ((client, body), t) = timed(overhead, || {
            let _: SecAggView = serde_json::from_str(&v).expect("view");
            let c = ClientRound::new(CTX, id, cfg.clone(), &mut rng);
            let body = serde_json::to_string(&c.public_keys()).expect("keys");
            (c, body)
        });
        stage[i][0] = t;
        up[i] += body.len();
        let keys: PublicKeys = serde_json::from_str(&body).expect("keys");
        advertised.push(NeighbourKeys {
            member_id: id,
            keys,
        });
        clients.push(client);
    }
    let keys_of: BTreeMap<i64, NeighbourKeys> =
        advertised.iter().map(|k| (k.member_id, *k)).collect();
    let neighbours: Vec<Vec<i64>> = ring
        .iter()
        .map(|&id| graph::neighbours(&ring, id, cfg.num_shares))
        .collect();
    let position: BTreeMap<i64, usize> = ring.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let neighbour_keys =
        |i: usize| -> Vec<NeighbourKeys> { neighbours[i].iter().map(|j| keys_of[j]).collect() };

    // Stage 2: share keys; the server routes each share to its recipient.
    let mut mailbox: BTreeMap<i64, Vec<EncryptedShare>> = BTreeMap::new();
    for (i, client) in clients.iter_mut().enumerate() {
        let v = view(
            &cfg,
            &ring,
            SecAggStage::Share,
            neighbour_keys(i),
            vec![],
            None,
        );
        down_views[i] += v.len();
        let (body, t) = timed(overhead, || {
            let v: SecAggView = serde_json::from_str(&v).expect("view");
            let shares = client
                .share_keys(&v.ring, &v.keys, &mut rng)
                .expect("share stage");
            serde_json::to_string(&ShareUpload { shares }).expect("shares")
        });
        stage[i][1] += t;
        up[i] += body.len();
        let upload: ShareUpload = serde_json::from_str(&body).expect("shares");
        for share in upload.shares {
            mailbox.entry(share.to).or_default().push(share);
        }
    }

    // Stage 3: the survivors read their shares, train (not run here) and mask.
    let mut deltas_sum = vec![0f64; params];
    let mut total_factor = 0f64;
    let mut uploads: Vec<(Vec<u8>, u64)> = Vec::new();
    let mut plain_uploads: Vec<Vec<u8>> = Vec::new();
    let mut plain_client = Vec::new();
    for (i, client) in clients.iter_mut().enumerate() {
        if dropped[i] {
            continue;
        }
        let id = ring[i];
        let mine = mailbox.get(&id).cloned().unwrap_or_default();
        let v = view(
            &cfg,
            &ring,
            SecAggStage::Masked,
            neighbour_keys(i),
            mine,
            None,
        );
        down_views[i] += v.len();
        let ((), t) = timed(overhead, || {
            let v: SecAggView = serde_json::from_str(&v).expect("view");
            client.receive_shares(&v.shares).expect("shares decrypt");
        });
        stage[i][1] += t;
        let delta: Vec<f32> = (0..params).map(|_| rng.random_range(-1.0..1.0)).collect();
        let samples: u64 = rng.random_range(20..=2000);
        let (bytes, t) = timed(overhead, || {
            let masked = client.mask(&delta, samples, &mut rng).expect("mask");
            wire::encode_masked(&masked, cfg.modulus_range, &meta)
        });
        stage[i][2] = t;
        up[i] += bytes.len();
        uploads.push((bytes, samples));
        // The exact weighted mean, to check the result.
        let factor = quantize::weight_factor(samples, cfg.max_weight);
        total_factor += factor;
        for (s, &d) in deltas_sum.iter_mut().zip(&delta) {
            *s += factor * f64::from(d);
        }
        // Plain FedAvg: the same update as an f32 safetensors file.
        let update = weight_set(&layout, delta);
        let update_meta = UpdateMeta {
            model_id: "churn".into(),
            round: CTX.round as u64,
            num_samples: samples,
            metrics: meta.metrics.clone(),
        };
        let (bytes, t) = timed(overhead, || {
            weights::encode(&update, &update_meta, Dtype::F32).expect("encodable")
        });
        plain_client.push(t);
        plain_uploads.push(bytes);
    }

    // Server: sum the masked vectors.
    let (agg, sum_ns) = timed(overhead, || {
        let mut agg = Aggregator::new(params + 1, cfg.modulus_range);
        for (bytes, _) in &uploads {
            let (vector, _) =
                wire::decode_masked(bytes, params + 1, cfg.modulus_range, usize::MAX, 16)
                    .expect("masked vector");
            agg.add(&vector).expect("in range");
        }
        agg
    });
    drop(uploads);

    // Stage 4: each survivor is asked about its neighbours and itself.
    let mut answers: Vec<(i64, String)> = Vec::new();
    for (i, client) in clients.iter().enumerate() {
        if dropped[i] {
            continue;
        }
        let id = ring[i];
        let mut request = UnmaskRequest::default();
        for &j in &neighbours[i] {
            if dropped[position[&j]] {
                request.dropped.push(j);
            } else {
                request.survivors.push(j);
            }
        }
        request.survivors.push(id);
        let v = view(
            &cfg,
            &ring,
            SecAggStage::Unmask,
            neighbour_keys(i),
            // The server lists the caller's shares again in this stage.
            mailbox.get(&id).cloned().unwrap_or_default(),
            Some(request),
        );
        down_views[i] += v.len();
        let (body, t) = timed(overhead, || {
            let v: SecAggView = serde_json::from_str(&v).expect("view");
            let shares = client
                .unmask_shares(v.unmask.as_ref().expect("request"))
                .expect("answer");
            serde_json::to_string(&UnmaskUpload { shares }).expect("answer")
        });
        stage[i][3] = t;
        up[i] += body.len();
        answers.push((id, body));
    }

    // Server: unmask and dequantize.
    let records: Vec<ClientRecord> = ring
        .iter()
        .enumerate()
        .map(|(i, &id)| ClientRecord {
            member_id: id,
            keys: Some(keys_of[&id].keys),
            shared: true,
            survived: !dropped[i],
        })
        .collect();
    let (unmasked, unmask_ns) = timed(overhead, || {
        let mut shares: Vec<(i64, UnmaskShare)> = Vec::new();
        for (holder, body) in &answers {
            let upload: UnmaskUpload = serde_json::from_str(body).expect("answer");
            shares.extend(upload.shares.into_iter().map(|s| (*holder, s)));
        }
        unmask(
            agg.into_sum(),
            &UnmaskInputs {
                ctx: CTX,
                cfg: &cfg,
                ring: &ring,
                clients: &records,
                shares: &shares,
            },
        )
        .expect("unmask")
    });
    let survivors = n - n_dropped;
    let (mean, deq_ns) = timed(overhead, || {
        dequantize_mean(&unmasked, &cfg, survivors).expect("mean")
    });
    let bound = error_bound(&cfg, survivors, mean.weight);
    let error = mean
        .values
        .iter()
        .zip(&deltas_sum)
        .map(|(&got, &s)| (f64::from(got) - s / total_factor).abs())
        .fold(0f64, f64::max);
    assert!(error <= bound + 1e-6, "error {error} above bound {bound}");

    // Plain FedAvg on the server: decode each update, sample-weighted f64 sum.
    let (plain_mean, plain_server) = timed(overhead, || {
        let mut sum = vec![0f64; params];
        let mut total = 0f64;
        for bytes in &plain_uploads {
            let (w, m) = weights::decode(bytes, &layout, usize::MAX).expect("update");
            let weight = m.num_samples as f64;
            total += weight;
            for (s, &x) in sum.iter_mut().zip(w.tensors.iter().flat_map(|t| &t.data)) {
                *s += weight * f64::from(x);
            }
        }
        sum.iter().map(|s| (s / total) as f32).collect::<Vec<f32>>()
    });
    black_box(plain_mean);

    let alive: Vec<usize> = (0..n).filter(|&i| !dropped[i]).collect();
    let pick = |v: &[usize]| -> usize {
        let mut s: Vec<usize> = alive.iter().map(|&i| v[i]).collect();
        s.sort_unstable();
        s[s.len() / 2]
    };
    let stage_median = |k: usize, who: &[usize]| -> u64 {
        median(&who.iter().map(|&i| stage[i][k]).collect::<Vec<_>>())
    };
    let all: Vec<usize> = (0..n).collect();
    Row {
        n,
        params,
        num_shares: cfg.num_shares,
        threshold: cfg.reconstruction_threshold,
        dropped: n_dropped,
        client_stages: [
            stage_median(0, &all),
            stage_median(1, &alive),
            stage_median(2, &alive),
            stage_median(3, &alive),
        ],
        client_total: median(
            &alive
                .iter()
                .map(|&i| stage[i].iter().sum())
                .collect::<Vec<u64>>(),
        ),
        server_stages: [sum_ns, unmask_ns, deq_ns],
        up: pick(&up),
        down: global_bytes + pick(&down_views),
        down_views: pick(&down_views),
        plain_client: median(&plain_client),
        plain_server,
        plain_up: median_usize(&plain_uploads.iter().map(Vec::len).collect::<Vec<_>>()),
        plain_down: global_bytes,
        error,
        bound,
    }
}

fn median_usize(values: &[usize]) -> usize {
    let mut v = values.to_vec();
    v.sort_unstable();
    if v.is_empty() { 0 } else { v[v.len() / 2] }
}

fn thousands(v: usize) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (k, c) in s.chars().enumerate() {
        if k > 0 && (s.len() - k).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick")
        || std::env::var("B3O_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let churn = churn_layout().num_params();
    println!(
        "SecAgg+ round in memory; churn MLP 12-128-64-32-1 has P = {churn} parameters{}",
        if quick {
            " (quick: 10 and 100 clients)"
        } else {
            ""
        }
    );
    let overhead = clock_overhead();
    println!("clock reading overhead: {overhead} ns (subtracted)");
    let mut configs: Vec<(usize, usize)> =
        vec![(10, churn), (10, 100_000), (100, churn), (100, 100_000)];
    if !quick {
        configs.push((1000, churn));
    }
    let mut rows = Vec::new();
    for (seed, &(n, params)) in configs.iter().enumerate() {
        for drop_fraction in [0.0, 0.1] {
            let started = Instant::now();
            let row = run(n, params, drop_fraction, overhead, seed as u64 + 1);
            eprintln!(
                "n={n} P={params} dropped={}: {:.1} s wall (max error {:.2e}, bound {:.2e})",
                row.dropped,
                started.elapsed().as_secs_f64(),
                row.error,
                row.bound
            );
            rows.push(row);
        }
    }

    println!();
    println!(
        "| clients | P | shares / threshold | dropouts | client CPU ms (secure / plain) | server CPU ms (secure / plain) | bytes up per client (secure / plain) | bytes down per client (secure / plain) | expansion up | expansion up+down | round-time ratio |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let secure_time = r.client_total + r.server_total();
        let plain_time = r.plain_client + r.plain_server;
        println!(
            "| {} | {} | {} / {} | {} | {:.2} / {:.3} | {:.1} / {:.1} | {} / {} | {} / {} | {:.2}x | {:.2}x | {:.1}x |",
            thousands(r.n),
            thousands(r.params),
            r.num_shares,
            r.threshold,
            r.dropped,
            ms(r.client_total),
            ms(r.plain_client),
            ms(r.server_total()),
            ms(r.plain_server),
            thousands(r.up),
            thousands(r.plain_up),
            thousands(r.down),
            thousands(r.plain_down),
            r.up as f64 / r.plain_up as f64,
            (r.up + r.down) as f64 / (r.plain_up + r.plain_down) as f64,
            secure_time as f64 / plain_time as f64,
        );
    }
    println!();
    println!(
        "| clients | P | dropouts | client keys ms | client shares ms | client mask ms | client unmask ms | server sum ms | server unmask ms | server dequantize ms | views down (bytes) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.1} | {:.1} | {:.2} | {} |",
            thousands(r.n),
            thousands(r.params),
            r.dropped,
            ms(r.client_stages[0]),
            ms(r.client_stages[1]),
            ms(r.client_stages[2]),
            ms(r.client_stages[3]),
            ms(r.server_stages[0]),
            ms(r.server_stages[1]),
            ms(r.server_stages[2]),
            thousands(r.down_views),
        );
    }
    println!();
    println!(
        "Client CPU: median over the clients that finished the round (keys: over all). Round-time \
         ratio: (client CPU + server CPU) secure / plain, training excluded (the same in both, and \
         it dominates a real round). Bytes: median surviving client; down includes the global \
         model as f32 safetensors in both."
    );
}
