//! Wire types: inference (see the module docs of `models::protocol`): the codeless prediction
//! routes (`/api/predict/{name}/rows` and `/image`; `/csv` takes and returns CSV text). The
//! KServe V2 bodies are in [`crate::v2`], the model package in [`crate::package`].

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// `POST /api/predict/{name}/rows`: rows of raw values by column name. Every feature column
/// must be present (`null` for a missing value, which is imputed); other keys are refused,
/// except the target. At most 100,000 rows (`--max-rows-per-request`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PredictRows {
    /// One object per row: column name to a number, a string or `null`.
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = Vec<Object>, example = json!([{ "Age": 42, "Geography": "France", "Balance": null }]))
    )]
    pub rows: Vec<Map<String, Value>>,
}

/// One row's prediction: a class with its probability and every label's, or a value
/// (regression); each with the row's out-of-distribution `warnings` (absent in older answers:
/// read as none).
///
/// `probabilities` holds what the CSV answer's `probability_<label>` columns hold (there, the
/// label is made a safe, unique header: see `b3o_wasm_client::codeless`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Prediction {
    Class {
        /// The most likely label.
        label: String,
        /// Its probability.
        probability: f32,
        /// Every label's probability, in the model's label order.
        #[serde(with = "ordered_map")]
        probabilities: Vec<(String, f32)>,
        /// Why the input looks unlike the training data, in plain words; empty when it looks
        /// like it. A warning, never a refusal: the prediction is still made.
        #[serde(default)]
        warnings: Vec<String>,
    },
    Value {
        value: f32,
        /// As in `Class`.
        #[serde(default)]
        warnings: Vec<String>,
    },
}

impl Prediction {
    /// The out-of-distribution warnings (empty when none).
    pub fn warnings(&self) -> &[String] {
        match self {
            Prediction::Class { warnings, .. } | Prediction::Value { warnings, .. } => warnings,
        }
    }
}

/// The answer to `POST /api/predict/{name}/rows`: one prediction per row, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RowsPrediction {
    /// The deployment name.
    pub model_name: String,
    /// The registry version id that answered, as a string (as in KServe V2).
    pub model_version: String,
    pub predictions: Vec<Prediction>,
}

/// The answer to `POST /api/predict/{name}/image`: the prediction's fields next to the model's
/// name and version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImagePrediction {
    pub model_name: String,
    pub model_version: String,
    #[serde(flatten)]
    pub prediction: Prediction,
}

/// The OpenAPI shapes of [`Prediction`]'s variants as named components (see
/// [`crate::openapi`]): generators drop unions of inline objects with nested objects.
#[cfg(feature = "openapi")]
mod schema {
    use std::collections::BTreeMap;

    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::Schema;
    use utoipa::{PartialSchema, ToSchema};

    use super::{ImagePrediction, Prediction};
    use crate::openapi::{self, Components};

    /// A class: the most likely label, its probability and every label's.
    #[derive(utoipa::ToSchema)]
    #[allow(dead_code)] // a schema only
    struct ClassPrediction {
        /// The most likely label.
        label: String,
        /// Its probability.
        probability: f32,
        /// Every label's probability, in the model's label order (the CSV answer's
        /// `probability_<label>` columns).
        probabilities: BTreeMap<String, f32>,
        /// Why the input looks unlike the training data (a numeric value beyond 5 training
        /// standard deviations, a category never trained on, an image unlike the training
        /// images, an unsure answer), in plain words; empty when it looks like it. Never a
        /// refusal. Absent in older answers.
        #[schema(default = json!([]))]
        warnings: Vec<String>,
    }

    /// A value (regression).
    #[derive(utoipa::ToSchema)]
    #[allow(dead_code)] // a schema only
    struct ValuePrediction {
        value: f32,
        /// Why the input looks unlike the training data, in plain words; empty when it looks
        /// like it. Never a refusal. Absent in older answers.
        #[schema(default = json!([]))]
        warnings: Vec<String>,
    }

    const DESCRIPTION: &str = "One row's prediction: a class with its probability and every label's, or a value (regression).";

    impl PartialSchema for Prediction {
        fn schema() -> RefOr<Schema> {
            openapi::untagged_enum(DESCRIPTION, &["ClassPrediction", "ValuePrediction"])
        }
    }

    impl ToSchema for Prediction {
        fn schemas(out: &mut Components) {
            out.push(("ClassPrediction".into(), ClassPrediction::schema()));
            out.push(("ValuePrediction".into(), ValuePrediction::schema()));
        }
    }

    fn named() -> [(&'static str, RefOr<Schema>); 2] {
        [
            ("model_name", openapi::string("The deployment name.")),
            (
                "model_version",
                openapi::string("The registry version id that answered, as a string."),
            ),
        ]
    }

    impl PartialSchema for ImagePrediction {
        fn schema() -> RefOr<Schema> {
            openapi::untagged_enum(
                "The answer to `POST /api/predict/{name}/image`: the prediction's fields next to the model's name and version.",
                &["ImageClassPrediction", "ImageValuePrediction"],
            )
        }
    }

    impl ToSchema for ImagePrediction {
        fn schemas(out: &mut Components) {
            let class = openapi::with_fields(ClassPrediction::schema(), &named());
            let value = openapi::with_fields(ValuePrediction::schema(), &named());
            out.push(("ImageClassPrediction".into(), class));
            out.push(("ImageValuePrediction".into(), value));
        }
    }
}

/// `Vec<(label, p)>` as a JSON object in that order (a map type would sort the labels).
mod ordered_map {
    use super::*;

    pub fn serialize<S: Serializer>(pairs: &[(String, f32)], s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(pairs.len()))?;
        for (label, p) in pairs {
            map.serialize_entry(label, p)?;
        }
        map.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, f32)>, D::Error> {
        struct Pairs;
        impl<'de> Visitor<'de> for Pairs {
            type Value = Vec<(String, f32)>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of label to probability")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0).min(4096));
                while let Some(pair) = map.next_entry()? {
                    out.push(pair);
                }
                Ok(out)
            }
        }
        d.deserialize_map(Pairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn predictions_keep_the_label_order_and_read_back() {
        let p = Prediction::Class {
            label: "stay".into(),
            probability: 0.75,
            probabilities: vec![("stay".into(), 0.75), ("leave".into(), 0.25)],
            warnings: vec!["out of distribution: column `Age`".into()],
        };
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(
            text,
            r#"{"label":"stay","probability":0.75,"probabilities":{"stay":0.75,"leave":0.25},"warnings":["out of distribution: column `Age`"]}"#
        );
        assert_eq!(serde_json::from_str::<Prediction>(&text).unwrap(), p);
        let v: Prediction = serde_json::from_value(json!({ "value": 1.5 })).unwrap();
        assert_eq!(
            v,
            Prediction::Value {
                value: 1.5,
                warnings: vec![]
            }
        );
        // Older answers, without warnings, still read.
        let old: Prediction = serde_json::from_str(
            r#"{"label":"stay","probability":0.75,"probabilities":{"stay":0.75,"leave":0.25}}"#,
        )
        .unwrap();
        assert!(old.warnings().is_empty());
    }

    #[test]
    fn image_answers_are_flat() {
        let a = ImagePrediction {
            model_name: "digits".into(),
            model_version: "2".into(),
            prediction: Prediction::Value {
                value: 3.0,
                warnings: vec![],
            },
        };
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(
            v,
            json!({ "model_name": "digits", "model_version": "2", "value": 3.0, "warnings": [] })
        );
        assert_eq!(serde_json::from_value::<ImagePrediction>(v).unwrap(), a);
    }
}
