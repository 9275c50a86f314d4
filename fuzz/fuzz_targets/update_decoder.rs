//! `b3o_models::weights::decode`, the gate for uploaded model updates, on arbitrary bytes
//! against three real layouts: a custom group's two tensors, the churn MLP and the MNIST CNN.
//! An update it accepts must have the layout's shape, hold only finite values, and survive an
//! `encode`/`decode` round trip unchanged.
#![no_main]

use std::sync::LazyLock;

use b3o_fuzz_support::{churn_spec, tiny_layout};
use b3o_models::ModelSpec;
use b3o_models::weights::{self, Dtype, WeightLayout};
use libfuzzer_sys::fuzz_target;

/// Above every input (`-max_len`): the size check itself is one comparison; the server passes
/// `--max-update-bytes`.
const MAX_BYTES: usize = 16 << 20;

static LAYOUTS: LazyLock<[WeightLayout; 3]> = LazyLock::new(|| {
    [
        tiny_layout(),
        churn_spec().layout(),
        ModelSpec::mnist_cnn().layout(),
    ]
});

fuzz_target!(|data: &[u8]| {
    for layout in LAYOUTS.iter() {
        let Ok((set, meta)) = weights::decode(data, layout, MAX_BYTES) else {
            continue;
        };
        assert_eq!(
            &set.layout(),
            layout,
            "accepted weights have the expected layout"
        );
        for t in &set.tensors {
            assert_eq!(t.data.len(), t.shape.iter().product::<usize>());
            assert!(t.data.iter().all(|v| v.is_finite()));
        }
        assert!(meta.metrics.values().all(|v| v.is_finite()));
        let again =
            weights::encode(&set, &meta, Dtype::F32).expect("an accepted update re-encodes");
        let (set2, meta2) =
            weights::decode(&again, layout, usize::MAX).expect("a re-encoded update decodes");
        assert_eq!(set, set2);
        // Metrics go through JSON text; only their names are compared exactly.
        assert_eq!(
            (&meta.model_id, meta.round, meta.num_samples),
            (&meta2.model_id, meta2.round, meta2.num_samples)
        );
        assert!(meta.metrics.keys().eq(meta2.metrics.keys()));
    }
});
