//! The CSV readers on arbitrary bytes: `b3o_models::tabular::read_csv` (training data),
//! `b3o_wasm_client::codeless::CsvChunks` over two tabular models (codeless prediction and
//! batch jobs; every chunk read) and `codeless::count_rows` (job progress).
//!
//! Properties besides "no panic": a table's columns all have `n_rows` values; each chunk has
//! `input_dim` inputs per row; reading in chunks of 1-3 rows gives the same inputs and rows as
//! one large chunk, or fails too ("the output does not depend on the chunk size"); and a file
//! read to the end has as many rows as `count_rows` counts.
#![no_main]

use std::sync::LazyLock;

use b3o_fuzz_support::{churn_spec, tiny_spec};
use b3o_models::ModelSpec;
use b3o_models::tabular::read_csv;
use b3o_wasm_client::codeless::{CsvChunks, DEFAULT_CHUNK_ROWS, count_rows};
use libfuzzer_sys::fuzz_target;

static SPECS: LazyLock<[ModelSpec; 2]> = LazyLock::new(|| [tiny_spec(), churn_spec()]);

/// Everything a chunked read produced: the inputs' bits, the rows read, and the error text.
#[derive(Debug, PartialEq)]
struct Read {
    inputs: Vec<u32>,
    rows: usize,
    error: Option<String>,
}

fn read_all(data: &[u8], spec: &ModelSpec, chunk_rows: usize) -> Option<Read> {
    let mut chunks = CsvChunks::new(data, spec).ok()?;
    let mut inputs = Vec::new();
    let mut error = None;
    loop {
        match chunks.next_chunk(chunk_rows) {
            Ok(Some(chunk)) => {
                assert!(chunk.n_rows() >= 1 && chunk.n_rows() <= chunk_rows);
                assert_eq!(chunk.inputs.len(), chunk.n_rows() * spec.input_dim());
                inputs.extend(chunk.inputs.iter().map(|v| v.to_bits()));
            }
            Ok(None) => break,
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    Some(Read {
        inputs,
        rows: chunks.rows_read(),
        error,
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(table) = read_csv(data) {
        assert!(table.columns.iter().all(|c| c.values.len() == table.n_rows));
    }
    let counted = count_rows(data).ok();
    let small = data.len() % 3 + 1;
    for spec in SPECS.iter() {
        let Some(whole) = read_all(data, spec, DEFAULT_CHUNK_ROWS) else {
            continue;
        };
        let mut chunked = read_all(data, spec, small).expect("the header was accepted once");
        if let (Some(_), Some(_)) = (&whole.error, &chunked.error) {
            // Both fail, not always on the same row: a chunk's malformed row is found while
            // reading, before the values of the rows above it are converted. What each kept
            // before failing depends on the chunk size.
            chunked = Read {
                inputs: Vec::new(),
                rows: whole.rows,
                error: whole.error.clone(),
            };
        }
        assert_eq!(whole, chunked, "chunks of {small} rows");
        if whole.error.is_none() {
            assert_eq!(
                counted,
                Some(whole.rows),
                "count_rows agrees with a full read"
            );
        }
    }
});
