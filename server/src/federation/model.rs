//! What a group trains: its model template, the hyper-parameters sent to clients, and the
//! creation request. The weight layout comes from the template: explicit for `custom`
//! templates (the simulator, tests, bring-your-own models), from `b3o_models`' [`ModelSpec`]
//! for the image CNN and, once the members' column summaries are merged, the tabular MLP.

use std::collections::BTreeSet;

use b3o_models::model::{Activation, Architecture, CnnConfig, ModelSpec};
use b3o_models::preprocess::{PreprocessOptions, PreprocessSpec};
use b3o_models::stats::Summary;
use b3o_models::tabular::Schema;
use b3o_models::task::Task;
use b3o_models::weights::{TensorSpec, WeightLayout};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::strategy::StrategyConfig;

/// The most parameters a group's model may have (400 MB of f32).
pub const MAX_PARAMS: usize = 100_000_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ModelTemplate {
    /// An MLP over a CSV whose schema (feature columns and kinds, target and task) the owner's
    /// client inferred from its file. Needs a statistics phase (column summaries from every
    /// ready member) before round 1. `hidden` defaults to B3O's churn network, 128-64-32.
    Tabular {
        schema: Schema,
        #[serde(default)]
        hidden: Option<Vec<usize>>,
    },
    /// The image CNN over the given class labels.
    ImageCnn { labels: Vec<String> },
    /// An explicit list of tensors; initial weights are small seeded random values.
    Custom { layout: WeightLayout },
}

impl ModelTemplate {
    pub fn validate(&self) -> Result<(), String> {
        match self {
            ModelTemplate::Tabular { schema, hidden } => {
                if schema.features.is_empty() {
                    return Err("a tabular model needs at least one feature column".into());
                }
                let names: Vec<String> = schema.features.iter().map(|f| f.name.clone()).collect();
                unique_nonempty("column", &names)?;
                if names.contains(&schema.target.name) {
                    return Err(format!(
                        "target `{}` is also a feature column",
                        schema.target.name
                    ));
                }
                if let Some(hidden) = hidden
                    && (hidden.len() > 16 || hidden.iter().any(|&h| h == 0 || h > 4096))
                {
                    return Err("hidden: at most 16 layers of 1 to 4096 units".into());
                }
                Ok(())
            }
            ModelTemplate::ImageCnn { labels } => {
                if labels.len() < 2 {
                    return Err("an image model needs at least two labels".into());
                }
                unique_nonempty("label", labels)?;
                image_spec(labels).validate().map_err(|e| e.to_string())
            }
            ModelTemplate::Custom { layout } => validate_layout(layout),
        }
    }

    pub fn needs_statistics(&self) -> bool {
        matches!(self, ModelTemplate::Tabular { .. })
    }

    /// The layout, when it is known without the models crate's model spec.
    pub fn layout(&self) -> Option<WeightLayout> {
        match self {
            ModelTemplate::Custom { layout } => Some(layout.clone()),
            _ => None,
        }
    }
}

fn unique_nonempty(what: &str, names: &[String]) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    for n in names {
        if n.trim().is_empty() {
            return Err(format!("a {what} name is empty"));
        }
        if !seen.insert(n) {
            return Err(format!("{what} `{n}` appears twice"));
        }
    }
    Ok(())
}

fn validate_layout(layout: &WeightLayout) -> Result<(), String> {
    if layout.0.is_empty() {
        return Err("the layout has no tensors".into());
    }
    let names: Vec<String> = layout.0.iter().map(|t| t.name.clone()).collect();
    unique_nonempty("tensor", &names)?;
    let mut total: usize = 0;
    for TensorSpec { name, shape } in &layout.0 {
        if shape.len() > 8 || shape.contains(&0) {
            return Err(format!(
                "tensor `{name}` has shape {shape:?}: at most 8 dimensions, none zero"
            ));
        }
        let n = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .filter(|&n| n <= MAX_PARAMS);
        total = n
            .and_then(|n| total.checked_add(n))
            .filter(|&t| t <= MAX_PARAMS)
            .ok_or_else(|| format!("the model has more than {MAX_PARAMS} parameters"))?;
    }
    Ok(())
}

/// The image CNN (28x28 greyscale inputs) over `labels`.
pub fn image_spec(labels: &[String]) -> ModelSpec {
    ModelSpec {
        architecture: Architecture::Cnn(CnnConfig::default()),
        preprocessing: None,
        task: Task::MulticlassClassification,
        labels: labels.to_vec(),
        input_shape: vec![1, 28, 28],
    }
}

/// The tabular MLP for `schema`, its preprocessing built from the members' merged summaries.
/// Errors are phrased for the group's owner.
pub fn tabular_spec(
    schema: &Schema,
    hidden: Option<&[usize]>,
    summaries: &[Summary],
) -> Result<ModelSpec, String> {
    let mut merged = Summary::default();
    for s in summaries {
        merged
            .merge(s)
            .map_err(|e| format!("merging column statistics: {e}"))?;
    }
    let preprocessing = PreprocessSpec::build(schema, &merged, &PreprocessOptions::default())
        .map_err(|e| format!("building preprocessing from the column statistics: {e}"))?;
    let spec = match hidden {
        Some(hidden) => ModelSpec::tabular(preprocessing, hidden.to_vec(), Activation::Relu),
        None => ModelSpec::churn_b3o(preprocessing),
    };
    spec.validate().map_err(|e| e.to_string())?;
    Ok(spec)
}

/// Small seeded uniform values in [-0.1, 0.1): a neutral start for custom layouts.
pub fn initial_weights(layout: &WeightLayout, seed: u64) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..layout.num_params())
        .map(|_| rng.random_range(-0.1f32..0.1))
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Optimizer {
    Sgd,
    Adam,
}

/// Local training settings, sent to clients with every round's config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hyperparameters {
    pub rounds: u32,
    #[serde(default = "one")]
    pub local_epochs: u32,
    #[serde(default = "batch")]
    pub batch_size: u32,
    #[serde(default = "adam")]
    pub optimizer: Optimizer,
    #[serde(default = "lr")]
    pub lr: f64,
}

fn one() -> u32 {
    1
}
fn batch() -> u32 {
    32
}
fn adam() -> Optimizer {
    Optimizer::Adam
}
fn lr() -> f64 {
    1e-3
}

impl Hyperparameters {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=10_000).contains(&self.rounds) {
            return Err(format!("rounds must be 1..=10000, got {}", self.rounds));
        }
        if !(1..=1000).contains(&self.local_epochs) {
            return Err(format!(
                "local_epochs must be 1..=1000, got {}",
                self.local_epochs
            ));
        }
        if !(1..=65_536).contains(&self.batch_size) {
            return Err(format!(
                "batch_size must be 1..=65536, got {}",
                self.batch_size
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0 && self.lr <= 10.0) {
            return Err(format!("lr must be in (0, 10], got {}", self.lr));
        }
        Ok(())
    }
}

/// `POST /api/groups`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub model: ModelTemplate,
    pub hyperparameters: Hyperparameters,
    #[serde(default)]
    pub strategy: StrategyConfig,
    #[serde(default = "min_clients")]
    pub min_clients: u32,
    #[serde(default = "fraction")]
    pub fraction_fit: f64,
    #[serde(default = "deadline")]
    pub round_deadline_secs: u32,
    /// Optional bound on the L2 norm of `update - global model`.
    #[serde(default)]
    pub max_update_norm: Option<f64>,
}

fn min_clients() -> u32 {
    2
}
fn fraction() -> f64 {
    1.0
}
fn deadline() -> u32 {
    600
}

impl CreateGroup {
    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() || self.name.len() > 200 {
            return Err("name must be 1 to 200 characters".into());
        }
        if self.description.len() > 10_000 {
            return Err("description must be at most 10000 characters".into());
        }
        self.model.validate().map_err(|e| format!("model: {e}"))?;
        self.hyperparameters
            .validate()
            .map_err(|e| format!("hyperparameters: {e}"))?;
        self.strategy
            .validate()
            .map_err(|e| format!("strategy: {e}"))?;
        if !(1..=10_000).contains(&self.min_clients) {
            return Err(format!(
                "min_clients must be 1..=10000, got {}",
                self.min_clients
            ));
        }
        if !(self.fraction_fit > 0.0 && self.fraction_fit <= 1.0) {
            return Err(format!(
                "fraction_fit must be in (0, 1], got {}",
                self.fraction_fit
            ));
        }
        if !(1..=7 * 24 * 3600).contains(&self.round_deadline_secs) {
            return Err("round_deadline_secs must be 1 second to 7 days".into());
        }
        if let Some(n) = self.max_update_norm
            && !(n.is_finite() && n > 0.0)
        {
            return Err(format!("max_update_norm must be a number > 0, got {n}"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_checked() {
        let ok = WeightLayout(vec![TensorSpec::new("w", vec![2, 3])]);
        assert!(validate_layout(&ok).is_ok());
        let dup = WeightLayout(vec![
            TensorSpec::new("w", vec![2]),
            TensorSpec::new("w", vec![2]),
        ]);
        assert!(validate_layout(&dup).unwrap_err().contains("twice"));
        let huge = WeightLayout(vec![TensorSpec::new("w", vec![usize::MAX, 2])]);
        assert!(validate_layout(&huge).unwrap_err().contains("more than"));
        let zero = WeightLayout(vec![TensorSpec::new("w", vec![0])]);
        assert!(validate_layout(&zero).is_err());
    }

    #[test]
    fn initial_weights_are_deterministic() {
        let l = WeightLayout(vec![TensorSpec::new("w", vec![4])]);
        assert_eq!(initial_weights(&l, 7), initial_weights(&l, 7));
        assert_eq!(initial_weights(&l, 7).len(), 4);
    }

    #[test]
    fn the_image_template_builds_a_valid_cnn() {
        let t = ModelTemplate::ImageCnn {
            labels: vec!["cat".into(), "dog".into()],
        };
        t.validate().unwrap();
        assert!(image_spec(&["a".into(), "b".into()]).layout().num_params() > 0);
    }
}
