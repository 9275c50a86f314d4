//! OpenAPI schemas built by hand for the wire types whose derived schema client generators
//! cannot use (feature `openapi`).
//!
//! utoipa writes an internally tagged enum (`#[serde(tag = "kind")]` over newtype variants) as
//! `oneOf` of `allOf [$ref, {kind}]`, and a struct that flattens an untagged enum as `allOf` of
//! a `oneOf`; openapi-python-client (and other generators) drop both, and with them every
//! operation that uses them. Here each variant becomes a named component (the variant's own
//! derived object plus its tag, or plus the flattened fields), and the enum a `oneOf` of
//! references, with a `discriminator` where there is a tag. The fields still come from the
//! derived schemas, so they cannot drift from the Rust types.

use utoipa::openapi::schema::{Discriminator, OneOfBuilder, Schema, Type};
use utoipa::openapi::{ObjectBuilder, Ref, RefOr};

/// Named schemas collected by `ToSchema::schemas`.
pub(crate) type Components = Vec<(String, RefOr<Schema>)>;

/// A component of a tagged enum: `component` is the variant's object `inner` with `tag` a
/// required property whose only value is `value`.
pub(crate) struct Tagged {
    pub value: &'static str,
    pub component: &'static str,
    pub inner: RefOr<Schema>,
}

/// `inner`'s object with more properties (`extra`'s, required as there). `inner` must be an
/// inline object (derived struct schemas are).
pub(crate) fn with_fields(inner: RefOr<Schema>, extra: &[(&str, RefOr<Schema>)]) -> RefOr<Schema> {
    let RefOr::T(Schema::Object(mut object)) = inner else {
        // Only reached if a derived schema stops being an inline object: the document stays
        // valid, and the unit tests below fail on the missing fields.
        return inner;
    };
    for (name, schema) in extra.iter().rev() {
        object.properties.insert((*name).to_owned(), schema.clone());
        object.required.insert(0, (*name).to_owned());
    }
    RefOr::T(Schema::Object(object))
}

/// A string property with one allowed value (a tag).
fn constant(value: &str) -> RefOr<Schema> {
    RefOr::T(Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some([value]))
            .build(),
    ))
}

/// A string property.
pub(crate) fn string(description: &str) -> RefOr<Schema> {
    RefOr::T(Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(description))
            .build(),
    ))
}

fn reference(component: &str) -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(component))
}

/// The schema of an internally tagged enum (`tag` names the variant): `oneOf` the variants'
/// components, with a discriminator mapping each tag value to its component.
pub(crate) fn tagged_enum(tag: &str, description: &str, variants: &[Tagged]) -> RefOr<Schema> {
    let mut discriminator = Discriminator::new(tag);
    for v in variants {
        discriminator.mapping.insert(
            v.value.to_owned(),
            format!("#/components/schemas/{}", v.component),
        );
    }
    let mut one_of = OneOfBuilder::new()
        .description(Some(description))
        .discriminator(Some(discriminator));
    for v in variants {
        one_of = one_of.item(reference(v.component));
    }
    RefOr::T(Schema::OneOf(one_of.build()))
}

/// The components [`tagged_enum`] refers to.
pub(crate) fn tagged_components(tag: &str, variants: Vec<Tagged>, out: &mut Components) {
    for v in variants {
        let component = with_fields(v.inner, &[(tag, constant(v.value))]);
        out.push((v.component.to_owned(), component));
    }
}

/// The schema of an untagged enum whose variants are the named `components`.
pub(crate) fn untagged_enum(description: &str, components: &[&str]) -> RefOr<Schema> {
    let mut one_of = OneOfBuilder::new().description(Some(description));
    for c in components {
        one_of = one_of.item(reference(c));
    }
    RefOr::T(Schema::OneOf(one_of.build()))
}

#[cfg(test)]
mod tests {
    use utoipa::{PartialSchema, ToSchema};

    use super::*;
    use crate::model::Architecture;
    use crate::protocol::inference::{ImagePrediction, Prediction};
    use crate::stats::ColumnSummary;

    fn json(schema: &RefOr<Schema>) -> serde_json::Value {
        serde_json::to_value(schema).unwrap()
    }

    fn components<T: ToSchema>() -> serde_json::Map<String, serde_json::Value> {
        let mut out = Components::new();
        T::schemas(&mut out);
        out.iter().map(|(k, v)| (k.clone(), json(v))).collect()
    }

    #[test]
    fn tagged_enums_are_a_discriminated_one_of_named_objects() {
        for (schema, parts, tags) in [
            (
                json(&Architecture::schema()),
                components::<Architecture>(),
                [("mlp", "MlpArchitecture"), ("cnn", "CnnArchitecture")],
            ),
            (
                json(&ColumnSummary::schema()),
                components::<ColumnSummary>(),
                [
                    ("numeric", "NumericColumnSummary"),
                    ("categorical", "CategoricalColumnSummary"),
                ],
            ),
        ] {
            assert_eq!(schema["discriminator"]["propertyName"], "kind", "{schema}");
            for (i, (value, component)) in tags.iter().enumerate() {
                let target = format!("#/components/schemas/{component}");
                assert_eq!(schema["oneOf"][i]["$ref"], target.as_str());
                assert_eq!(schema["discriminator"]["mapping"][value], target.as_str());
                let object = &parts[*component];
                assert_eq!(object["type"], "object", "{object}");
                assert_eq!(object["properties"]["kind"]["enum"][0], *value);
                assert!(
                    object["required"]
                        .as_array()
                        .unwrap()
                        .contains(&"kind".into()),
                    "{object}"
                );
                // The variant's own fields are there too (at least one besides the tag).
                assert!(object["properties"].as_object().unwrap().len() > 1);
            }
        }
    }

    #[test]
    fn a_flattened_prediction_is_one_of_complete_objects() {
        let parts = components::<ImagePrediction>();
        assert_eq!(
            json(&ImagePrediction::schema())["oneOf"][0]["$ref"],
            "#/components/schemas/ImageClassPrediction"
        );
        for name in ["ImageClassPrediction", "ImageValuePrediction"] {
            let required = parts[name]["required"].as_array().unwrap();
            for field in ["model_name", "model_version"] {
                assert!(required.contains(&field.into()), "{name}: {required:?}");
            }
        }
        assert!(parts["ImageClassPrediction"]["properties"]["probabilities"].is_object());
        assert!(parts["ImageValuePrediction"]["properties"]["value"].is_object());
        let rows = json(&Prediction::schema());
        assert_eq!(
            rows["oneOf"][1]["$ref"],
            "#/components/schemas/ValuePrediction"
        );
    }
}
