//! Out-of-distribution signals: a warning, never a refusal, when an input is far from what a
//! model was trained on (issue #21). A digits model answers "2, 65% sure" for a sneaker; these
//! checks say that the sneaker does not look like the training images.
//!
//! - **Tabular** (no calibration needed: the [`PreprocessSpec`] is the training summary): a
//!   numeric cell whose z-score `(x - mean) / std` against the training mean and standard
//!   deviation is beyond [`Z_BOUND`] in absolute value, and a category outside the training
//!   vocabulary (never seen in training, or too rare there to get its own input). The warning
//!   names the column. Computed from the model inputs, so CSV, JSON rows and batch jobs agree.
//! - **Images** (with an [`ImageCalibration`] in the model spec, `ModelSpec::ood`): the image's
//!   mean intensity outside the training images' range, ink in the outer frame
//!   ([`FRAME`] pixels) beyond the training images' share, or a most-likely-class
//!   probability below the calibrated floor. [`calibrate_images`] computes the figures from
//!   training images (quantiles, see its docs). A model without calibration gets no image
//!   warning.
//!
//! Warnings are sentences for people; every check is a pure function of the input and the
//! spec, so the browser and the server give the same warnings for the same input.

use serde::{Deserialize, Serialize};

use crate::preprocess::{FeatureTransform, PreprocessSpec};

/// A numeric cell more than this many training standard deviations from the training mean
/// is out of distribution. For a normal distribution 1 value in 1.7 million is that far; real
/// columns are skewed (in the 10,000 rows of the churn data, 2 ages are 5.06 standard deviations out), so a
/// bound of 5 warns on a handful of genuine rows and on every unit mistake (a balance in
/// cents, an age in months).
pub const Z_BOUND: f64 = 5.0;

/// Width in pixels of the image frame whose ink [`ImageStats::border_share`] measures: MNIST
/// digits are centred in a 20x20 box of the 28x28 field, so their outer 3 pixels are nearly
/// always empty, while photos of objects fill the frame.
pub const FRAME: usize = 3;

/// What an image model's training images looked like, for the out-of-distribution checks
/// (see the module docs). Stored in the model spec (`ModelSpec::ood`); every field is
/// checked to be finite and in `[0, 1]`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageCalibration {
    /// Lowest mean pixel intensity (in `[0, 1]`, ink is 1) of a training image: a low quantile.
    pub min_mean_intensity: f32,
    /// Highest mean pixel intensity of a training image: a high quantile.
    pub max_mean_intensity: f32,
    /// Largest share of an image's ink in its outer [`FRAME`] pixels among training images: a
    /// high quantile.
    pub max_border_share: f32,
    /// A most-likely-class probability below this is reported as unsure; `None`: no such check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_confidence: Option<f32>,
    /// Where the figures come from (data set, images, quantiles), for people.
    #[serde(default)]
    pub source: String,
}

impl ImageCalibration {
    /// `Err` naming the first field that is not finite in `[0, 1]`, or a reversed range.
    pub fn check(&self) -> Result<(), String> {
        let fields = [
            ("min_mean_intensity", Some(self.min_mean_intensity)),
            ("max_mean_intensity", Some(self.max_mean_intensity)),
            ("max_border_share", Some(self.max_border_share)),
            ("min_confidence", self.min_confidence),
        ];
        for (name, v) in fields {
            if let Some(v) = v
                && !(v.is_finite() && (0.0..=1.0).contains(&v))
            {
                return Err(format!(
                    "ood calibration: `{name}` must be in [0, 1], got {v}"
                ));
            }
        }
        if self.min_mean_intensity > self.max_mean_intensity {
            return Err(
                "ood calibration: `min_mean_intensity` is above `max_mean_intensity`".into(),
            );
        }
        Ok(())
    }
}

/// The statistics of one image the checks compare (pixels in `[0, 1]`, ink is 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageStats {
    /// Mean pixel intensity.
    pub mean_intensity: f32,
    /// Share of the ink (sum of intensities) in the outer [`FRAME`] pixels; 0 for a blank image.
    pub border_share: f32,
}

/// [`ImageStats`] of a square image of `pixels` (row-major; a non-square one is read as rows
/// of `side = sqrt(len)`, the rest ignored for the frame).
pub fn image_stats(pixels: &[f32]) -> ImageStats {
    let side = pixels.len().isqrt();
    let (mut total, mut border) = (0.0f64, 0.0f64);
    for (i, &p) in pixels.iter().enumerate() {
        let p = if p.is_finite() {
            p.clamp(0.0, 1.0)
        } else {
            0.0
        } as f64;
        total += p;
        let (r, c) = (i / side.max(1), i % side.max(1));
        if r < FRAME || c < FRAME || r + FRAME >= side || c + FRAME >= side {
            border += p;
        }
    }
    ImageStats {
        mean_intensity: (total / pixels.len().max(1) as f64) as f32,
        border_share: if total > 0.0 {
            (border / total) as f32
        } else {
            0.0
        },
    }
}

/// The warnings for one image given its most-likely-class probability (if any).
pub fn image_warnings(
    cal: &ImageCalibration,
    pixels: &[f32],
    max_probability: Option<f32>,
) -> Vec<String> {
    let s = image_stats(pixels);
    let mut out = Vec::new();
    if s.mean_intensity > cal.max_mean_intensity {
        out.push(format!(
            "out of distribution: the image has more ink than the training images (mean intensity {:.2}, training {:.2} to {:.2})",
            s.mean_intensity, cal.min_mean_intensity, cal.max_mean_intensity
        ));
    } else if s.mean_intensity < cal.min_mean_intensity {
        out.push(format!(
            "out of distribution: the image has less ink than the training images (mean intensity {:.2}, training {:.2} to {:.2})",
            s.mean_intensity, cal.min_mean_intensity, cal.max_mean_intensity
        ));
    }
    if s.border_share > cal.max_border_share {
        out.push(format!(
            "out of distribution: {:.0}% of the ink is in the outer {FRAME} pixels (training images: at most {:.0}%); the training images are centred with an empty margin",
            100.0 * s.border_share,
            100.0 * cal.max_border_share
        ));
    }
    if let (Some(floor), Some(p)) = (cal.min_confidence, max_probability)
        && p < floor
    {
        out.push(format!(
            "unsure: the most likely class has probability {p:.2}, below {floor:.2} (rare on the training images)"
        ));
    }
    out
}

/// The warnings for one row of a tabular model's inputs (`prep.input_dim()` values, as
/// [`PreprocessSpec::transform`] makes them). Inputs of another length give no warning.
pub fn tabular_warnings(prep: &PreprocessSpec, inputs: &[f32]) -> Vec<String> {
    let mut out = Vec::new();
    if inputs.len() != prep.input_dim() {
        return out;
    }
    let mut at = 0;
    for f in &prep.features {
        let width = f.width();
        let cells = &inputs[at..at + width];
        at += width;
        match f {
            FeatureTransform::Standardize {
                column, mean, std, ..
            } => {
                let z = f64::from(cells[0]);
                if !z.is_finite() || z.abs() > Z_BOUND {
                    let value = z * std + mean;
                    out.push(format!(
                        "out of distribution: column `{column}`: {} is {} standard deviations from the training mean {} (bound {Z_BOUND})",
                        short(value),
                        short(z.abs()),
                        short(*mean),
                    ));
                }
            }
            FeatureTransform::OneHot {
                column, vocabulary, ..
            } => {
                if !vocabulary.is_empty() && cells.last().is_some_and(|&o| o > 0.5) {
                    out.push(format!(
                        "out of distribution: column `{column}`: a category the model was not trained on (never seen in training, or too rare there)"
                    ));
                }
            }
        }
    }
    out
}

/// A number for a sentence: 4 significant figures at most, no exponent for everyday sizes.
fn short(x: f64) -> String {
    if !x.is_finite() {
        return "a value".into();
    }
    if x.abs() >= 1e6 || (x != 0.0 && x.abs() < 1e-3) {
        return format!("{x:.3e}");
    }
    let text = format!("{x:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    text.to_string()
}

/// The `q` quantile (in `[0, 1]`, nearest rank) of `values`; `None` when empty.
fn quantile(values: &mut [f32], q: f64) -> Option<f32> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f32::total_cmp);
    let rank = ((values.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
    values.get(rank).copied()
}

/// Quantiles [`calibrate_images`] uses: intensity range from the 0.25% to the 99.75% quantile,
/// frame share and confidence at the 99.5% / 0.5% quantile, so each check alone warns on about
/// 0.5% of images like the training ones.
pub const CALIBRATION_QUANTILES: (f64, f64, f64, f64) = (0.0025, 0.9975, 0.995, 0.005);

/// An [`ImageCalibration`] from `n` training images (`pixels`: row-major, `n * side * side`)
/// and, if given, each image's most-likely-class probability. `None` when there are no images.
pub fn calibrate_images(
    pixels: &[f32],
    n: usize,
    max_probabilities: Option<&[f32]>,
    source: &str,
) -> Option<ImageCalibration> {
    if n == 0 || !pixels.len().is_multiple_of(n) {
        return None;
    }
    let row = pixels.len() / n;
    let stats: Vec<ImageStats> = pixels.chunks(row).map(image_stats).collect();
    let (lo, hi, border_q, conf_q) = CALIBRATION_QUANTILES;
    let mut means: Vec<f32> = stats.iter().map(|s| s.mean_intensity).collect();
    let mut borders: Vec<f32> = stats.iter().map(|s| s.border_share).collect();
    let min_confidence = max_probabilities.and_then(|p| quantile(&mut p.to_vec(), conf_q));
    Some(ImageCalibration {
        min_mean_intensity: quantile(&mut means, lo)?,
        max_mean_intensity: quantile(&mut means, hi)?,
        max_border_share: quantile(&mut borders, border_q)?,
        min_confidence,
        source: source.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::{PREPROCESS_VERSION, TargetEncoding};
    use crate::task::Task;

    fn prep() -> PreprocessSpec {
        PreprocessSpec {
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
                labels: vec!["0".into(), "1".into()],
            },
            task: Task::BinaryClassification,
        }
    }

    #[test]
    fn tabular_rule_names_the_column_and_keeps_quiet_in_range() {
        let p = prep();
        // Age 45, France: in distribution.
        assert!(tabular_warnings(&p, &[0.5, 1.0, 0.0, 0.0]).is_empty());
        // Exactly on the bound: still in.
        assert!(tabular_warnings(&p, &[5.0, 1.0, 0.0, 0.0]).is_empty());
        // Age 950 (months?): 91 standard deviations out.
        let w = tabular_warnings(&p, &[91.0, 1.0, 0.0, 0.0]);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("`Age`") && w[0].contains("950") && w[0].contains("91 standard"),
            "{w:?}"
        );
        let w = tabular_warnings(&p, &[-6.0, 0.0, 0.0, 1.0]);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("-20 is 6 standard"), "{w:?}");
        assert!(w[1].contains("`Geography`") && w[1].contains("not trained on"));
        // Overflowed inputs are far too; a wrong length is no warning and no panic.
        assert_eq!(
            tabular_warnings(&p, &[f32::INFINITY, 1.0, 0.0, 0.0]).len(),
            1
        );
        assert_eq!(tabular_warnings(&p, &[f32::NAN, 1.0, 0.0, 0.0]).len(), 1);
        assert!(tabular_warnings(&p, &[100.0]).is_empty());
        // An empty vocabulary puts every value in "other": no signal there.
        let mut empty = p.clone();
        if let FeatureTransform::OneHot { vocabulary, .. } = &mut empty.features[1] {
            vocabulary.clear();
        }
        assert!(tabular_warnings(&empty, &[0.0, 1.0]).is_empty());
    }

    fn digit() -> Vec<f32> {
        // A centred vertical bar: ink only inside the frame.
        let mut px = vec![0.0f32; 28 * 28];
        for r in 6..22 {
            for c in 12..16 {
                px[r * 28 + c] = 1.0;
            }
        }
        px
    }

    #[test]
    fn image_stats_and_rule() {
        let s = image_stats(&digit());
        assert_eq!(s.border_share, 0.0);
        assert!((s.mean_intensity - 64.0 / 784.0).abs() < 1e-6);
        assert_eq!(image_stats(&[0.0; 784]).border_share, 0.0);
        assert_eq!(image_stats(&[]).mean_intensity, 0.0);
        let cal = ImageCalibration {
            min_mean_intensity: 0.04,
            max_mean_intensity: 0.27,
            max_border_share: 0.08,
            min_confidence: Some(0.5),
            source: String::new(),
        };
        cal.check().unwrap();
        assert!(image_warnings(&cal, &digit(), Some(0.99)).is_empty());
        // A trouser-like blob: two legs from top to bottom, a lot of ink, touching the edges.
        let mut blob = vec![0.0f32; 784];
        for r in 0..28 {
            for c in (4..13).chain(15..24) {
                blob[r * 28 + c] = 0.9;
            }
        }
        let w = image_warnings(&cal, &blob, Some(0.82));
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("more ink") && w[1].contains("outer 3 pixels"),
            "{w:?}"
        );
        let w = image_warnings(&cal, &digit(), Some(0.3));
        assert!(w.len() == 1 && w[0].starts_with("unsure"), "{w:?}");
        assert!(image_warnings(&cal, &[0.0; 784], None)[0].contains("less ink"));
        let bad = ImageCalibration {
            max_border_share: f32::NAN,
            ..cal.clone()
        };
        assert!(bad.check().unwrap_err().contains("max_border_share"));
        let reversed = ImageCalibration {
            min_mean_intensity: 0.5,
            ..cal
        };
        assert!(reversed.check().is_err());
    }

    #[test]
    fn calibration_takes_quantiles() {
        let mut px = Vec::new();
        for i in 0..100 {
            let mut d = digit();
            d.iter_mut().for_each(|p| *p *= 0.5 + i as f32 / 200.0);
            px.extend(d);
        }
        let probs: Vec<f32> = (0..100).map(|i| 0.5 + i as f32 / 200.0).collect();
        let cal = calibrate_images(&px, 100, Some(&probs), "test").unwrap();
        cal.check().unwrap();
        assert!(cal.min_mean_intensity < cal.max_mean_intensity);
        assert_eq!(cal.max_border_share, 0.0);
        assert_eq!(cal.min_confidence, Some(0.5));
        assert!(calibrate_images(&[], 0, None, "").is_none());
        assert!(calibrate_images(&[0.0; 5], 2, None, "").is_none());
    }
}
