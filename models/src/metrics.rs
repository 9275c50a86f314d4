//! Evaluation metrics computed from model outputs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Metrics of a model on a dataset. Loss is binary cross-entropy, cross-entropy, or the mean
/// squared error in standardised units, matching the training loss.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Metrics {
    pub num_samples: u64,
    pub loss: f64,
    /// Classification only.
    pub accuracy: Option<f64>,
    /// Binary classification only (`None` when the data holds a single class).
    pub roc_auc: Option<f64>,
}

impl Metrics {
    /// The metrics as the name → value map of [`crate::weights::UpdateMeta::metrics`].
    pub fn to_map(&self) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::from([("loss".to_string(), self.loss)]);
        if let Some(a) = self.accuracy {
            m.insert("accuracy".into(), a);
        }
        if let Some(a) = self.roc_auc {
            m.insert("roc_auc".into(), a);
        }
        m
    }
}

/// Area under the ROC curve of scores for labels (1.0 = positive), ties counted half
/// (the Mann-Whitney statistic). `None` if either class is absent.
pub fn roc_auc(scores: &[f32], labels: &[f32]) -> Option<f64> {
    let mut pairs: Vec<(f32, bool)> = scores
        .iter()
        .zip(labels)
        .map(|(&s, &l)| (s, l > 0.5))
        .collect();
    let positives = pairs.iter().filter(|p| p.1).count();
    let negatives = pairs.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Sum of (average, 1-based) ranks of the positives.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < pairs.len() {
        let mut j = i;
        while j < pairs.len() && pairs[j].0 == pairs[i].0 {
            j += 1;
        }
        let avg_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum += avg_rank * pairs[i..j].iter().filter(|p| p.1).count() as f64;
        i = j;
    }
    let p = positives as f64;
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * negatives as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_known_cases() {
        assert_eq!(roc_auc(&[0.1, 0.2, 0.8, 0.9], &[0., 0., 1., 1.]), Some(1.0));
        assert_eq!(roc_auc(&[0.9, 0.8, 0.2, 0.1], &[0., 0., 1., 1.]), Some(0.0));
        assert_eq!(roc_auc(&[0.5, 0.5, 0.5, 0.5], &[0., 1., 0., 1.]), Some(0.5));
        // sklearn.metrics.roc_auc_score([0,0,1,1],[0.1,0.4,0.35,0.8]) == 0.75
        assert_eq!(
            roc_auc(&[0.1, 0.4, 0.35, 0.8], &[0., 0., 1., 1.]),
            Some(0.75)
        );
        assert_eq!(roc_auc(&[0.1, 0.2], &[1., 1.]), None);
    }
}
