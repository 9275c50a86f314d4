//! KServe V2 / Open Inference Protocol request bodies (JSON REST), parsed as a stream: tensor
//! data goes straight from the JSON text into one `Vec<f32>`, never through a JSON tree.
//!
//! A tree (`serde_json::Value`) costs ~50x the body in memory (a 16 MiB body took 855 MB);
//! here a request costs at most 4 bytes per number in its body, and never more than
//! [`ParseLimits::max_values`]. Nothing is sized from the `shape` a client sends: the shape is
//! checked against the data with checked arithmetic after parsing ([`InputTensor::batch_for`]).
//! Unknown fields (`parameters`, `outputs`, ...) are skipped without being kept, so the
//! Triton and KServe clients' requests parse as they are.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

/// Bounds applied while parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    /// Most numbers in all inputs' `data` together.
    pub max_values: usize,
    /// Most input tensors.
    pub max_inputs: usize,
    /// Most dimensions of a `shape`.
    pub max_rank: usize,
    /// Longest `id`, input `name` or `datatype`, in bytes.
    pub max_text: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits {
            max_values: 16 << 20,
            max_inputs: 16,
            max_rank: 8,
            max_text: 256,
        }
    }
}

/// Why a V2 request was refused: always the caller's input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum V2Error {
    /// Not the expected JSON (syntax, types, missing fields, a bound of [`ParseLimits`]).
    #[error("invalid inference request: {0}")]
    Json(String),
    #[error("the model takes exactly one input tensor `{expected}`, got {found}")]
    InputCount { expected: String, found: usize },
    #[error("unknown input `{found}`: the model's input is `{expected}`")]
    InputName { expected: String, found: String },
    #[error("input datatype must be FP32, got {0}")]
    Datatype(String),
    #[error("input shape {shape:?} does not match the model's [batch, {row:?}]")]
    Shape { shape: Vec<i64>, row: Vec<usize> },
    #[error("input shape {shape:?} is too large: it would hold more than {max} values")]
    ShapeTooLarge { shape: Vec<i64>, max: usize },
    #[error("input shape {shape:?} needs {needed} values, data has {found}")]
    DataLength {
        shape: Vec<i64>,
        needed: usize,
        found: usize,
    },
}

/// A parsed `POST /v2/models/{name}/infer` body.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InferRequest {
    pub id: Option<String>,
    pub inputs: Vec<InputTensor>,
}

/// One input tensor; `data` is row-major, flattened from any nesting.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InputTensor {
    pub name: String,
    pub shape: Vec<i64>,
    pub datatype: String,
    pub data: Vec<f32>,
}

/// Parses a V2 inference request (see the module docs).
pub fn parse_infer_request(body: &[u8], limits: &ParseLimits) -> Result<InferRequest, V2Error> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let mut budget = limits.max_values;
    let request = RequestSeed {
        limits,
        budget: &mut budget,
    }
    .deserialize(&mut de)
    .map_err(|e| V2Error::Json(e.to_string()))?;
    de.end().map_err(|e| V2Error::Json(e.to_string()))?;
    Ok(request)
}

impl InferRequest {
    /// The request's one input, checked for the model's input `name` and FP32.
    pub fn single_input(&self, name: &str) -> Result<&InputTensor, V2Error> {
        let [t] = self.inputs.as_slice() else {
            return Err(V2Error::InputCount {
                expected: name.to_string(),
                found: self.inputs.len(),
            });
        };
        if t.name != name {
            return Err(V2Error::InputName {
                expected: name.to_string(),
                found: t.name.clone(),
            });
        }
        if t.datatype != "FP32" {
            return Err(V2Error::Datatype(t.datatype.clone()));
        }
        Ok(t)
    }
}

impl InputTensor {
    /// The batch size of this tensor for a model whose rows have shape `row` (`row_len`
    /// values): the shape must be `[batch, ..row]` or `[batch, row_len]`, and the data must
    /// hold exactly `batch * row_len` values (checked arithmetic: a shape whose product
    /// overflows is refused, not wrapped).
    pub fn batch_for(&self, row: &[usize]) -> Result<usize, V2Error> {
        let row_len = row.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        let dims: Option<Vec<usize>> = self
            .shape
            .iter()
            .map(|&d| usize::try_from(d).ok())
            .collect();
        let (Some(row_len), Some(dims)) = (row_len, dims) else {
            return Err(self.shape_error(row));
        };
        let matches = dims.len() >= 2 && (dims[1..] == *row || dims[1..] == [row_len]);
        if !matches {
            return Err(self.shape_error(row));
        }
        let batch = dims[0];
        let needed = batch
            .checked_mul(row_len)
            .ok_or_else(|| V2Error::ShapeTooLarge {
                shape: self.shape.clone(),
                max: usize::MAX,
            })?;
        if needed != self.data.len() {
            return Err(V2Error::DataLength {
                shape: self.shape.clone(),
                needed,
                found: self.data.len(),
            });
        }
        Ok(batch)
    }

    fn shape_error(&self, row: &[usize]) -> V2Error {
        V2Error::Shape {
            shape: self.shape.clone(),
            row: row.to_vec(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The protocol's bodies as types: the answers the server sends, and the request as clients
// write it (the server reads requests with [`parse_infer_request`], not with these).
// ---------------------------------------------------------------------------------------------

/// `POST /v2/models/{name}/infer` as clients send it (KServe V2 / Open Inference Protocol).
/// Unknown fields (`parameters`, `outputs`, ...) are accepted and ignored, as Triton's and
/// KServe's clients send them.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = V2InferRequest))]
pub struct InferRequestBody {
    /// Echoed in the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Exactly one: `input`.
    pub inputs: Vec<RequestTensor>,
}

/// An input tensor as clients send it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = V2RequestTensor))]
pub struct RequestTensor {
    /// `input`.
    pub name: String,
    /// `[batch, ..row]` or `[batch, row_len]`, as in the model's metadata.
    pub shape: Vec<i64>,
    /// `FP32`.
    pub datatype: String,
    /// Row-major numbers, flat or nested as the shape.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Value>))]
    pub data: Vec<f32>,
}

/// The answer to an inference request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = V2InferResponse))]
pub struct InferResponse {
    /// The request's `id`, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub model_name: String,
    /// The registry version id that answered.
    pub model_version: String,
    pub outputs: Vec<OutputTensor>,
}

/// An output tensor: `output`, FP32, `[batch, width]` (probabilities or values), flat data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = V2OutputTensor))]
pub struct OutputTensor {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// `GET /v2/health/live`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = V2ServerLive))]
pub struct ServerLive {
    pub live: bool,
}

/// `GET /v2/health/ready`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = V2ServerReady))]
pub struct ServerReady {
    pub ready: bool,
}

/// `GET /v2`: the server's name, version and protocol extensions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = V2ServerMetadata))]
pub struct ServerMetadata {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub extensions: Vec<String>,
}

/// `GET /v2/models/{name}[/versions/{version}]/ready`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = V2ModelReady))]
pub struct ModelReady {
    pub name: String,
    pub ready: bool,
}

/// `GET /v2/models/{name}[/versions/{version}]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = V2ModelMetadata))]
pub struct ModelMetadata {
    pub name: String,
    /// The version answering (a registry version id).
    pub versions: Vec<String>,
    /// `onnx_onnxv1`.
    pub platform: String,
    pub inputs: Vec<TensorMetadata>,
    pub outputs: Vec<TensorMetadata>,
    pub parameters: ModelParameters,
}

/// A tensor of a model's metadata; `-1` is the batch dimension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = V2TensorMetadata))]
pub struct TensorMetadata {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
}

/// B3O's model parameters in the metadata: the task and the class labels in output order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = V2ModelParameters))]
pub struct ModelParameters {
    pub task: crate::Task,
    #[serde(default)]
    pub labels: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Streaming deserialisation: seeds carry the limits and the remaining value budget.
// ---------------------------------------------------------------------------------------------

struct RequestSeed<'a> {
    limits: &'a ParseLimits,
    budget: &'a mut usize,
}

impl<'de> DeserializeSeed<'de> for RequestSeed<'_> {
    type Value = InferRequest;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<InferRequest, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RequestSeed<'_> {
    type Value = InferRequest;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object {\"inputs\": [..]}")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<InferRequest, A::Error> {
        let mut request = InferRequest::default();
        let mut seen_inputs = false;
        while let Some(key) = map.next_key::<Key>()? {
            match key.0.as_str() {
                "id" => {
                    let id: Option<String> = map.next_value()?;
                    if let Some(id) = &id {
                        check_text("id", id, self.limits)?;
                    }
                    request.id = id;
                }
                "inputs" => {
                    if seen_inputs {
                        return Err(de::Error::duplicate_field("inputs"));
                    }
                    seen_inputs = true;
                    request.inputs = map.next_value_seed(InputsSeed {
                        limits: self.limits,
                        budget: self.budget,
                    })?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !seen_inputs {
            return Err(de::Error::missing_field("inputs"));
        }
        Ok(request)
    }
}

/// An object key, borrowed or not.
struct Key(String);

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                // Field names we know are short; a longer key is skipped by name only.
                Ok(Key(v.chars().take(32).collect()))
            }
        }
        d.deserialize_str(V)
    }
}

fn check_text<E: de::Error>(field: &str, text: &str, limits: &ParseLimits) -> Result<(), E> {
    if text.len() > limits.max_text {
        return Err(E::custom(format!(
            "`{field}` is longer than {} bytes",
            limits.max_text
        )));
    }
    Ok(())
}

struct InputsSeed<'a> {
    limits: &'a ParseLimits,
    budget: &'a mut usize,
}

impl<'de> DeserializeSeed<'de> for InputsSeed<'_> {
    type Value = Vec<InputTensor>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for InputsSeed<'_> {
    type Value = Vec<InputTensor>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of input tensors")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut inputs = Vec::new();
        while let Some(t) = seq.next_element_seed(TensorSeed {
            limits: self.limits,
            budget: self.budget,
        })? {
            if inputs.len() == self.limits.max_inputs {
                return Err(de::Error::custom(format!(
                    "more than {} input tensors",
                    self.limits.max_inputs
                )));
            }
            inputs.push(t);
        }
        Ok(inputs)
    }
}

struct TensorSeed<'a> {
    limits: &'a ParseLimits,
    budget: &'a mut usize,
}

impl<'de> DeserializeSeed<'de> for TensorSeed<'_> {
    type Value = InputTensor;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TensorSeed<'_> {
    type Value = InputTensor;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an input tensor {\"name\", \"shape\", \"datatype\", \"data\"}")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<InputTensor, A::Error> {
        let (mut name, mut shape, mut datatype, mut data) = (None, None, None, None);
        while let Some(key) = map.next_key::<Key>()? {
            match key.0.as_str() {
                "name" => {
                    let v: String = map.next_value()?;
                    check_text("name", &v, self.limits)?;
                    name = Some(v);
                }
                "datatype" => {
                    let v: String = map.next_value()?;
                    check_text("datatype", &v, self.limits)?;
                    datatype = Some(v);
                }
                "shape" => {
                    shape = Some(map.next_value_seed(ShapeSeed {
                        max_rank: self.limits.max_rank,
                    })?);
                }
                "data" => {
                    if data.is_some() {
                        return Err(de::Error::duplicate_field("data"));
                    }
                    let mut out = Vec::new();
                    map.next_value_seed(DataSeed {
                        out: &mut out,
                        budget: self.budget,
                        max: self.limits.max_values,
                    })?;
                    data = Some(out);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(InputTensor {
            name: name.ok_or_else(|| de::Error::missing_field("name"))?,
            shape: shape.ok_or_else(|| de::Error::missing_field("shape"))?,
            datatype: datatype.ok_or_else(|| de::Error::missing_field("datatype"))?,
            data: data.ok_or_else(|| de::Error::missing_field("data"))?,
        })
    }
}

struct ShapeSeed {
    max_rank: usize,
}

impl<'de> DeserializeSeed<'de> for ShapeSeed {
    type Value = Vec<i64>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ShapeSeed {
    type Value = Vec<i64>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a shape: an array of integers")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut shape = Vec::new();
        while let Some(d) = seq.next_element::<i64>()? {
            if shape.len() == self.max_rank {
                return Err(de::Error::custom(format!(
                    "`shape` has more than {} dimensions",
                    self.max_rank
                )));
            }
            if d < 0 {
                return Err(de::Error::custom(format!(
                    "`shape` dimension {d} is negative"
                )));
            }
            shape.push(d);
        }
        Ok(shape)
    }
}

/// Flattens nested arrays of numbers into `out`, counting against `budget`. Depth is bounded
/// by serde_json's recursion limit.
struct DataSeed<'a> {
    out: &'a mut Vec<f32>,
    budget: &'a mut usize,
    max: usize,
}

impl<'de> DeserializeSeed<'de> for DataSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl DataSeed<'_> {
    fn push<E: de::Error>(self, x: f64, shown: &dyn fmt::Display) -> Result<(), E> {
        let v = x as f32;
        if !v.is_finite() {
            return Err(E::custom(format!(
                "input value {shown} at index {} is not a finite FP32",
                self.out.len()
            )));
        }
        if *self.budget == 0 {
            return Err(E::custom(format!(
                "the request holds more than {} values",
                self.max
            )));
        }
        *self.budget -= 1;
        self.out.push(v);
        Ok(())
    }

    fn not_a_number<E: de::Error>(self, found: &str) -> Result<(), E> {
        Err(E::custom(format!(
            "input data must be numbers; found {found} at index {}",
            self.out.len()
        )))
    }
}

impl<'de> Visitor<'de> for DataSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("numbers, flat or in nested arrays")
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.push(v, &v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.push(v as f64, &v)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.push(v as f64, &v)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.not_a_number("a string")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.not_a_number("a boolean")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.not_a_number("null")
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        self.not_a_number("an object")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(DataSeed {
                out: &mut *self.out,
                budget: &mut *self.budget,
                max: self.max,
            })?
            .is_some()
        {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<InferRequest, V2Error> {
        parse_infer_request(body.as_bytes(), &ParseLimits::default())
    }

    #[test]
    fn parses_flat_and_nested_data_and_skips_unknown_fields() {
        let r = parse(
            r#"{"id":"a","parameters":{"x":[1,{"y":2}]},"inputs":[{"name":"input","shape":[2,2],
            "datatype":"FP32","parameters":{"binary_data_size":3},"data":[[1,2.5],[-3,4e2]]}],
            "outputs":[{"name":"output"}]}"#,
        )
        .unwrap();
        assert_eq!(r.id.as_deref(), Some("a"));
        let t = r.single_input("input").unwrap();
        assert_eq!(t.data, vec![1.0, 2.5, -3.0, 400.0]);
        assert_eq!(t.batch_for(&[2]).unwrap(), 2);
        // Field order does not matter (data before shape).
        let r =
            parse(r#"{"inputs":[{"data":[1],"datatype":"FP32","shape":[1,1],"name":"input"}]}"#)
                .unwrap();
        assert_eq!(r.inputs[0].batch_for(&[1]).unwrap(), 1);
    }

    /// Regression (issue #19, finding 1): a batch size from the body sized an allocation
    /// (`[1073741824, 1, 28, 28]` aborted the server); products past 2^64 wrapped around.
    #[test]
    fn huge_and_wrapping_shapes_are_refused_without_allocating() {
        let body = |shape: &str, data: &str| {
            format!(
                r#"{{"inputs":[{{"name":"input","shape":{shape},"datatype":"FP32","data":{data}}}]}}"#
            )
        };
        let row = [1usize, 28, 28];
        let r = parse(&body("[1073741824,1,28,28]", "[0.5]")).unwrap();
        assert!(matches!(
            r.inputs[0].batch_for(&row),
            Err(V2Error::DataLength { needed, found: 1, .. }) if needed == 1073741824 * 784
        ));
        let r = parse(&body(&format!("[{},1,28,28]", 1u64 << 58), "[0.5]")).unwrap();
        assert!(matches!(
            r.inputs[0].batch_for(&row),
            Err(V2Error::ShapeTooLarge { .. })
        ));
        // 2^64 / 784 rounded up: the product wraps to a small number in unchecked arithmetic.
        let wrap = (u64::MAX / 784) + 1;
        let r = parse(&body(&format!("[{wrap},784]"), "[0.5]")).unwrap();
        assert!(matches!(
            r.inputs[0].batch_for(&[784]),
            Err(V2Error::ShapeTooLarge { .. })
        ));
        assert!(
            parse(&body("[-1,784]", "[0.5]"))
                .unwrap_err()
                .to_string()
                .contains("negative")
        );
        assert!(parse(&body("[1,1,1,1,1,1,1,1,1]", "[1]")).is_err());
    }

    #[test]
    fn bad_data_is_named() {
        let one = |data: &str| {
            parse(&format!(
                r#"{{"inputs":[{{"name":"input","shape":[1,1],"datatype":"FP32","data":{data}}}]}}"#
            ))
            .unwrap_err()
            .to_string()
        };
        assert!(one(r#"["x"]"#).contains("must be numbers"));
        assert!(one("[1e39]").contains("finite"));
        assert!(one("[null]").contains("null"));
        let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(one(&deep).contains("recursion"), "{}", one(&deep));
        let limits = ParseLimits {
            max_values: 3,
            ..ParseLimits::default()
        };
        let e = parse_infer_request(
            br#"{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}"#,
            &limits,
        )
        .unwrap_err();
        assert!(e.to_string().contains("more than 3 values"), "{e}");
        assert!(parse("{}").unwrap_err().to_string().contains("inputs"));
        assert!(parse("[]").is_err());
        assert!(parse(r#"{"inputs":[]} x"#).is_err());
    }
}
