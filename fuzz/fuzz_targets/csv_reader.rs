//! The CSV readers on arbitrary bytes: `b3o_models::tabular::read_csv` (training data),
//! `b3o_wasm_client::codeless::CsvChunks` over two tabular models (codeless prediction and
//! batch jobs; every chunk read) and `codeless::count_rows` (job progress).
//!
//! Properties besides "no panic": a table's columns all have `n_rows` values; each chunk has
//! `input_dim` inputs per row; reading in chunks of 1-3 rows gives the same inputs and rows as
//! one large chunk, or fails with the same error (the first bad row of the file); and a file
//! read to the end has as many rows as `count_rows` counts. The reader gives the same table (or
//! error) when its source hands out one byte per read: every buffer boundary is crossed.
#![no_main]

use std::sync::LazyLock;

use b3o_fuzz_support::{churn_spec, tiny_spec};
use b3o_models::ModelSpec;
use b3o_models::tabular::{CsvReader, read_csv, read_table};
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

/// A source that hands out one byte per read.
struct Trickle<'a>(&'a [u8]);

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match (self.0.split_first(), buf.first_mut()) {
            (Some((&b, rest)), Some(slot)) => {
                *slot = b;
                self.0 = rest;
                Ok(1)
            }
            _ => Ok(0),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let table = read_csv(data);
    if let Ok(table) = &table {
        assert!(table.columns.iter().all(|c| c.values.len() == table.n_rows));
    }
    let trickled = CsvReader::new(Trickle(data)).and_then(read_table);
    assert_eq!(table, trickled, "one byte per read");
    let counted = count_rows(data).ok();
    let small = data.len() % 3 + 1;
    for spec in SPECS.iter() {
        let Some(whole) = read_all(data, spec, DEFAULT_CHUNK_ROWS) else {
            continue;
        };
        let mut chunked = read_all(data, spec, small).expect("the header was accepted once");
        if let (Some(_), Some(_)) = (&whole.error, &chunked.error) {
            // Both fail on the first bad row of the file, whatever the chunk size; what each
            // kept before failing depends on it.
            assert_eq!(whole.error, chunked.error, "chunks of {small} rows");
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
