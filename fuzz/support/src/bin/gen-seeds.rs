//! Writes the seed corpus of every fuzz target: `gen-seeds <corpus dir>` fills
//! `<dir>/<target>/seed-*` with small valid inputs (updates, CSVs, images, V2 requests, ONNX
//! exports, secure aggregation messages) for libFuzzer to mutate. Deterministic; existing files
//! are overwritten.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use b3o_fuzz_support::{
    CHURN_HEADER, SECAGG_RING, churn_spec, secagg_round, tiny_layout, tiny_regression_spec,
    tiny_spec,
};
use b3o_models::ModelSpec;
use b3o_models::compress::{ErrorFeedback, Rounding, UpdateEncoding, encode_update};
use b3o_models::onnx::export_onnx;
use b3o_models::protocol::secagg::{ShareUpload, UnmaskUpload};
use b3o_models::secagg::wire::{MaskedMeta, encode_masked};
use b3o_models::secagg::{SecAggConfig, ShareCount};
use b3o_models::weights::{Dtype, NamedTensor, UpdateMeta, WeightSet, encode};
use image::{ImageBuffer, ImageFormat, Luma, Rgb, Rgba};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(format!("seed-{name}")), bytes)?;
    Ok(())
}

fn meta() -> UpdateMeta {
    UpdateMeta {
        model_id: "churn".into(),
        round: 3,
        num_samples: 800,
        metrics: BTreeMap::from([("loss".into(), 0.42), ("accuracy".into(), 0.86)]),
    }
}

fn updates(dir: &Path) -> Result<()> {
    let tiny = WeightSet {
        tensors: tiny_layout()
            .0
            .into_iter()
            .map(|t| NamedTensor {
                data: (0..t.num_elements())
                    .map(|i| i as f32 * 0.25 - 0.5)
                    .collect(),
                name: t.name,
                shape: t.shape,
            })
            .collect(),
    };
    let sets = [
        ("tiny", tiny),
        ("churn", churn_spec().init_weights(1)),
        ("mnist", ModelSpec::mnist_cnn().init_weights(2)),
    ];
    for (name, set) in &sets {
        write(
            dir,
            &format!("{name}-f32"),
            &encode(set, &meta(), Dtype::F32)?,
        )?;
        write(
            dir,
            &format!("{name}-f16"),
            &encode(set, &meta(), Dtype::F16)?,
        )?;
    }
    Ok(())
}

fn csvs(dir: &Path) -> Result<()> {
    let files: [(&str, String); 10] = [
        ("tiny", "a,b,t\n1,x,0\n2.5,y,1\n-3,z,0\n".into()),
        ("tiny-semicolon", "a;b;t\r\n1,5;x;0\r\n2;y;1\r\n".into()),
        ("tiny-tab", "t\tb\ta\n0\tx\t1\n1\t\t2\n".into()),
        (
            "tiny-quoted",
            "\"a\",\"b\",t\n\"1\",\"x, \"\"quoted\"\"\",0\n".into(),
        ),
        (
            "tiny-bom-missing",
            "\u{feff}a,b,t\nNA,?,1\n,null,0\n\n,,\n".into(),
        ),
        ("tiny-cr", "a,b,t\r4,y,1\r5,x,0\r".into()),
        (
            "tiny-extra-columns",
            "id,a,b,t,note\n7,1,x,0,hello\n8,2,y,1,\n".into(),
        ),
        ("tiny-no-rows", "a,b,t\n".into()),
        (
            "churn",
            format!(
                "{CHURN_HEADER}\n1,15634602,Hargrave,619,France,Female,42,2,0,1,1,1,101348.88,1\n\
                 2,15647311,Hill,608,Spain,Female,41,1,83807.86,1,0,1,112542.58,0\n\
                 3,15619304,Onio,502,Germany,Male,39,8,159660.8,3,1,0,113931.57,1\n"
            ),
        ),
        (
            "churn-no-target",
            "CreditScore;Geography;Gender;Age;Tenure;Balance;NumOfProducts;HasCrCard;\
             IsActiveMember;EstimatedSalary\n699;France;Female;39;1;0;2;0;0;93826,63\n"
                .into(),
        ),
    ];
    for (name, text) in &files {
        write(dir, name, text.as_bytes())?;
    }
    Ok(())
}

fn encoded<P, C>(img: &ImageBuffer<P, C>, format: ImageFormat) -> Result<Vec<u8>>
where
    P: image::PixelWithColorType,
    [P::Subpixel]: image::EncodableLayout,
    C: std::ops::Deref<Target = [P::Subpixel]>,
{
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format)?;
    Ok(out.into_inner())
}

fn images(dir: &Path) -> Result<()> {
    // A dark "1" on white, a light ring on black, a colour gradient, a 16-bit image.
    let one = ImageBuffer::from_fn(28, 28, |x, _| {
        Luma([if (12..16).contains(&x) { 0u8 } else { 255 }])
    });
    let ring = ImageBuffer::from_fn(32, 32, |x, y| {
        let d = (x as i32 - 16).pow(2) + (y as i32 - 16).pow(2);
        Luma([if (36..100).contains(&d) { 250u8 } else { 5 }])
    });
    let colour = ImageBuffer::from_fn(40, 24, |x, y| Rgb([(x * 6) as u8, (y * 10) as u8, 128u8]));
    let alpha = ImageBuffer::from_fn(8, 8, |x, y| Rgba([255u8, 0, 0, ((x + y) * 16) as u8]));
    let deep = ImageBuffer::from_fn(16, 16, |x, y| Luma([(x * y * 250) as u16]));
    write(dir, "one.png", &encoded(&one, ImageFormat::Png)?)?;
    write(dir, "ring.png", &encoded(&ring, ImageFormat::Png)?)?;
    write(dir, "colour.png", &encoded(&colour, ImageFormat::Png)?)?;
    write(dir, "alpha.png", &encoded(&alpha, ImageFormat::Png)?)?;
    write(dir, "deep.png", &encoded(&deep, ImageFormat::Png)?)?;
    write(dir, "one.jpg", &encoded(&one, ImageFormat::Jpeg)?)?;
    write(dir, "colour.jpg", &encoded(&colour, ImageFormat::Jpeg)?)?;
    Ok(())
}

fn v2_requests(dir: &Path) -> Result<()> {
    let row: Vec<String> = (0..13)
        .map(|i| format!("{}", i as f32 * 0.5 - 3.0))
        .collect();
    let row = row.join(",");
    let pixels = vec!["0.0"; 28].join(",");
    let image_rows = vec![format!("[{pixels}]"); 28].join(",");
    let requests = [
        (
            "tabular",
            format!(r#"{{"inputs":[{{"name":"input","shape":[1,13],"datatype":"FP32","data":[{row}]}}]}}"#),
        ),
        (
            "tabular-batch-nested",
            format!(
                r#"{{"id":"req-1","inputs":[{{"name":"input","shape":[2,13],"datatype":"FP32","data":[[{row}],[{row}]],"parameters":{{"binary_data":false}}}}],"outputs":[{{"name":"output"}}]}}"#
            ),
        ),
        (
            "image",
            format!(
                r#"{{"inputs":[{{"name":"input","shape":[1,1,28,28],"datatype":"FP32","data":[[[{image_rows}]]]}}]}}"#
            ),
        ),
        (
            "two-inputs",
            r#"{"inputs":[{"name":"a","shape":[1,1],"datatype":"FP32","data":[1e3]},{"name":"b","shape":[1,2],"datatype":"INT64","data":[1,-2]}]}"#.into(),
        ),
        ("empty-inputs", r#"{"id":null,"inputs":[]}"#.into()),
    ];
    for (name, text) in &requests {
        write(dir, name, text.as_bytes())?;
    }
    Ok(())
}

fn onnx_models(dir: &Path) -> Result<()> {
    let specs = [
        ("churn", churn_spec()),
        ("tiny", tiny_spec()),
        ("tiny-regression", tiny_regression_spec()),
        ("mnist", ModelSpec::mnist_cnn()),
    ];
    for (seed, (name, spec)) in (1..).zip(&specs) {
        write(
            dir,
            &format!("{name}.onnx"),
            &export_onnx(spec, &spec.init_weights(seed))?,
        )?;
    }
    Ok(())
}

/// `secagg_messages` inputs: a selector byte (see the target), then a real message.
fn secagg_messages(dir: &Path) -> Result<()> {
    let with = |head: &[u8], body: &[u8]| [head, body].concat();
    let round = secagg_round();
    let modulus = round.cfg.modulus_range;

    // 0: masked vectors, the round's own and one per (length, modulus) the target tries.
    let masked_meta = MaskedMeta {
        model_id: "churn".into(),
        round: 5,
        metrics: BTreeMap::from([("loss".into(), 0.42), ("accuracy".into(), 0.86)]),
    };
    for (pos, vector) in round.masked.iter().enumerate() {
        if let Some(vector) = vector {
            let bytes = encode_masked(vector, modulus, &masked_meta);
            write(dir, &format!("masked-client{pos}"), &with(&[0], &bytes))?;
        }
    }
    for (len, bits) in [(1usize, 8u32), (5, 16), (9, 32), (33, 62)] {
        let modulus = 1u64 << bits;
        let values: Vec<u64> = (0..len as u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % modulus)
            .collect();
        let bytes = encode_masked(&values, modulus, &MaskedMeta::default());
        write(dir, &format!("masked-2p{bits}"), &with(&[0], &bytes))?;
    }

    // 1: Shamir shares as bytes.
    for (k, (_, share)) in round.answers.iter().take(3).enumerate() {
        write(dir, &format!("share-{k}"), &with(&[1], &share.share))?;
    }

    // 2: JSON bodies.
    let upload = ShareUpload {
        shares: round.sent[0].clone(),
    };
    write(
        dir,
        "json-share-upload",
        &with(&[2], &serde_json::to_vec(&upload)?),
    )?;
    let answer = UnmaskUpload {
        shares: round
            .answers
            .iter()
            .filter(|(holder, _)| *holder == SECAGG_RING[0])
            .map(|(_, s)| s.clone())
            .collect(),
    };
    write(
        dir,
        "json-unmask-upload",
        &with(&[2], &serde_json::to_vec(&answer)?),
    )?;
    write(
        dir,
        "json-public-keys",
        &with(&[2], &serde_json::to_vec(&round.advertised[0].keys)?),
    )?;
    let configs = [
        ("json-config-default", SecAggConfig::default()),
        (
            "json-config-sparse",
            SecAggConfig {
                num_shares: ShareCount::Proportion(0.3),
                reconstruction_threshold: ShareCount::Count(4),
                modulus_range: 1 << 16,
                quantization_range: 1 << 10,
                clipping_range: 0.5,
                ..SecAggConfig::default()
            },
        ),
    ];
    for (name, config) in &configs {
        write(dir, name, &with(&[2], &serde_json::to_vec(config)?))?;
    }
    write(dir, "json-config-empty", b"\x02{}")?;

    // 3, 4: the shares addressed to each client, as JSON and one as raw ciphertext.
    for (index, &id) in SECAGG_RING.iter().enumerate() {
        let incoming = round.shares_for(id);
        let head = [3, index as u8];
        write(
            dir,
            &format!("receive-client{index}"),
            &with(&head, &serde_json::to_vec(&incoming)?),
        )?;
        if let Some(share) = incoming.first() {
            let from = SECAGG_RING
                .iter()
                .position(|&r| r == share.from)
                .unwrap_or(0);
            write(
                dir,
                &format!("receive-raw-client{index}"),
                &with(&[4, index as u8, from as u8], &share.ciphertext),
            )?;
        }
    }

    // 5: what the server asked each survivor.
    for (index, request) in round.requests.iter().enumerate() {
        if let Some(request) = request {
            write(
                dir,
                &format!("unmask-request-client{index}"),
                &with(&[5, index as u8], &serde_json::to_vec(request)?),
            )?;
        }
    }

    // 6: the survivors' answers as the server holds them: all, and all but the first.
    let answers = serde_json::to_vec(&round.answers)?;
    write(dir, "unmask-answers", &with(&[6, 0], &answers))?;
    let fewer = serde_json::to_vec(&round.answers[1..])?;
    write(dir, "unmask-answers-fewer", &with(&[6, 0], &fewer))?;

    // 7: the tiny layout's update in every encoding.
    let base = WeightSet::from_flat(
        &tiny_layout(),
        (0..tiny_layout().num_params())
            .map(|i| i as f32 * 0.5 - 1.0)
            .collect(),
    )?;
    let trained = WeightSet::from_flat(
        &tiny_layout(),
        base.flatten()
            .iter()
            .enumerate()
            .map(|(i, b)| b + (i as f32 - 3.0) * 0.01)
            .collect(),
    )?;
    for (k, encoding) in UpdateEncoding::EXAMPLES.into_iter().enumerate() {
        let bytes = encode_update(
            encoding,
            &base,
            &trained,
            &meta(),
            &mut ErrorFeedback::default(),
            Rounding::Nearest,
        )?;
        let name = encoding.to_string().replace(':', "-");
        write(dir, &format!("update-{k}-{name}"), &with(&[7], &bytes))?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let root: PathBuf = std::env::args_os()
        .nth(1)
        .ok_or("usage: gen-seeds <corpus dir>")?
        .into();
    updates(&root.join("update_decoder"))?;
    csvs(&root.join("csv_reader"))?;
    images(&root.join("image_decoder"))?;
    v2_requests(&root.join("v2_request"))?;
    onnx_models(&root.join("onnx_loader"))?;
    secagg_messages(&root.join("secagg_messages"))?;
    Ok(())
}
