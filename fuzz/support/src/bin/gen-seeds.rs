//! Writes the seed corpus of every fuzz target: `gen-seeds <corpus dir>` fills
//! `<dir>/<target>/seed-*` with small valid inputs (updates, CSVs, images, V2 requests, ONNX
//! exports) for libFuzzer to mutate. Deterministic; existing files are overwritten.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use b3o_fuzz_support::{CHURN_HEADER, churn_spec, tiny_layout, tiny_regression_spec, tiny_spec};
use b3o_models::ModelSpec;
use b3o_models::onnx::export_onnx;
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
    Ok(())
}
