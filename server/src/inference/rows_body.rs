//! The body of `POST /api/predict/{name}/rows`, `{"rows": [{"column": value, ..}, ..]}`, parsed
//! with bounds: at most `max_rows` rows of at most `max_columns` keys, each value a scalar
//! (number, string, boolean or null). Checked while parsing, and each row handed to a sink (the
//! model's encoder) as soon as it is read, so only one row's JSON exists at a time: 16 MiB of
//! rows parsed into `serde_json::Value` took +424 MB.

use std::fmt;

use b3o_wasm_client::codeless::CodelessError;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Bodies up to this size are parsed on the async worker; larger ones on the blocking pool.
pub const INLINE_PARSE_BYTES: usize = 64 << 10;

#[derive(Debug, Clone, Copy)]
pub struct RowsLimits {
    pub max_rows: usize,
    pub max_columns: usize,
}

/// Why a rows body was refused.
#[derive(Debug)]
pub enum RowsError {
    /// Not the expected JSON, or past a limit (serde_json adds line and column).
    Json(String),
    /// The sink refused a row.
    Row(CodelessError),
}

/// What receives each row: its number (from 1) and its cells.
pub type Sink<'a> = dyn FnMut(usize, &Map<String, Value>) -> Result<(), CodelessError> + 'a;

/// Parses a rows body, handing each row to `sink` as it is read; returns the number of rows.
pub fn parse(body: &[u8], limits: &RowsLimits, sink: &mut Sink<'_>) -> Result<usize, RowsError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let mut refused = None;
    let parsed = BodySeed {
        limits: *limits,
        sink,
        refused: &mut refused,
    }
    .deserialize(&mut de)
    .and_then(|n| de.end().map(|()| n));
    match (parsed, refused) {
        (_, Some(e)) => Err(RowsError::Row(e)),
        (Ok(n), None) => Ok(n),
        (Err(e), None) => Err(RowsError::Json(e.to_string())),
    }
}

struct BodySeed<'a, 'b> {
    limits: RowsLimits,
    sink: &'a mut Sink<'b>,
    refused: &'a mut Option<CodelessError>,
}

impl<'de> DeserializeSeed<'de> for BodySeed<'_, '_> {
    type Value = usize;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BodySeed<'_, '_> {
    type Value = usize;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object with `rows`")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut rows = None;
        while let Some(key) = map.next_key::<String>()? {
            if key != "rows" {
                // As `deny_unknown_fields` did: a misspelt `rows` is named, not ignored.
                map.next_value::<IgnoredAny>()?;
                return Err(de::Error::unknown_field(&key, &["rows"]));
            }
            if rows.is_some() {
                return Err(de::Error::duplicate_field("rows"));
            }
            rows = Some(map.next_value_seed(RowsSeed {
                limits: self.limits,
                sink: &mut *self.sink,
                refused: &mut *self.refused,
            })?);
        }
        rows.ok_or_else(|| de::Error::missing_field("rows"))
    }
}

struct RowsSeed<'a, 'b> {
    limits: RowsLimits,
    sink: &'a mut Sink<'b>,
    refused: &'a mut Option<CodelessError>,
}

impl<'de> DeserializeSeed<'de> for RowsSeed<'_, '_> {
    type Value = usize;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RowsSeed<'_, '_> {
    type Value = usize;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of rows")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut n = 0usize;
        while let Some(row) = seq.next_element_seed(RowSeed {
            limits: self.limits,
            index: n + 1,
        })? {
            if n == self.limits.max_rows {
                return Err(de::Error::custom(format!(
                    "more than {} rows in one request; send larger inputs as a CSV batch job (POST /api/jobs)",
                    self.limits.max_rows
                )));
            }
            n += 1;
            if let Err(e) = (self.sink)(n, &row) {
                *self.refused = Some(e);
                return Err(de::Error::custom("row refused"));
            }
        }
        Ok(n)
    }
}

struct RowSeed {
    limits: RowsLimits,
    /// Row number from 1, for messages.
    index: usize,
}

impl<'de> DeserializeSeed<'de> for RowSeed {
    type Value = Map<String, Value>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RowSeed {
    type Value = Map<String, Value>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "row {} as an object {{column: value}}", self.index)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut row = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if row.len() == self.limits.max_columns {
                return Err(de::Error::custom(format!(
                    "row {} has more than {} columns",
                    self.index, self.limits.max_columns
                )));
            }
            let value = map.next_value_seed(Scalar {
                row: self.index,
                column: &key,
            })?;
            row.insert(key, value);
        }
        Ok(row)
    }
}

/// A cell: a number, string, boolean or null; arrays and objects are refused unread.
struct Scalar<'a> {
    row: usize,
    column: &'a str,
}

impl<'de> DeserializeSeed<'de> for Scalar<'_> {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl Scalar<'_> {
    fn nested<E: de::Error>(&self, what: &str) -> E {
        E::custom(format!(
            "row {}: column `{}`: expected a number, a string, a boolean or null, got {what}",
            self.row, self.column
        ))
    }
}

impl<'de> Visitor<'de> for Scalar<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number, a string, a boolean or null")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Value, A::Error> {
        Err(self.nested("an array"))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Value, A::Error> {
        Err(self.nested("an object"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: RowsLimits = RowsLimits {
        max_rows: 3,
        max_columns: 2,
    };

    fn collect(body: &[u8]) -> Result<Vec<Map<String, Value>>, String> {
        let mut rows = Vec::new();
        let mut sink = |_: usize, row: &Map<String, Value>| {
            rows.push(row.clone());
            Ok(())
        };
        match parse(body, &LIMITS, &mut sink) {
            Ok(n) => {
                assert_eq!(n, rows.len());
                Ok(rows)
            }
            Err(RowsError::Json(e)) => Err(e),
            Err(RowsError::Row(e)) => Err(e.to_string()),
        }
    }

    #[test]
    fn rows_parse_within_limits_and_reach_the_sink_in_order() {
        let rows = collect(br#"{"rows":[{"a":1,"b":"x"},{"a":null,"b":true}]}"#).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1]["b"], Value::Bool(true));
        let mut sink = |i: usize, _: &Map<String, Value>| {
            if i == 2 {
                Err(CodelessError::NoRows)
            } else {
                Ok(())
            }
        };
        assert!(matches!(
            parse(br#"{"rows":[{},{},{}]}"#, &LIMITS, &mut sink),
            Err(RowsError::Row(CodelessError::NoRows))
        ));
    }

    /// Regression (issue #19, finding 3): rows were parsed into an unbounded JSON tree.
    #[test]
    fn too_many_rows_columns_or_nested_values_are_named() {
        let e = collect(br#"{"rows":[{},{},{},{}]}"#).unwrap_err();
        assert!(e.contains("more than 3 rows"), "{e}");
        let e = collect(br#"{"rows":[{"a":1,"b":2,"c":3}]}"#).unwrap_err();
        assert!(e.contains("row 1 has more than 2 columns"), "{e}");
        let e = collect(br#"{"rows":[{"a":[1,2]}]}"#).unwrap_err();
        assert!(e.contains("column `a`") && e.contains("an array"), "{e}");
        let e = collect(br#"{"rowz":[]}"#).unwrap_err();
        assert!(e.contains("rowz"), "{e}");
        assert!(collect(br#"{}"#).unwrap_err().contains("rows"));
        assert!(collect(br#"{"rows":[]} {"#).is_err());
    }
}
