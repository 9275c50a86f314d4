//! What a model predicts.

use serde::{Deserialize, Serialize};

/// The learning task of a model, inferred from the target column or chosen by the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Two classes; one output logit, probability of the second label through a sigmoid.
    BinaryClassification,
    /// Three or more classes; one logit per label, probabilities through a softmax.
    MulticlassClassification,
    /// A real value; one linear output.
    Regression,
}

impl Task {
    /// True for binary and multiclass classification.
    pub fn is_classification(self) -> bool {
        !matches!(self, Task::Regression)
    }

    /// Width of the model's output for `num_labels` labels.
    pub fn output_dim(self, num_labels: usize) -> usize {
        match self {
            Task::MulticlassClassification => num_labels,
            _ => 1,
        }
    }
}
