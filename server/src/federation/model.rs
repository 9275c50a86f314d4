//! What a group trains: its model template, the hyper-parameters sent to clients, and the
//! creation request. The wire types live in [`b3o_models::protocol`] (shared with the
//! clients) and are re-exported here; this module adds what only the server does with them:
//! the weight layout from the template (explicit for `custom` templates, from `b3o_models`'
//! [`ModelSpec`] for the image CNN and, once the members' column summaries are merged, the
//! tabular MLP) and the initial weights.

use b3o_models::model::{Activation, Architecture, CnnConfig, ModelSpec};
use b3o_models::preprocess::{PreprocessOptions, PreprocessSpec};
pub use b3o_models::protocol::*;
use b3o_models::stats::Summary;
use b3o_models::tabular::Schema;
use b3o_models::task::Task;
use b3o_models::weights::WeightLayout;
use rand::{Rng, SeedableRng};

use crate::strategy::StrategyConfig;

/// The image CNN (28x28 greyscale inputs) over `labels`.
pub fn image_spec(labels: &[String]) -> ModelSpec {
    ModelSpec {
        architecture: Architecture::Cnn(CnnConfig::default()),
        preprocessing: None,
        task: Task::MulticlassClassification,
        labels: labels.to_vec(),
        input_shape: vec![1, 28, 28],
        ood: None,
    }
}

/// The tabular MLP for `schema`, its preprocessing built from the members' merged summaries,
/// and that merged summary (the versions' drift reference). Errors are phrased for the
/// group's owner.
pub fn tabular_spec(
    schema: &Schema,
    hidden: Option<&[usize]>,
    summaries: &[Summary],
) -> Result<(ModelSpec, Summary), String> {
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
    Ok((spec, merged))
}

/// Small seeded uniform values in [-0.1, 0.1): a neutral start for custom layouts.
pub fn initial_weights(layout: &WeightLayout, seed: u64) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..layout.num_params())
        .map(|_| rng.random_range(-0.1f32..0.1))
        .collect()
}

/// `POST /api/groups` with the server's typed strategy.
pub type CreateGroup = b3o_models::protocol::CreateGroup<StrategyConfig>;

impl ValidateStrategy for StrategyConfig {
    fn validate_strategy(&self) -> Result<(), String> {
        self.validate().map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use b3o_models::weights::TensorSpec;

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
        image_spec(&["a".into(), "b".into()]).validate().unwrap();
        assert!(image_spec(&["a".into(), "b".into()]).layout().num_params() > 0);
    }
}
