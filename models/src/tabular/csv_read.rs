//! CSV bytes to a [`Table`], accepting what spreadsheets and scripts actually produce.

use super::{Column, Table, TabularError};

/// Field separator of a CSV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delimiter {
    Comma,
    Semicolon,
    Tab,
}

impl Delimiter {
    fn byte(self) -> u8 {
        match self {
            Delimiter::Comma => b',',
            Delimiter::Semicolon => b';',
            Delimiter::Tab => b'\t',
        }
    }

    /// The separator that occurs most often outside quotes in the header line (comma on a tie).
    pub fn detect(bytes: &[u8]) -> Delimiter {
        let (mut comma, mut semi, mut tab) = (0usize, 0usize, 0usize);
        let mut quoted = false;
        for &b in bytes {
            match b {
                b'"' => quoted = !quoted,
                b'\n' | b'\r' if !quoted => break,
                b',' if !quoted => comma += 1,
                b';' if !quoted => semi += 1,
                b'\t' if !quoted => tab += 1,
                _ => {}
            }
        }
        if semi > comma && semi >= tab {
            Delimiter::Semicolon
        } else if tab > comma && tab > semi {
            Delimiter::Tab
        } else {
            Delimiter::Comma
        }
    }
}

/// True for the spellings of a missing value: empty, `NA`, `N/A`, `?`, `null`, `NaN`, `None`
/// (case-insensitive, surrounding spaces ignored).
pub fn is_missing(cell: &str) -> bool {
    let t = cell.trim();
    t.is_empty()
        || ["na", "n/a", "?", "null", "nan", "none"]
            .iter()
            .any(|m| t.eq_ignore_ascii_case(m))
}

/// Reads CSV bytes with a header row.
///
/// The delimiter (`,` `;` or tab) is detected from the header; a UTF-8 byte-order mark is
/// skipped; CRLF, LF and bare CR line endings are all accepted; fields may be quoted (`""` is an
/// escaped quote); cells are trimmed and missing-value spellings (see [`is_missing`]) become
/// `None`; blank lines are skipped.
pub fn read_csv(bytes: &[u8]) -> Result<Table, TabularError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(TabularError::Empty);
    }
    let delimiter = Delimiter::detect(bytes);
    // csv's default terminator treats `\r`, `\n` and `\r\n` alike.
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter.byte())
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);

    let mut records = reader.byte_records();
    let header = match records.next() {
        Some(Ok(h)) => h,
        Some(Err(e)) => {
            return Err(TabularError::Csv {
                row: 0,
                message: e.to_string(),
            });
        }
        None => return Err(TabularError::Empty),
    };
    let mut columns = Vec::with_capacity(header.len());
    for (i, field) in header.iter().enumerate() {
        let name = std::str::from_utf8(field)
            .map_err(|_| TabularError::NotUtf8 {
                row: 0,
                column: format!("#{}", i + 1),
            })?
            .trim()
            .to_string();
        if name.is_empty() {
            return Err(TabularError::EmptyHeader { column: i + 1 });
        }
        if columns.iter().any(|c: &Column| c.name == name) {
            return Err(TabularError::DuplicateHeader { name });
        }
        columns.push(Column {
            name,
            values: Vec::new(),
        });
    }

    let mut n_rows = 0;
    for record in records {
        let row = n_rows + 1;
        let record = record.map_err(|e| TabularError::Csv {
            row,
            message: e.to_string(),
        })?;
        // A line of only separators or spaces carries no data (common at the end of exports).
        if record.iter().all(|f| f.is_empty()) {
            continue;
        }
        if record.len() != columns.len() {
            return Err(TabularError::RaggedRow {
                row,
                expected: columns.len(),
                found: record.len(),
            });
        }
        for (column, field) in columns.iter_mut().zip(record.iter()) {
            let text = std::str::from_utf8(field).map_err(|_| TabularError::NotUtf8 {
                row,
                column: column.name.clone(),
            })?;
            column.values.push(if is_missing(text) {
                None
            } else {
                Some(text.to_string())
            });
        }
        n_rows += 1;
    }
    if n_rows == 0 {
        return Err(TabularError::NoRows);
    }
    Ok(Table { columns, n_rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (case, input, expected header, expected rows as cells with `-` for missing)
    type Fixture = (
        &'static str,
        &'static [u8],
        &'static [&'static str],
        &'static [&'static [&'static str]],
    );

    const FIXTURES: &[Fixture] = &[
        (
            "comma LF",
            b"a,b\n1,x\n2,y\n",
            &["a", "b"],
            &[&["1", "x"], &["2", "y"]],
        ),
        (
            "semicolon CRLF",
            b"a;b\r\n1,5;x\r\n2;y\r\n",
            &["a", "b"],
            &[&["1,5", "x"], &["2", "y"]],
        ),
        ("tab", b"a\tb\n1\tx\n", &["a", "b"], &[&["1", "x"]]),
        (
            "bare CR",
            b"a,b\r1,x\r2,y",
            &["a", "b"],
            &[&["1", "x"], &["2", "y"]],
        ),
        (
            "BOM",
            b"\xEF\xBB\xBFa,b\n1,x\n",
            &["a", "b"],
            &[&["1", "x"]],
        ),
        (
            "quoted with delimiter, quote and newline",
            b"name,note\n\"Smith, J\",\"said \"\"hi\"\"\"\n\"multi\nline\",ok\n",
            &["name", "note"],
            &[&["Smith, J", "said \"hi\""], &["multi\nline", "ok"]],
        ),
        (
            "missing spellings",
            b"a,b,c,d,e,f\n,NA,n/a,?,NULL,nan\n1, 2 ,3,4,5,6\n",
            &["a", "b", "c", "d", "e", "f"],
            &[
                &["-", "-", "-", "-", "-", "-"],
                &["1", "2", "3", "4", "5", "6"],
            ],
        ),
        (
            "blank and trailing lines",
            b"a,b\n\n1,x\n,\n\n",
            &["a", "b"],
            &[&["1", "x"]],
        ),
        (
            "no trailing newline",
            b"a,b\n1,x",
            &["a", "b"],
            &[&["1", "x"]],
        ),
        (
            "semicolon header with commas in quotes",
            b"\"x,y\";z\n1;2\n",
            &["x,y", "z"],
            &[&["1", "2"]],
        ),
    ];

    #[test]
    fn reads_fixtures() {
        for (case, input, header, rows) in FIXTURES {
            let table = read_csv(input).unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!(table.names(), header.to_vec(), "{case}");
            assert_eq!(table.n_rows, rows.len(), "{case}");
            for (r, row) in rows.iter().enumerate() {
                for (c, cell) in row.iter().enumerate() {
                    let expected = if *cell == "-" {
                        None
                    } else {
                        Some(cell.to_string())
                    };
                    assert_eq!(
                        table.columns[c].values[r], expected,
                        "{case}: row {r} col {c}"
                    );
                }
            }
        }
    }

    #[test]
    fn rejects_with_row_and_column() {
        let cases: &[(&str, &[u8], TabularError)] = &[
            ("empty", b"", TabularError::Empty),
            (
                "only BOM and spaces",
                b"\xEF\xBB\xBF \n",
                TabularError::Empty,
            ),
            ("header only", b"a,b\n", TabularError::NoRows),
            (
                "ragged",
                b"a,b\n1,2\n3\n",
                TabularError::RaggedRow {
                    row: 2,
                    expected: 2,
                    found: 1,
                },
            ),
            (
                "too long",
                b"a,b\n1,2,3\n",
                TabularError::RaggedRow {
                    row: 1,
                    expected: 2,
                    found: 3,
                },
            ),
            (
                "bad utf8",
                b"a,b\n1,\xff\xfe\n",
                TabularError::NotUtf8 {
                    row: 1,
                    column: "b".into(),
                },
            ),
            (
                "duplicate header",
                b"a,a\n1,2\n",
                TabularError::DuplicateHeader { name: "a".into() },
            ),
            (
                "empty header",
                b"a,,c\n1,2,3\n",
                TabularError::EmptyHeader { column: 2 },
            ),
        ];
        for (case, input, expected) in cases {
            assert_eq!(read_csv(input).unwrap_err(), *expected, "{case}");
            assert!(!expected.to_string().is_empty());
        }
    }

    #[test]
    fn detects_delimiter() {
        assert_eq!(Delimiter::detect(b"a;b;c\n1,2;3;4"), Delimiter::Semicolon);
        assert_eq!(Delimiter::detect(b"a\tb\n"), Delimiter::Tab);
        assert_eq!(Delimiter::detect(b"single\n1\n"), Delimiter::Comma);
    }
}
