//! The inference engine behind the browser API, platform-independent (tested natively): loaded
//! models by name and the operations of the inference worker, answering the JSON the worker
//! protocol promises (`ENGINE.md`).

use std::collections::HashMap;
use std::rc::Rc;

use b3o_models::image::SIDE;
use b3o_models::package::ModelPackage;
use b3o_models::preprocess::TargetEncoding;
use serde_json::{Map, Value, json};

use super::loader::{LoadError, LoadedPackage};
use crate::codeless::{self, CodelessError, CsvChunks, CsvOutput, Predicted, RowPrediction};
use crate::inference::{InferenceError, OnnxPredictor};

/// Why an engine operation failed; the message is meant for people.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    #[error("model `{0}` is not loaded: load it first")]
    NotLoaded(String),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Codeless(#[from] CodelessError),
    #[error(transparent)]
    Inference(#[from] InferenceError),
    #[error("{0}")]
    BadRequest(String),
}

/// A model ready to predict.
#[derive(Debug)]
pub struct Model {
    pub package: ModelPackage,
    pub predictor: OnnxPredictor,
    pub from_cache: bool,
    pub offline: bool,
}

impl Model {
    /// Checks the package's ONNX graph against its spec and readies its network.
    pub fn new(loaded: LoadedPackage) -> Result<Self, EngineError> {
        let (predictor, spec) = OnnxPredictor::load_b3o(&loaded.onnx)?;
        if spec != loaded.package.spec {
            return Err(EngineError::Inference(InferenceError::InvalidModel(
                "the ONNX graph carries a different model spec than its package".into(),
            )));
        }
        Ok(Self {
            package: loaded.package,
            predictor,
            from_cache: loaded.from_cache,
            offline: loaded.offline,
        })
    }

    /// Runs `batch` model inputs.
    pub fn run(&self, inputs: &[f32], batch: usize) -> Result<Vec<f32>, InferenceError> {
        self.predictor.predict(inputs, batch)
    }

    /// The `load` reply: what the page needs to build a form or a drawing pad.
    pub fn describe(&self) -> Value {
        let spec = &self.package.spec;
        let (kind, columns, target) = match &spec.preprocessing {
            Some(prep) => (
                "tabular",
                codeless::feature_columns(prep),
                Some(match &prep.target {
                    TargetEncoding::Classes { column, .. }
                    | TargetEncoding::Standardize { column, .. } => column.clone(),
                }),
            ),
            None => ("image", Vec::new(), None),
        };
        json!({
            "name": self.package.name,
            "version": self.package.version,
            "kind": kind,
            "task": spec.task,
            "labels": spec.labels,
            "input_columns": columns,
            "target": target,
            "from_cache": self.from_cache,
            "offline": self.offline,
        })
    }
}

/// One prediction as the worker protocol sends it: labels and probabilities in label order, or
/// a value; with its out-of-distribution `warnings` (empty when none).
pub fn prediction_json(p: &Predicted) -> Value {
    let mut v = match &p.prediction {
        RowPrediction::Value(v) => json!({ "value": v }),
        RowPrediction::Class {
            label,
            probability,
            probabilities,
        } => json!({ "label": label, "probability": probability, "probabilities": probabilities }),
    };
    v["warnings"] = json!(p.warnings);
    v
}

/// The reply of the predictions CSV.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvReply {
    pub csv: Vec<u8>,
    pub rows: usize,
    pub added_columns: Vec<String>,
}

/// Loaded models by name.
#[derive(Debug, Default)]
pub struct Engine {
    models: HashMap<String, Rc<Model>>,
}

impl Engine {
    /// Adds (or replaces) the model loaded for `name`; returns its description.
    pub fn insert(&mut self, name: &str, loaded: LoadedPackage) -> Result<Value, EngineError> {
        let model = Model::new(loaded)?;
        let info = model.describe();
        self.models.insert(name.to_string(), Rc::new(model));
        Ok(info)
    }

    pub fn get(&self, name: &str) -> Result<Rc<Model>, EngineError> {
        self.models
            .get(name)
            .cloned()
            .ok_or_else(|| EngineError::NotLoaded(name.to_string()))
    }

    pub fn remove(&mut self, name: &str) -> bool {
        self.models.remove(name).is_some()
    }

    /// The user's CSV with prediction columns appended, byte for byte what the server's codeless
    /// CSV endpoint returns. `progress(rows_done)` is called after every chunk.
    pub fn predict_csv(
        &self,
        name: &str,
        csv: &[u8],
        progress: &mut dyn FnMut(usize),
    ) -> Result<CsvReply, EngineError> {
        let m = self.get(name)?;
        let spec = &m.package.spec;
        let mut chunks = CsvChunks::new(csv, spec)?;
        let mut out = CsvOutput::new(Vec::with_capacity(csv.len() * 5 / 4), &chunks, spec)?;
        while let Some(chunk) = chunks.next_chunk(codeless::DEFAULT_CHUNK_ROWS)? {
            let outputs = m.predictor.predict(&chunk.inputs, chunk.n_rows())?;
            out.write_chunk(&chunk, &codeless::describe(spec, &chunk.inputs, &outputs))?;
            progress(chunks.rows_read());
        }
        Ok(CsvReply {
            csv: out.finish()?,
            rows: chunks.rows_read(),
            added_columns: codeless::prediction_header(spec),
        })
    }

    /// `rows`: an array of `{column: value}` objects (raw values, `null` when missing).
    pub fn predict_rows(&self, name: &str, rows: &Value) -> Result<Value, EngineError> {
        let m = self.get(name)?;
        let rows: Vec<Map<String, Value>> = rows
            .as_array()
            .ok_or_else(|| bad("`rows` must be an array of {column: value} objects"))?
            .iter()
            .enumerate()
            .map(|(i, r)| {
                r.as_object()
                    .cloned()
                    .ok_or_else(|| bad(&format!("row {}: not a {{column: value}} object", i + 1)))
            })
            .collect::<Result<_, _>>()?;
        let predictions = codeless::predict_rows(&m.predictor, &m.package.spec, &rows)?;
        Ok(json!({
            "predictions": predictions.iter().map(prediction_json).collect::<Vec<_>>(),
        }))
    }

    /// A PNG or JPEG through an image model.
    pub fn predict_image(&self, name: &str, bytes: &[u8]) -> Result<Value, EngineError> {
        let m = self.get(name)?;
        let p = codeless::predict_image(&m.predictor, &m.package.spec, bytes)?;
        Ok(image_reply(&m, &p))
    }

    /// 28x28 values in `[0, 1]` (white digit on black, row-major), as a drawing pad gives them.
    pub fn predict_pixels(&self, name: &str, pixels: &[f32]) -> Result<Value, EngineError> {
        let m = self.get(name)?;
        if !codeless::takes_images(&m.package.spec) {
            return Err(CodelessError::TakesTables.into());
        }
        if pixels.len() != SIDE * SIDE {
            return Err(bad(&format!(
                "expected {} pixels (28x28), got {}",
                SIDE * SIDE,
                pixels.len()
            )));
        }
        if let Some(i) = pixels.iter().position(|v| !v.is_finite()) {
            return Err(bad(&format!("pixel {i} is not a number")));
        }
        let pixels: Vec<f32> = pixels.iter().map(|v| v.clamp(0.0, 1.0)).collect();
        let outputs = m.run(&pixels, 1)?;
        let p = codeless::describe(&m.package.spec, &pixels, &outputs)
            .pop()
            .ok_or_else(|| InferenceError::Run("no output".into()))?;
        Ok(image_reply(&m, &p))
    }

    /// Model inputs (already preprocessed, row-major) to raw outputs: the fast path benchmarks
    /// and custom pages use.
    pub fn predict_raw(
        &self,
        name: &str,
        inputs: &[f32],
        batch: usize,
    ) -> Result<Vec<f32>, EngineError> {
        Ok(self.get(name)?.run(inputs, batch)?)
    }
}

/// Per-call inference latency (see [`Engine::latency`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LatencyStats {
    pub batch: usize,
    pub samples: usize,
    pub calls: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub mean_ms: f64,
}

impl Engine {
    /// Times `samples` x `calls` runs of `batch` zero rows through a loaded model, after
    /// `calls` warm-up runs; `clock` reads milliseconds.
    pub fn latency(
        &self,
        name: &str,
        batch: usize,
        samples: usize,
        calls: usize,
        clock: &dyn Fn() -> f64,
    ) -> Result<LatencyStats, EngineError> {
        let m = self.get(name)?;
        let (batch, samples, calls) = (
            batch.max(1),
            samples.clamp(1, 100_000),
            calls.clamp(1, 10_000),
        );
        let input = vec![0.0f32; batch * m.predictor.row_len()];
        for _ in 0..calls {
            m.run(&input, batch)?;
        }
        let mut times = Vec::with_capacity(samples);
        for _ in 0..samples {
            let start = clock();
            for _ in 0..calls {
                m.run(&input, batch)?;
            }
            times.push((clock() - start) / calls as f64);
        }
        times.sort_by(f64::total_cmp);
        let pick = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
        Ok(LatencyStats {
            batch,
            samples,
            calls,
            p50_ms: pick(0.5),
            p90_ms: pick(0.9),
            mean_ms: times.iter().sum::<f64>() / samples as f64,
        })
    }
}

fn bad(message: &str) -> EngineError {
    EngineError::BadRequest(message.to_string())
}

fn image_reply(m: &Model, p: &Predicted) -> Value {
    let mut reply = prediction_json(p);
    reply["labels"] = json!(m.package.spec.labels);
    reply
}

#[cfg(test)]
mod tests {
    use b3o_models::Task;
    use b3o_models::model::ModelSpec;
    use b3o_models::onnx::export_onnx;
    use b3o_models::package::PACKAGE_FORMAT;
    use b3o_models::preprocess::{FeatureTransform, PREPROCESS_VERSION, PreprocessSpec};

    use super::super::loader::sha256_hex;
    use super::*;

    fn tabular() -> ModelSpec {
        let prep = PreprocessSpec {
            version: PREPROCESS_VERSION,
            features: vec![
                FeatureTransform::Standardize {
                    column: "Age".into(),
                    mean: 40.0,
                    std: 10.0,
                    impute: 40.0,
                },
                FeatureTransform::OneHot {
                    column: "Geography".into(),
                    vocabulary: vec!["France".into(), "Spain".into()],
                    impute: Some("France".into()),
                },
            ],
            target: TargetEncoding::Classes {
                column: "Exited".into(),
                labels: vec!["stayed".into(), "left".into()],
            },
            task: Task::BinaryClassification,
        };
        ModelSpec::tabular(prep, vec![8], Default::default())
    }

    fn loaded(name: &str, spec: &ModelSpec) -> LoadedPackage {
        let onnx = export_onnx(spec, &spec.init_weights(9)).unwrap();
        LoadedPackage {
            package: ModelPackage {
                format: PACKAGE_FORMAT.into(),
                name: name.into(),
                version: 4,
                spec: spec.clone(),
                onnx_path: ModelPackage::onnx_path_for(name, 4),
                onnx_sha256: sha256_hex(&onnx),
                onnx_bytes: onnx.len() as u64,
            },
            onnx,
            from_cache: true,
            offline: false,
        }
    }

    #[test]
    fn describes_models_and_predicts_like_the_codeless_api() {
        let mut engine = Engine::default();
        let spec = tabular();
        let info = engine.insert("churn", loaded("churn", &spec)).unwrap();
        assert_eq!(info["kind"], "tabular");
        assert_eq!(info["task"], "binary_classification");
        assert_eq!(info["input_columns"], json!(["Age", "Geography"]));
        assert_eq!(info["target"], "Exited");
        assert_eq!(info["labels"], json!(["stayed", "left"]));
        assert_eq!(
            (info["version"].as_i64(), info["from_cache"].as_bool()),
            (Some(4), Some(true))
        );

        let csv = "Id,Age,Geography\n1,30,Spain\n2,,Germany\n\n3,55,France\n";
        let mut seen = Vec::new();
        let reply = engine
            .predict_csv("churn", csv.as_bytes(), &mut |n| seen.push(n))
            .unwrap();
        let m = engine.get("churn").unwrap();
        assert_eq!(
            reply.csv,
            codeless::predict_csv(&m.predictor, &spec, csv.as_bytes()).unwrap(),
            "byte-identical to the server's codeless CSV"
        );
        assert_eq!((reply.rows, seen), (3, vec![3]));
        assert_eq!(
            reply.added_columns,
            [
                "prediction_label",
                "prediction_probability",
                "probability_stayed",
                "probability_left",
                "warning"
            ]
        );

        let rows = json!([{ "Age": 30, "Geography": "Spain" }, { "Age": null, "Geography": null }]);
        let out = engine.predict_rows("churn", &rows).unwrap();
        let preds = out["predictions"].as_array().unwrap();
        assert_eq!(preds.len(), 2);
        let probs = preds[0]["probabilities"].as_array().unwrap();
        let p1 = probs[1].as_f64().unwrap();
        assert!((probs[0].as_f64().unwrap() + p1 - 1.0).abs() < 1e-6);
        let want = if p1 >= 0.5 { "left" } else { "stayed" };
        assert_eq!(preds[0]["label"], want);

        let err = engine
            .predict_csv("churn", b"Id,Age\n1,2\n", &mut |_| {})
            .unwrap_err();
        assert!(err.to_string().contains("`Geography`"), "{err}");
        let err = engine
            .predict_csv(
                "churn",
                b"Age,Geography\n1,France\nold,Spain\n",
                &mut |_| {},
            )
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("row 2") && msg.contains("`Age`"), "{msg}");
        assert!(engine.predict_rows("churn", &json!({ "Age": 1 })).is_err());
        assert!(engine.predict_pixels("churn", &[0.0; 784]).is_err());
        assert_eq!(
            engine.predict_rows("other", &rows).unwrap_err(),
            EngineError::NotLoaded("other".into())
        );
    }

    #[test]
    fn predicts_pixels_and_images_with_labels() {
        let mut engine = Engine::default();
        let spec = ModelSpec::mnist_cnn();
        let info = engine.insert("digits", loaded("digits", &spec)).unwrap();
        assert_eq!(
            (
                info["kind"].as_str(),
                info["input_columns"].as_array().map(Vec::len)
            ),
            (Some("image"), Some(0))
        );
        let mut pixels = vec![0.0f32; 784];
        (0..28).for_each(|r| pixels[r * 28 + 14] = 1.0);
        let out = engine.predict_pixels("digits", &pixels).unwrap();
        let probs: Vec<f64> = out["probabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(probs.len(), 10);
        assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-4);
        let best = probs
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        assert_eq!(out["label"], best.to_string());
        assert_eq!(out["labels"].as_array().unwrap().len(), 10);
        // The raw path is the same graph.
        let raw = engine.predict_raw("digits", &pixels, 1).unwrap();
        assert!((raw[best] as f64 - probs[best]).abs() < 1e-6);
        // The browser's network answers like tract's plan of the same graph (the server's).
        #[cfg(feature = "onnx")]
        {
            let tract = OnnxPredictor::load(&loaded("digits", &spec).onnx).unwrap();
            let server = tract.predict(&pixels, 1).unwrap();
            let worst = raw
                .iter()
                .zip(&server)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                worst <= 1e-5,
                "the browser and the server differ by {worst}"
            );
        }
        assert!(engine.predict_pixels("digits", &[0.0; 783]).is_err());
        assert!(
            engine
                .predict_pixels("digits", &[f32::NAN; 784])
                .unwrap_err()
                .to_string()
                .contains("pixel 0")
        );
        assert!(matches!(
            engine.predict_image("digits", b"not an image"),
            Err(EngineError::Codeless(CodelessError::NotAnImage))
        ));
        let start = std::time::Instant::now();
        let clock = move || start.elapsed().as_secs_f64() * 1000.0;
        let stats = engine.latency("digits", 2, 5, 3, &clock).unwrap();
        assert_eq!((stats.batch, stats.samples, stats.calls), (2, 5, 3));
        assert!(stats.p50_ms > 0.0 && stats.p50_ms <= stats.p90_ms);
        assert!(engine.remove("digits") && engine.get("digits").is_err());
    }

    #[test]
    fn a_graph_that_does_not_match_its_spec_is_refused() {
        let mut l = loaded("churn", &tabular());
        l.package.spec = ModelSpec::mnist_cnn();
        let err = Engine::default().insert("churn", l).unwrap_err();
        assert!(err.to_string().contains("different model spec"), "{err}");
    }
}
