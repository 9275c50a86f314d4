//! The ONNX loaders on arbitrary bytes: `OnnxPredictor::load` (tract-onnx, any ONNX model) and
//! `OnnxPredictor::load_b3o` (B3O's own exports, checked against their spec). A model that
//! loads is run once on a zero row (batch 1) when its row has at most 2^20 values.
//!
//! tract panics on some malformed graphs; a panic from inside tract may unwind to a loader that
//! catches it (any other panic, and one nobody catches, aborts).
#![no_main]

use b3o_fuzz_support::{forget_tolerated_panic, unwind_panics_from};
use b3o_wasm_client::inference::OnnxPredictor;
use libfuzzer_sys::fuzz_target;

/// Largest row the harness allocates for a trial prediction.
const MAX_ROW: usize = 1 << 20;

fn try_predict(predictor: &OnnxPredictor) {
    let row_len = predictor
        .row_shape()
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let Some(row_len) = row_len.filter(|&n| n <= MAX_ROW) else {
        return;
    };
    if let Ok(out) = predictor.predict(&vec![0.0; row_len], 1) {
        assert_eq!(out.len(), predictor.output_width());
    }
}

fuzz_target!(init: unwind_panics_from(&["/tract-"]), |data: &[u8]| {
    forget_tolerated_panic();
    if let Ok(predictor) = OnnxPredictor::load(data) {
        try_predict(&predictor);
    }
    if let Ok((predictor, spec)) = OnnxPredictor::load_b3o(data) {
        assert_eq!(predictor.row_shape(), spec.input_shape.as_slice());
        try_predict(&predictor);
    }
});
