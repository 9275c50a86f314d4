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
    /// The client asked for binary outputs (Triton's binary tensor data extension: the
    /// request's `parameters.binary_data_output`, or an output's `parameters.binary_data`).
    pub binary_output: bool,
}

/// One input tensor; `data` is row-major, flattened from any nesting.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InputTensor {
    pub name: String,
    pub shape: Vec<i64>,
    pub datatype: String,
    pub data: Vec<f32>,
}

/// Parses a V2 inference request (see the module docs): JSON only.
pub fn parse_infer_request(body: &[u8], limits: &ParseLimits) -> Result<InferRequest, V2Error> {
    parse_infer_request_with(body, None, limits)
}

/// The header that says how long the JSON part of a binary request or answer is (Triton's
/// binary tensor data extension).
pub const HEADER_LENGTH: &str = "Inference-Header-Content-Length";

/// Parses a V2 inference request that may use Triton's binary tensor data extension: with
/// `json_len` (the `Inference-Header-Content-Length` header), the body's first `json_len`
/// bytes are the JSON request and the rest holds, in the order of the inputs, the raw
/// little-endian data of every input whose `parameters.binary_data_size` says how many bytes
/// it takes (such an input has no `data`). Every size is checked against the bytes actually
/// there and the value budget before anything is read; the binary part must be used exactly.
pub fn parse_infer_request_with(
    body: &[u8],
    json_len: Option<usize>,
    limits: &ParseLimits,
) -> Result<InferRequest, V2Error> {
    let (json, mut binary) = match json_len {
        Some(n) if n > body.len() => {
            return Err(V2Error::Json(format!(
                "{HEADER_LENGTH} is {n}, but the body has only {} bytes",
                body.len()
            )));
        }
        Some(n) => body.split_at(n),
        None => (body, &[][..]),
    };
    let mut de = serde_json::Deserializer::from_slice(json);
    let mut budget = limits.max_values;
    let parsed = RequestSeed {
        limits,
        budget: &mut budget,
    }
    .deserialize(&mut de)
    .map_err(|e| V2Error::Json(e.to_string()))?;
    de.end().map_err(|e| V2Error::Json(e.to_string()))?;
    let mut request = InferRequest {
        id: parsed.id,
        inputs: Vec::with_capacity(parsed.inputs.len()),
        binary_output: parsed.binary_output,
    };
    for t in parsed.inputs {
        let data = match (t.data, t.binary_size) {
            (Some(_), Some(_)) => {
                return Err(V2Error::Json(format!(
                    "input `{}` has both `data` and `parameters.binary_data_size`",
                    t.name
                )));
            }
            (Some(data), None) => data,
            (None, None) => {
                return Err(V2Error::Json(format!(
                    "input `{}`: missing field `data`",
                    t.name
                )));
            }
            (None, Some(size)) => {
                if json_len.is_none() {
                    return Err(V2Error::Json(format!(
                        "input `{}` has its data in binary (`binary_data_size`) but the request \
                         has no {HEADER_LENGTH} header",
                        t.name
                    )));
                }
                if t.datatype != "FP32" {
                    return Err(V2Error::Datatype(t.datatype));
                }
                let size = usize::try_from(size).unwrap_or(usize::MAX);
                if size > binary.len() {
                    return Err(V2Error::Json(format!(
                        "input `{}` says {size} binary bytes, only {} are left in the body",
                        t.name,
                        binary.len()
                    )));
                }
                if size % 4 != 0 {
                    return Err(V2Error::Json(format!(
                        "input `{}`: {size} binary bytes is not a whole number of FP32 values",
                        t.name
                    )));
                }
                let values = size / 4;
                if values > budget {
                    return Err(V2Error::Json(format!(
                        "the request holds more than {} values",
                        limits.max_values
                    )));
                }
                budget -= values;
                let (bytes, rest) = binary.split_at(size);
                binary = rest;
                fp32_from_le(bytes, &format!("input `{}`", t.name))?
            }
        };
        request.inputs.push(InputTensor {
            name: t.name,
            shape: t.shape,
            datatype: t.datatype,
            data,
        });
    }
    if !binary.is_empty() {
        return Err(V2Error::Json(format!(
            "{} bytes after the JSON belong to no input (binary_data_size)",
            binary.len()
        )));
    }
    Ok(request)
}

/// The request as its JSON says, before the binary part fills the inputs.
#[derive(Default)]
struct ParsedRequest {
    id: Option<String>,
    inputs: Vec<ParsedTensor>,
    binary_output: bool,
}

/// An input tensor as its JSON says: inline `data`, or a size in the binary part.
struct ParsedTensor {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    data: Option<Vec<f32>>,
    binary_size: Option<u64>,
}

/// The `parameters` of a request, an input or an output: the binary extension's keys are
/// read, any other is skipped unkept.
#[derive(Default)]
struct Parameters {
    binary_data_size: Option<u64>,
    binary_data: Option<bool>,
    binary_data_output: Option<bool>,
}

impl<'de> Deserialize<'de> for Parameters {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Parameters;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of parameters")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Parameters, A::Error> {
                let mut p = Parameters::default();
                while let Some(key) = map.next_key::<Key>()? {
                    match key.0.as_str() {
                        "binary_data_size" => p.binary_data_size = Some(map.next_value()?),
                        "binary_data" => p.binary_data = Some(map.next_value()?),
                        "binary_data_output" => p.binary_data_output = Some(map.next_value()?),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(p)
            }
        }
        d.deserialize_map(V)
    }
}

/// A requested output: whether it wants binary data.
struct RequestedOutput {
    binary: bool,
}

impl<'de> Deserialize<'de> for RequestedOutput {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RequestedOutput;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a requested output {\"name\", \"parameters\"}")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RequestedOutput, A::Error> {
                let mut binary = false;
                while let Some(key) = map.next_key::<Key>()? {
                    match key.0.as_str() {
                        "parameters" => {
                            binary = map.next_value::<Parameters>()?.binary_data == Some(true)
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(RequestedOutput { binary })
            }
        }
        d.deserialize_map(V)
    }
}

/// The `outputs` a request names: whether any wants binary data (without keeping them).
struct OutputsWantBinary(bool);

impl<'de> Deserialize<'de> for OutputsWantBinary {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OutputsWantBinary;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of requested outputs")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut any = false;
                while let Some(o) = seq.next_element::<RequestedOutput>()? {
                    any |= o.binary;
                }
                Ok(OutputsWantBinary(any))
            }
        }
        d.deserialize_seq(V)
    }
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
        batch_of(&self.shape, row, self.data.len())
    }
}

/// The batch size of a tensor of shape `shape` holding `values` numbers, for a model whose
/// rows have shape `row`: the shape must be `[batch, ..row]` or `[batch, row_len]` and
/// `batch * row_len` must be exactly `values`, computed with checked arithmetic (a shape whose
/// product overflows is refused, not wrapped). Needs only the count of values, so a transport
/// can check a shape before it decodes (or allocates) any data: the gRPC service checks its
/// raw bytes this way.
pub fn batch_of(shape: &[i64], row: &[usize], values: usize) -> Result<usize, V2Error> {
    let shape_error = || V2Error::Shape {
        shape: shape.to_vec(),
        row: row.to_vec(),
    };
    let row_len = row.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let dims: Option<Vec<usize>> = shape.iter().map(|&d| usize::try_from(d).ok()).collect();
    let (Some(row_len), Some(dims)) = (row_len, dims) else {
        return Err(shape_error());
    };
    let matches = dims.len() >= 2 && (dims[1..] == *row || dims[1..] == [row_len]);
    if !matches {
        return Err(shape_error());
    }
    let batch = dims[0];
    let needed = batch
        .checked_mul(row_len)
        .ok_or_else(|| V2Error::ShapeTooLarge {
            shape: shape.to_vec(),
            max: usize::MAX,
        })?;
    if needed != values {
        return Err(V2Error::DataLength {
            shape: shape.to_vec(),
            needed,
            found: values,
        });
    }
    Ok(batch)
}

/// Little-endian FP32 bytes (Triton's binary tensor data, gRPC's `raw_input_contents`) as
/// numbers: a whole number of values, every one finite. `what` names the bytes in errors.
pub fn fp32_from_le(bytes: &[u8], what: &str) -> Result<Vec<f32>, V2Error> {
    if !bytes.len().is_multiple_of(4) {
        return Err(V2Error::Json(format!(
            "{what}: {} bytes is not a whole number of FP32 values",
            bytes.len()
        )));
    }
    let mut data = Vec::with_capacity(bytes.len() / 4);
    for (i, chunk) in bytes.chunks_exact(4).enumerate() {
        let v = f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        if !v.is_finite() {
            return Err(V2Error::Json(format!(
                "{what}: the value at index {i} is not a finite FP32"
            )));
        }
        data.push(v);
    }
    Ok(data)
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

/// One model of `POST /v2/repository/index` (Triton's model repository extension): a
/// deployment the caller may call, the version it serves, and its state (always `READY`: a
/// deployment loads on its first call).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = V2RepositoryModel))]
pub struct RepositoryModel {
    pub name: String,
    pub version: String,
    pub state: String,
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

/// `GET /v2/models/{name}[/versions/{version}]/stats` (Triton's statistics extension): the
/// statistics of each version of the model the answer covers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = V2ModelStatisticsResponse))]
pub struct ModelStatisticsResponse {
    pub model_stats: Vec<ModelStatistics>,
}

/// The statistics of one model version since this replica started (Triton's
/// `ModelStatistics`). Kept in memory by each replica: behind a load balancer, each replica
/// answers with its own share, and a restart starts from zero.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = V2ModelStatistics))]
pub struct ModelStatistics {
    /// The deployment's name.
    pub name: String,
    /// The registry version id.
    pub version: String,
    /// When the last inference request for this version ended, in milliseconds since the
    /// Unix epoch (0: never).
    pub last_inference: u64,
    /// Rows inferred by successful requests (a request of 64 rows counts 64).
    pub inference_count: u64,
    /// Model executions of successful requests: single rows batched together by the dynamic
    /// batcher count one execution per batch (counted for the request that opened it).
    pub execution_count: u64,
    pub inference_stats: InferStatistics,
    /// Per batch size: not measured (always empty).
    #[serde(default)]
    pub batch_stats: Vec<InferBatchStatistics>,
}

/// Cumulative counts and durations of inference requests (Triton's `InferStatistics`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = V2InferStatistics))]
pub struct InferStatistics {
    /// Requests that succeeded, and their time in the server from the request's start to its
    /// answer.
    pub success: StatisticDuration,
    /// Requests that reached the model (caller allowed, model loaded) and failed: bad input,
    /// busy, a model error.
    pub fail: StatisticDuration,
    /// Successful requests' time waiting for their batch to start (single rows in the dynamic
    /// batcher; 0 for requests that run alone).
    pub queue: StatisticDuration,
    /// Preparing inputs: part of the request's parsing, not measured apart (0 ns).
    pub compute_input: StatisticDuration,
    /// Successful requests' model execution time (a batch's whole run for each of its rows'
    /// requests).
    pub compute_infer: StatisticDuration,
    /// Extracting outputs: part of the answer's serialisation, not measured apart (0 ns).
    pub compute_output: StatisticDuration,
}

/// A count and a total duration in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = V2StatisticDuration))]
pub struct StatisticDuration {
    pub count: u64,
    pub ns: u64,
}

/// Statistics of one batch size (Triton's `InferBatchStatistics`); B3O Edge does not report
/// them (`batch_stats` is empty).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = V2InferBatchStatistics))]
pub struct InferBatchStatistics {
    pub batch_size: u64,
    pub compute_input: StatisticDuration,
    pub compute_infer: StatisticDuration,
    pub compute_output: StatisticDuration,
}

// ---------------------------------------------------------------------------------------------
// Streaming deserialisation: seeds carry the limits and the remaining value budget.
// ---------------------------------------------------------------------------------------------

struct RequestSeed<'a> {
    limits: &'a ParseLimits,
    budget: &'a mut usize,
}

impl<'de> DeserializeSeed<'de> for RequestSeed<'_> {
    type Value = ParsedRequest;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<ParsedRequest, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RequestSeed<'_> {
    type Value = ParsedRequest;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object {\"inputs\": [..]}")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ParsedRequest, A::Error> {
        let mut request = ParsedRequest::default();
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
                "parameters" => {
                    request.binary_output |=
                        map.next_value::<Parameters>()?.binary_data_output == Some(true);
                }
                "outputs" => {
                    request.binary_output |= map.next_value::<OutputsWantBinary>()?.0;
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
    type Value = Vec<ParsedTensor>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for InputsSeed<'_> {
    type Value = Vec<ParsedTensor>;
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
    type Value = ParsedTensor;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TensorSeed<'_> {
    type Value = ParsedTensor;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an input tensor {\"name\", \"shape\", \"datatype\", \"data\"}")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ParsedTensor, A::Error> {
        let (mut name, mut shape, mut datatype, mut data) = (None, None, None, None);
        let mut binary_size = None;
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
                "parameters" => {
                    binary_size = map.next_value::<Parameters>()?.binary_data_size;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(ParsedTensor {
            name: name.ok_or_else(|| de::Error::missing_field("name"))?,
            shape: shape.ok_or_else(|| de::Error::missing_field("shape"))?,
            datatype: datatype.ok_or_else(|| de::Error::missing_field("datatype"))?,
            data,
            binary_size,
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
            "datatype":"FP32","parameters":{"content_type":"x"},"data":[[1,2.5],[-3,4e2]]}],
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

    /// A binary request as `tritonclient` sends it: the JSON header, then the tensors' raw
    /// little-endian bytes.
    fn binary_body(json: &str, values: &[f32]) -> (Vec<u8>, usize) {
        let mut body = json.as_bytes().to_vec();
        for v in values {
            body.extend_from_slice(&v.to_le_bytes());
        }
        (body, json.len())
    }

    #[test]
    fn reads_binary_tensor_data_and_the_binary_output_request() {
        let (body, n) = binary_body(
            r#"{"inputs":[{"name":"input","shape":[2,2],"datatype":"FP32",
            "parameters":{"binary_data_size":16}}],
            "outputs":[{"name":"output","parameters":{"binary_data":true}}]}"#,
            &[1.0, -2.5, 3.0, 400.0],
        );
        let r = parse_infer_request_with(&body, Some(n), &ParseLimits::default()).unwrap();
        let t = r.single_input("input").unwrap();
        assert_eq!(t.data, vec![1.0, -2.5, 3.0, 400.0]);
        assert_eq!(t.batch_for(&[2]).unwrap(), 2);
        assert!(r.binary_output);
        // The request-level switch too; JSON-only requests ask for JSON.
        let (body, n) = binary_body(
            r#"{"parameters":{"binary_data_output":true},"inputs":[{"name":"input",
            "shape":[1,1],"datatype":"FP32","parameters":{"binary_data_size":4}}]}"#,
            &[7.0],
        );
        let r = parse_infer_request_with(&body, Some(n), &ParseLimits::default()).unwrap();
        assert!(r.binary_output);
        assert!(
            !parse(r#"{"inputs":[{"name":"input","shape":[1,1],"datatype":"FP32","data":[1]}]}"#)
                .unwrap()
                .binary_output
        );
    }

    #[test]
    fn binary_sizes_are_checked_against_the_bytes_there() {
        let limits = ParseLimits::default();
        let json = r#"{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32",
            "parameters":{"binary_data_size":8}}]}"#;
        let refused = |body: &[u8], n: Option<usize>, want: &str| {
            let e = parse_infer_request_with(body, n, &limits)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{want}: {e}");
        };
        // Fewer bytes than declared, more than declared, a header longer than the body.
        let (body, n) = binary_body(json, &[1.0]);
        refused(&body, Some(n), "only 4 are left");
        let (body, n) = binary_body(json, &[1.0, 2.0, 3.0]);
        refused(&body, Some(n), "belong to no input");
        refused(
            json.as_bytes(),
            Some(json.len() + 1),
            "Inference-Header-Content-Length",
        );
        // A size from the body never sizes an allocation: 2^62 bytes is refused, not reserved.
        let huge = json.replace("8}", "4611686018427387904}");
        let (body, n) = binary_body(&huge, &[1.0, 2.0]);
        refused(&body, Some(n), "only 8 are left");
        // Binary data without the header, half a value, both forms, not FP32, not finite.
        refused(json.as_bytes(), None, "no Inference-Header-Content-Length");
        let odd = json.replace("8}", "6}");
        let (mut body, n) = binary_body(&odd, &[1.0]);
        body.extend_from_slice(&[0, 0]);
        refused(&body, Some(n), "whole number of FP32");
        let both = json.replace("\"parameters\"", "\"data\":[1,2],\"parameters\"");
        let (body, n) = binary_body(&both, &[1.0, 2.0]);
        refused(&body, Some(n), "both `data`");
        let int = json.replace("FP32", "INT32");
        let (body, n) = binary_body(&int, &[1.0, 2.0]);
        refused(&body, Some(n), "FP32");
        let (body, n) = binary_body(json, &[1.0, f32::NAN]);
        refused(&body, Some(n), "not a finite FP32");
        // The value budget counts binary values too.
        let small = ParseLimits {
            max_values: 1,
            ..ParseLimits::default()
        };
        let (body, n) = binary_body(json, &[1.0, 2.0]);
        let e = parse_infer_request_with(&body, Some(n), &small).unwrap_err();
        assert!(e.to_string().contains("more than 1 values"), "{e}");
    }
}
