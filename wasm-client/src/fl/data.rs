//! The member's own data: read here, summarised and turned into model inputs here, never sent.
//!
//! Tabular groups take a CSV table: its column summaries ([`Summary`]) are what the
//! statistics phase shares, and once the group's preprocessing is known the rows become model
//! inputs. Image groups take labelled pictures (a folder with one subfolder per class
//! natively, `(label, file name, bytes)` in the browser), or ready model inputs (the
//! simulator's MNIST partitions).

use b3o_models::Dataset;
use b3o_models::image::{SIDE, decode_image};
use b3o_models::model::ModelSpec;
use b3o_models::monitor::image_reference;
use b3o_models::protocol::ModelTemplate;
use b3o_models::stats::Summary;
#[cfg(not(target_arch = "wasm32"))]
use b3o_models::tabular::{CsvReader, read_table};
use b3o_models::tabular::{Table, TabularError, read_csv};

/// Why local data cannot be used for this group.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    #[error("reading the CSV: {0}")]
    Csv(#[from] TabularError),
    #[error("image `{file}`: {message}")]
    Image { file: String, message: String },
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    /// The data does not fit what the group trains.
    #[error("{0}")]
    Mismatch(String),
    #[error("preparing the rows for the model: {0}")]
    Prepare(String),
}

/// One picture and its class.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledImage {
    pub label: String,
    /// `SIDE * SIDE` values in `[0, 1]`.
    pub pixels: Vec<f32>,
}

/// What a member trains on.
#[derive(Debug, Clone, PartialEq)]
pub enum LocalData {
    /// A CSV table, for tabular groups.
    Table(Table),
    /// Labelled 28x28 pictures, for image groups.
    Images(Vec<LabelledImage>),
    /// Model inputs whose targets index `labels` (image groups).
    Inputs {
        dataset: Dataset,
        labels: Vec<String>,
    },
}

impl LocalData {
    /// A CSV file's bytes, read by the one CSV reader (`b3o_models::tabular::CsvReader`).
    pub fn from_csv(bytes: &[u8]) -> Result<LocalData, DataError> {
        Ok(LocalData::Table(read_csv(bytes)?))
    }

    /// Decodes `(label, file name, bytes)` triples (PNG or JPEG).
    pub fn from_images(
        files: impl IntoIterator<Item = (String, String, Vec<u8>)>,
    ) -> Result<LocalData, DataError> {
        let mut images = Vec::new();
        for (label, file, bytes) in files {
            let pixels = decode_image(&bytes).map_err(|e| DataError::Image {
                file,
                message: e.to_string(),
            })?;
            images.push(LabelledImage { label, pixels });
        }
        if images.is_empty() {
            return Err(DataError::Mismatch("no images".into()));
        }
        Ok(LocalData::Images(images))
    }

    /// A CSV file, or a folder with one subfolder of PNG/JPEG pictures per class.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(path: &std::path::Path) -> Result<LocalData, DataError> {
        let io = |e: std::io::Error| DataError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        if path.is_dir() {
            return load_image_folder(path);
        }
        // Streamed through the one CSV reader: the file is not held twice in memory.
        let file = std::io::BufReader::new(std::fs::File::open(path).map_err(io)?);
        Ok(LocalData::Table(read_table(CsvReader::new(file)?)?))
    }

    /// Rows or pictures.
    pub fn len(&self) -> usize {
        match self {
            LocalData::Table(t) => t.n_rows,
            LocalData::Images(i) => i.len(),
            LocalData::Inputs { dataset, .. } => dataset.n_rows,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks that the data fits the group's model, naming what is missing.
    pub fn check(&self, template: &ModelTemplate) -> Result<(), DataError> {
        match (self, template) {
            (LocalData::Table(table), ModelTemplate::Tabular { schema, .. }) => {
                let mut missing: Vec<&str> = schema
                    .features
                    .iter()
                    .map(|f| f.name.as_str())
                    .filter(|n| table.column(n).is_none())
                    .collect();
                if table.column(&schema.target.name).is_none() {
                    missing.push(&schema.target.name);
                }
                if missing.is_empty() {
                    Ok(())
                } else {
                    Err(DataError::Mismatch(format!(
                        "the file lacks the group's column(s): {}",
                        missing.join(", ")
                    )))
                }
            }
            (LocalData::Images(images), ModelTemplate::ImageCnn { labels }) => {
                let mut unknown: Vec<&str> = images
                    .iter()
                    .map(|i| i.label.as_str())
                    .filter(|l| !labels.iter().any(|g| g == l))
                    .collect();
                unknown.sort_unstable();
                unknown.dedup();
                if unknown.is_empty() {
                    Ok(())
                } else {
                    Err(DataError::Mismatch(format!(
                        "class(es) {} are not among the group's labels ({})",
                        unknown.join(", "),
                        labels.join(", ")
                    )))
                }
            }
            (
                LocalData::Inputs {
                    dataset,
                    labels: ours,
                },
                ModelTemplate::ImageCnn { labels },
            ) => {
                if dataset.row_len != SIDE * SIDE {
                    return Err(DataError::Mismatch(format!(
                        "inputs have {} values, the image model takes {}",
                        dataset.row_len,
                        SIDE * SIDE
                    )));
                }
                match ours.iter().find(|l| !labels.contains(l)) {
                    Some(l) => Err(DataError::Mismatch(format!(
                        "class `{l}` is not among the group's labels"
                    ))),
                    None => Ok(()),
                }
            }
            (_, ModelTemplate::Tabular { .. }) => Err(DataError::Mismatch(
                "this group trains on a table: give a CSV file".into(),
            )),
            (_, ModelTemplate::ImageCnn { .. }) => Err(DataError::Mismatch(
                "this group trains on images: give a folder with one subfolder per class".into(),
            )),
            (_, ModelTemplate::Custom { .. }) => Err(DataError::Mismatch(
                "this group trains a custom model, which this client cannot train".into(),
            )),
        }
    }

    /// What the statistics phase shares, from every local row: a tabular group's column
    /// summaries; an image group's per-image statistics and label counts (the version's drift
    /// reference, [`b3o_models::monitor::image_reference`]). Never a row or a picture.
    pub fn summary(&self, template: &ModelTemplate) -> Result<Option<Summary>, DataError> {
        match (self, template) {
            (LocalData::Table(table), ModelTemplate::Tabular { schema, .. }) => {
                Ok(Some(Summary::from_table(table, schema)?))
            }
            (LocalData::Images(images), ModelTemplate::ImageCnn { .. }) => Ok(Some(
                image_reference(images.iter().map(|i| (&i.pixels[..], i.label.as_str()))),
            )),
            (LocalData::Inputs { dataset, labels }, ModelTemplate::ImageCnn { .. }) => {
                let pairs = dataset
                    .features
                    .chunks_exact(dataset.row_len.max(1))
                    .zip(&dataset.targets)
                    .filter_map(|(pixels, &t)| Some((pixels, labels.get(t as usize)?.as_str())));
                Ok(Some(image_reference(pairs)))
            }
            _ => Ok(None),
        }
    }

    /// Model inputs for `spec`, in local row order.
    pub fn dataset(&self, spec: &ModelSpec) -> Result<Dataset, DataError> {
        let index_of = |label: &str| {
            spec.labels
                .iter()
                .position(|l| l == label)
                .map(|i| i as f32)
                .ok_or_else(|| {
                    DataError::Mismatch(format!("class `{label}` is not among the model's labels"))
                })
        };
        match self {
            LocalData::Table(table) => {
                let prep = spec.preprocessing.as_ref().ok_or_else(|| {
                    DataError::Mismatch("this group's model does not take table rows".into())
                })?;
                Dataset::from_table(prep, table).map_err(|e| DataError::Prepare(e.to_string()))
            }
            LocalData::Images(images) => {
                let mut features = Vec::with_capacity(images.len() * SIDE * SIDE);
                let mut targets = Vec::with_capacity(images.len());
                for image in images {
                    features.extend_from_slice(&image.pixels);
                    targets.push(index_of(&image.label)?);
                }
                Dataset::new(features, targets, SIDE * SIDE)
                    .map_err(|e| DataError::Prepare(e.to_string()))
            }
            LocalData::Inputs { dataset, labels } => {
                let map: Vec<f32> = labels
                    .iter()
                    .map(|l| index_of(l))
                    .collect::<Result<_, _>>()?;
                let mut out = dataset.clone();
                for t in &mut out.targets {
                    *t = *map
                        .get(*t as usize)
                        .ok_or_else(|| DataError::Prepare(format!("target {t} has no label")))?;
                }
                Ok(out)
            }
        }
    }
}

/// A folder of class subfolders (`cats/1.png`, `dogs/a.jpg`, ...): each subfolder's name is
/// the class of the pictures in it. Hidden entries and other files are skipped.
#[cfg(not(target_arch = "wasm32"))]
pub fn load_image_folder(root: &std::path::Path) -> Result<LocalData, DataError> {
    let io = |path: &std::path::Path, e: std::io::Error| DataError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let mut classes: Vec<_> = std::fs::read_dir(root)
        .map_err(|e| io(root, e))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir() && !is_hidden(p))
        .collect();
    classes.sort();
    let mut files = Vec::new();
    for class in &classes {
        let label = class
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut entries: Vec<_> = std::fs::read_dir(class)
            .map_err(|e| io(class, e))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file() && !is_hidden(p) && is_picture(p))
            .collect();
        entries.sort();
        for path in entries {
            let bytes = std::fs::read(&path).map_err(|e| io(&path, e))?;
            files.push((label.clone(), path.display().to_string(), bytes));
        }
    }
    if files.is_empty() {
        return Err(DataError::Io {
            path: root.display().to_string(),
            message: "no PNG or JPEG pictures in class subfolders (e.g. cats/1.png)".into(),
        });
    }
    LocalData::from_images(files)
}

#[cfg(not(target_arch = "wasm32"))]
fn is_hidden(path: &std::path::Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

#[cfg(not(target_arch = "wasm32"))]
fn is_picture(path: &std::path::Path) -> bool {
    path.extension().is_some_and(|e| {
        let e = e.to_string_lossy().to_ascii_lowercase();
        matches!(e.as_str(), "png" | "jpg" | "jpeg")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use b3o_models::tabular::{InferOptions, infer_schema};

    fn table() -> Table {
        read_csv(b"age,city,y\n30,A,1\n40,B,0\n50,A,1\n").unwrap()
    }

    #[test]
    fn a_table_fits_a_tabular_group_with_its_columns() {
        let t = table();
        let schema = infer_schema(
            &t,
            &InferOptions {
                target: Some("y".into()),
                ..Default::default()
            },
        )
        .unwrap();
        let template = ModelTemplate::Tabular {
            schema: schema.clone(),
            hidden: None,
        };
        let data = LocalData::Table(t);
        data.check(&template).unwrap();
        assert!(data.summary(&template).unwrap().is_some());
        let other = LocalData::Table(read_csv(b"age,y\n1,0\n").unwrap());
        let err = other.check(&template).unwrap_err().to_string();
        assert!(err.contains("city"), "{err}");
        let images = ModelTemplate::ImageCnn {
            labels: vec!["a".into(), "b".into()],
        };
        assert!(
            data.check(&images)
                .unwrap_err()
                .to_string()
                .contains("images")
        );
    }

    /// Issue #16: a local training file is read by the one CSV reader, streamed from disk
    /// (semicolons, CRLF, a BOM, a quoted separator), and its errors name the line.
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn a_training_file_is_streamed_through_the_csv_reader() {
        let dir = std::env::temp_dir().join(format!("b3o-data-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("train.csv");
        std::fs::write(
            &path,
            "\u{feff}age;\"city; area\";y\r\n30;A;1\r\n\r\n40;\"B;C\";0\r\n",
        )
        .unwrap();
        let LocalData::Table(t) = LocalData::load(&path).unwrap() else {
            panic!("not a table");
        };
        assert_eq!(t.names(), ["age", "city; area", "y"]);
        assert_eq!(t.columns[1].values, [Some("A".into()), Some("B;C".into())]);
        std::fs::write(&path, "age,y\n30,1\n\n40\n").unwrap();
        let e = LocalData::load(&path).unwrap_err().to_string();
        assert_eq!(
            e,
            "reading the CSV: line 4 (row 2): expected 2 fields like the header, found 1"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn image_classes_must_be_group_labels() {
        let data = LocalData::Images(vec![
            LabelledImage {
                label: "cat".into(),
                pixels: vec![0.0; SIDE * SIDE],
            },
            LabelledImage {
                label: "emu".into(),
                pixels: vec![1.0; SIDE * SIDE],
            },
        ]);
        let template = ModelTemplate::ImageCnn {
            labels: vec!["cat".into(), "dog".into()],
        };
        assert!(
            data.check(&template)
                .unwrap_err()
                .to_string()
                .contains("emu")
        );
        let spec = ModelSpec {
            labels: vec!["dog".into(), "cat".into(), "emu".into()],
            ..ModelSpec::mnist_cnn()
        };
        let d = data.dataset(&spec).unwrap();
        assert_eq!((d.n_rows, d.targets.clone()), (2, vec![1.0, 2.0]));
    }
}
