//! `b3o_models::v2::parse_infer_request`, the KServe V2 JSON body parser, on arbitrary bytes,
//! with the default limits and with tight ones. A parsed request keeps every bound of its
//! `ParseLimits`; `single_input` and `batch_for` (tabular `[13]` and image `[1, 28, 28]` rows)
//! never panic, and an accepted batch covers the data exactly.
#![no_main]

use b3o_models::v2::{ParseLimits, parse_infer_request};
use libfuzzer_sys::fuzz_target;

const TIGHT: ParseLimits = ParseLimits {
    max_values: 16,
    max_inputs: 2,
    max_rank: 4,
    max_text: 8,
};

fn check(data: &[u8], limits: &ParseLimits) {
    let Ok(request) = parse_infer_request(data, limits) else {
        return;
    };
    assert!(request.inputs.len() <= limits.max_inputs);
    let values: usize = request.inputs.iter().map(|t| t.data.len()).sum();
    assert!(values <= limits.max_values);
    assert!(
        request
            .id
            .as_ref()
            .is_none_or(|id| id.len() <= limits.max_text)
    );
    for t in &request.inputs {
        assert!(t.shape.len() <= limits.max_rank);
        assert!(t.name.len() <= limits.max_text && t.datatype.len() <= limits.max_text);
    }
    if let Ok(input) = request.single_input("input") {
        for row in [&[13usize][..], &[1, 28, 28]] {
            if let Ok(batch) = input.batch_for(row) {
                assert_eq!(
                    batch.checked_mul(row.iter().product()),
                    Some(input.data.len())
                );
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(data, &ParseLimits::default());
    check(data, &TIGHT);
});
