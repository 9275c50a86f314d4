//! Out-of-distribution warnings on `/predict` (issue #21): inputs unlike the model's training
//! data still get their prediction; these notices say it may be unreliable. Never blocking.
//! Every notice has the CSS hook `.ood-warning`.

use b3o_models::tabular::{CsvOptions, CsvReader, CsvRecord};
use leptos::prelude::*;

/// Name of the column the codeless CSV holds each row's warnings in.
pub const WARNING_COLUMN: &str = "warning";

/// Rows of a predictions CSV with a non-empty `warning` cell; 0 when there is no such column
/// or the CSV cannot be read (as when the input had its own `warning` column: the reader
/// refuses repeated header names).
pub fn warned_rows(csv: &str) -> usize {
    let Ok(mut reader) = CsvReader::with_options(csv.as_bytes(), CsvOptions::default()) else {
        return 0;
    };
    let Some(column) = reader.header().iter().rposition(|h| h == WARNING_COLUMN) else {
        return 0;
    };
    let mut record = CsvRecord::default();
    let mut warned = 0;
    while let Ok(true) = reader.read_record(&mut record) {
        warned += record.get(column).is_some_and(|c| !c.trim().is_empty()) as usize;
    }
    warned
}

/// The notice under a CSV's predictions, if any row was warned about.
pub fn csv_notice(warned: usize, rows: usize) -> Option<AnyView> {
    (warned > 0).then(|| {
        view! {
            <p class="ood-warning" id="csv-ood-warning" role="status" data-rows=warned>
                {format!(
                    "{warned} of {rows} row(s) look unlike the data the model was trained on: \
                     their predictions may be unreliable. The `warning` column says why."
                )}
            </p>
        }
        .into_any()
    })
}

/// The notice under an image's (or a drawing's) prediction, if it was warned about.
pub fn image_notice(id: &'static str, warnings: &[String]) -> Option<AnyView> {
    (!warnings.is_empty()).then(|| {
        let items = warnings
            .iter()
            .map(|w| view! { <li>{w.clone()}</li> })
            .collect_view();
        view! {
            <div class="ood-warning" id=id role="status">
                <p>"This does not look like what the model was trained on: the answer may be meaningless."</p>
                <ul>{items}</ul>
            </div>
        }
        .into_any()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_rows_with_a_warning() {
        let csv = "a,prediction_label,warning\n1,yes,\n2,no,far\n3,no,\"far, away\"\n";
        assert_eq!(warned_rows(csv), 2);
        assert_eq!(warned_rows("a,b\n1,2\n"), 0);
        assert_eq!(warned_rows(""), 0);
    }
}
