//! Reading a user's CSV in the page before anything runs: a preview of its first rows, and the
//! mistakes that would make a prediction fail, named by line and column, so that a malformed
//! file is explained here and never sent anywhere.
//!
//! It accepts what the engine and the server accept (`b3o_models::tabular::read_csv`): `,` `;`
//! or tab as the separator (the most frequent one outside quotes in the header), a UTF-8 BOM,
//! LF / CRLF / CR line endings, quoted fields with `""` escapes, trimmed cells, blank lines
//! skipped, and the usual spellings of a missing value.

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

/// The separator that occurs most often outside quotes in the header line (comma on a tie).
pub fn detect_delimiter(text: &str) -> char {
    let (mut comma, mut semi, mut tab) = (0usize, 0usize, 0usize);
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            '\n' | '\r' if !quoted => break,
            ',' if !quoted => comma += 1,
            ';' if !quoted => semi += 1,
            '\t' if !quoted => tab += 1,
            _ => {}
        }
    }
    if semi > comma && semi >= tab {
        ';'
    } else if tab > comma && tab > semi {
        '\t'
    } else {
        ','
    }
}

/// True for the spellings of a missing value: empty, `NA`, `N/A`, `?`, `null`, `NaN`, `None`.
pub fn is_missing(cell: &str) -> bool {
    let t = cell.trim();
    t.is_empty()
        || ["na", "n/a", "?", "null", "nan", "none"]
            .iter()
            .any(|m| t.eq_ignore_ascii_case(m))
}

/// Records of `text` with the line each starts on; an unterminated quote is an error.
struct Records<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    delimiter: char,
    line: usize,
}

impl Iterator for Records<'_> {
    type Item = Result<(usize, Vec<String>), CsvProblem>;

    fn next(&mut self) -> Option<Self::Item> {
        self.chars.peek()?;
        let start = self.line;
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut at_field_start = true;
        let mut quoted = false;
        loop {
            let Some(c) = self.chars.next() else {
                if quoted {
                    return Some(Err(problem(
                        Some(start),
                        None,
                        "a quoted field is never closed: a `\"` is missing.".into(),
                    )));
                }
                break;
            };
            if quoted {
                match c {
                    '"' if self.chars.peek() == Some(&'"') => {
                        self.chars.next();
                        field.push('"');
                    }
                    '"' => quoted = false,
                    '\n' => {
                        self.line += 1;
                        field.push(c);
                    }
                    '\r' => {
                        if self.chars.peek() != Some(&'\n') {
                            self.line += 1;
                        }
                        field.push(c);
                    }
                    _ => field.push(c),
                }
                continue;
            }
            match c {
                '"' if at_field_start && field.trim().is_empty() => {
                    field.clear();
                    quoted = true;
                    at_field_start = false;
                }
                c if c == self.delimiter => {
                    fields.push(std::mem::take(&mut field).trim().to_string());
                    at_field_start = true;
                }
                '\r' => {
                    if self.chars.peek() == Some(&'\n') {
                        self.chars.next();
                    }
                    self.line += 1;
                    break;
                }
                '\n' => {
                    self.line += 1;
                    break;
                }
                _ => {
                    field.push(c);
                    if !c.is_whitespace() {
                        at_field_start = false;
                    }
                }
            }
        }
        fields.push(field.trim().to_string());
        Some(Ok((start, fields)))
    }
}

/// Reads `text` and checks it against `expected` (when the model is known): the header names
/// every model column, rows have as many cells as the header, numeric columns hold numbers.
pub fn check(text: &str, expected: Option<&Expected>) -> Result<CsvPreview, CsvProblem> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(problem(None, None, "the file is empty.".into()));
    }
    let delimiter = detect_delimiter(text);
    let mut records = Records {
        chars: text.chars().peekable(),
        delimiter,
        line: 1,
    };
    // Leading blank lines are skipped like any other.
    let (header_line, header) = loop {
        match records.next() {
            Some(Ok((_, fields))) if fields.iter().all(String::is_empty) => continue,
            Some(Ok(record)) => break record,
            Some(Err(e)) => return Err(e),
            None => return Err(problem(None, None, "the file is empty.".into())),
        }
    };
    for (i, name) in header.iter().enumerate() {
        if name.is_empty() {
            return Err(problem(
                Some(header_line),
                None,
                format!("column {} of the header has no name.", i + 1),
            ));
        }
        if header[..i].contains(name) {
            return Err(problem(
                Some(header_line),
                Some(name),
                "this column name appears twice in the header.".into(),
            ));
        }
    }
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
                format!(
                    "the header lacks the model's {what} {}. The model reads {}.",
                    missing.join(", "),
                    expected
                        .columns
                        .iter()
                        .map(|c| format!("“{c}”"))
                        .collect::<Vec<_>>()
                        .join(", ")
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

    let mut rows = Vec::new();
    let mut total_rows = 0;
    for record in records {
        let (line, fields) = record?;
        if fields.iter().all(String::is_empty) {
            continue;
        }
        if fields.len() != header.len() {
            return Err(problem(
                Some(line),
                None,
                format!(
                    "this row has {} cells but the header has {} columns{}.",
                    fields.len(),
                    header.len(),
                    if delimiter == ',' {
                        " (a value with a comma in it must be in double quotes)"
                    } else {
                        ""
                    }
                ),
            ));
        }
        for &i in &numeric {
            let cell = &fields[i];
            if !is_missing(cell) && !cell.parse::<f64>().is_ok_and(f64::is_finite) {
                return Err(problem(
                    Some(line),
                    Some(&header[i]),
                    format!("“{cell}” is not a number, and this column holds numbers."),
                ));
            }
        }
        total_rows += 1;
        if rows.len() < PREVIEW_ROWS {
            rows.push(fields);
        }
    }
    if total_rows == 0 {
        return Err(problem(
            None,
            None,
            "the file has a header but no rows of data.".into(),
        ));
    }
    Ok(CsvPreview {
        delimiter,
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
        assert_eq!(detect_delimiter("a\tb\n1,2"), '\t');
        assert_eq!(detect_delimiter("a;b;c\n"), ';');
        assert_eq!(detect_delimiter("\"a;b\",c\n"), ',');
    }
}
