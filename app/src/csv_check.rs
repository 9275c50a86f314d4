//! Reading a user's CSV in the page before anything runs: a preview of its first rows, and the
//! mistakes that would make a prediction fail, named by line and column, so that a malformed
//! file is explained here and never sent anywhere.
//!
//! It reads with the project's one CSV reader (`b3o_models::tabular::CsvReader`), so it accepts
//! exactly what the engine and the server accept: `,` `;` tab or `|` as the separator (the most
//! frequent one outside quotes in the header), a UTF-8 BOM, LF / CRLF / CR line endings, quoted
//! fields with `""` escapes and line breaks, trimmed cells, blank lines skipped, and the usual
//! spellings of a missing value. This module only words the reader's findings for a person.

use b3o_models::tabular::{CsvReader, Delimiter, TabularError};

/// How many data rows the preview keeps.
pub const PREVIEW_ROWS: usize = 10;

/// A model's expectations of the CSV (from its package's preprocessing spec).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expected {
    /// Every input column, in the model's order.
    pub columns: Vec<String>,
    /// The columns whose values must be numbers (or missing).
    pub numeric: Vec<String>,
}

/// A readable CSV: its header, first rows and size.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvPreview {
    pub delimiter: char,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub total_rows: usize,
}

/// What is wrong with a CSV, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvProblem {
    /// 1-based line of the file where the faulty record starts.
    pub line: Option<usize>,
    pub column: Option<String>,
    pub message: String,
}

impl std::fmt::Display for CsvProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.line, &self.column) {
            (Some(line), Some(column)) => write!(f, "Line {line}, column “{column}”: ")?,
            (Some(line), None) => write!(f, "Line {line}: ")?,
            (None, Some(column)) => write!(f, "Column “{column}”: ")?,
            (None, None) => {}
        }
        f.write_str(&self.message)
    }
}

fn problem(line: Option<usize>, column: Option<&str>, message: String) -> CsvProblem {
    CsvProblem {
        line,
        column: column.map(str::to_string),
        message,
    }
}

/// The reader's error in words for a person (`delimiter`: the separator, once known).
fn explain(e: TabularError, delimiter: Option<Delimiter>) -> CsvProblem {
    match e {
        TabularError::Empty => problem(None, None, "the file is empty.".into()),
        TabularError::EmptyHeader { line, column } => problem(
            Some(line),
            None,
            format!("column {column} of the header has no name."),
        ),
        TabularError::DuplicateHeader { line, name } => problem(
            Some(line),
            Some(&name),
            "this column name appears twice in the header.".into(),
        ),
        TabularError::RaggedRow {
            line,
            expected,
            found,
            ..
        } => problem(
            Some(line),
            None,
            format!(
                "this row has {found} cells but the header has {expected} columns{}.",
                if delimiter == Some(Delimiter::Comma) {
                    " (a value with a comma in it must be in double quotes)"
                } else {
                    ""
                }
            ),
        ),
        TabularError::UnclosedQuote { line } => problem(
            Some(line),
            None,
            "a quoted field is never closed: a closing quotation mark (\") is missing.".into(),
        ),
        TabularError::TooManyColumns { max } => problem(
            None,
            None,
            format!("the header has more than {max} columns."),
        ),
        TabularError::RecordTooLong { line, max } => problem(
            Some(line),
            None,
            format!("this row is longer than {max} bytes."),
        ),
        TabularError::NoRows => problem(
            None,
            None,
            "the file has a header but no rows of data.".into(),
        ),
        other => problem(None, None, format!("{other}.")),
    }
}

/// Reads `text` and checks it against `expected` (when the model is known): the header names
/// every model column, rows have as many cells as the header, numeric columns hold numbers.
pub fn check(text: &str, expected: Option<&Expected>) -> Result<CsvPreview, CsvProblem> {
    let mut reader = CsvReader::new(text.as_bytes()).map_err(|e| explain(e, None))?;
    let delimiter = reader.delimiter();
    let header = reader.header().to_vec();
    let header_line = reader.header_record().line();
    if let Some(expected) = expected {
        let missing: Vec<String> = expected
            .columns
            .iter()
            .filter(|c| !header.contains(c))
            .map(|c| format!("“{c}”"))
            .collect();
        if !missing.is_empty() {
            let what = if missing.len() == 1 {
                "column"
            } else {
                "columns"
            };
            return Err(problem(
                Some(header_line),
                None,
                // The page lists every column the model reads next to the file picker: name
                // only what is missing here, not the whole list a second time.
                format!(
                    "the header lacks the model's {what} {} (names must match exactly, \
                     capitals included).",
                    missing.join(", "),
                ),
            ));
        }
    }
    let numeric: Vec<usize> = expected
        .map(|e| {
            e.numeric
                .iter()
                .filter_map(|c| header.iter().position(|h| h == c))
                .collect()
        })
        .unwrap_or_default();

    let missing = reader.missing().clone();
    let mut rows = Vec::new();
    for record in reader.by_ref() {
        let record = record.map_err(|e| explain(e, Some(delimiter)))?;
        for &i in &numeric {
            if let Some(cell) = record.value(i, &missing)
                && !cell.parse::<f64>().is_ok_and(f64::is_finite)
            {
                return Err(problem(
                    Some(record.line()),
                    Some(&header[i]),
                    format!("“{cell}” is not a number, and this column holds numbers."),
                ));
            }
        }
        if rows.len() < PREVIEW_ROWS {
            rows.push(record.iter().map(str::to_string).collect());
        }
    }
    let total_rows = reader.rows_read();
    if total_rows == 0 {
        return Err(explain(TabularError::NoRows, Some(delimiter)));
    }
    Ok(CsvPreview {
        delimiter: delimiter.as_char(),
        header,
        rows,
        total_rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn churn() -> Expected {
        Expected {
            columns: vec!["Age".into(), "Geography".into(), "Balance".into()],
            numeric: vec!["Age".into(), "Balance".into()],
        }
    }

    #[test]
    fn a_good_file_is_previewed() {
        let text = "\u{feff}Id;Age;Geography;Balance\r\n1; 42 ;France;\"1,5\"\r\n\r\n2;NA;\"Sp\"\"ain\";3\r\n;;;\r\n";
        let mut e = churn();
        e.numeric.pop();
        let p = check(text, Some(&e)).unwrap();
        assert_eq!(p.delimiter, ';');
        assert_eq!(p.header, vec!["Id", "Age", "Geography", "Balance"]);
        assert_eq!(p.total_rows, 2);
        assert_eq!(p.rows[0], vec!["1", "42", "France", "1,5"]);
        assert_eq!(p.rows[1][2], "Sp\"ain");
    }

    #[test]
    fn quoted_newlines_keep_line_numbers_right() {
        let text = "a,b\n\"x\ny\",1\n2,3,4\n";
        let e = check(text, None).unwrap_err();
        assert_eq!(e.line, Some(4));
        assert!(e.message.contains("3 cells"), "{e}");
    }

    #[test]
    fn a_ragged_row_is_named_by_line() {
        let e = check(
            "Age,Geography,Balance\n40,France,1\n41,Spain\n",
            Some(&churn()),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Line 3: this row has 2 cells but the header has 3 columns (a value with a comma in it must be in double quotes)."
        );
    }

    #[test]
    fn a_word_in_a_number_column_is_named_by_line_and_column() {
        let e = check(
            "Age,Geography,Balance\n40,France,1\n41,Spain,lots\n",
            Some(&churn()),
        )
        .unwrap_err();
        assert_eq!(e.line, Some(3));
        assert_eq!(e.column.as_deref(), Some("Balance"));
        assert!(e.to_string().contains("“lots” is not a number"), "{e}");
    }

    #[test]
    fn missing_model_columns_are_listed() {
        let e = check("Age,Balance\n1,2\n", Some(&churn())).unwrap_err();
        assert!(
            e.message.contains("lacks the model's column “Geography”"),
            "{e}"
        );
        // Only what is missing: the page lists the model's columns once, beside the picker.
        assert!(!e.message.contains("“Age”"), "{e}");
    }

    #[test]
    fn structural_mistakes_are_explained() {
        assert!(check("", None).unwrap_err().message.contains("empty"));
        assert!(
            check("a,b\n", None)
                .unwrap_err()
                .message
                .contains("no rows")
        );
        assert!(
            check("a,,b\n1,2,3", None)
                .unwrap_err()
                .message
                .contains("column 2")
        );
        assert!(
            check("a,a\n1,2", None)
                .unwrap_err()
                .message
                .contains("twice")
        );
        let e = check("a,b\n1,\"2\n3,4\n", None).unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("never closed"));
    }

    #[test]
    fn delimiters_follow_the_header() {
        let delimiter = |text: &str| check(text, None).unwrap().delimiter;
        assert_eq!(delimiter("a\tb\n1,2\t3\n"), '\t');
        assert_eq!(delimiter("a;b;c\n1;2;3\n"), ';');
        assert_eq!(delimiter("a|b\n1|2\n"), '|');
        assert_eq!(delimiter("\"a;b\",c\n1,2\n"), ',');
    }
}
