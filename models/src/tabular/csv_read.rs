//! CSV bytes to a [`Table`]: every record of the one reader ([`CsvReader`]), cells trimmed and
//! missing-value spellings turned into `None`.

use std::io::Read;

use super::{Column, CsvReader, CsvRecord, Table, TabularError};

/// Reads CSV bytes with a header row into a [`Table`] (the dialect: [`CsvReader`]); cells are
/// trimmed and missing-value spellings (see [`super::is_missing`]) become `None`.
pub fn read_csv(bytes: &[u8]) -> Result<Table, TabularError> {
    read_table(CsvReader::new(bytes)?)
}

/// Every remaining row of `reader` as a [`Table`]; [`TabularError::NoRows`] without any.
pub fn read_table<R: Read>(mut reader: CsvReader<R>) -> Result<Table, TabularError> {
    let mut columns: Vec<Column> = reader
        .header()
        .iter()
        .map(|name| Column {
            name: name.clone(),
            values: Vec::new(),
        })
        .collect();
    let missing = reader.missing().clone();
    let mut record = CsvRecord::default();
    let mut n_rows = 0;
    while reader.read_record(&mut record)? {
        for (i, column) in columns.iter_mut().enumerate() {
            column
                .values
                .push(record.value(i, &missing).map(str::to_string));
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
        ("pipe", b"a|b\n1|x\n", &["a", "b"], &[&["1", "x"]]),
        (
            "blank and separator-only lines before the header",
            b"\n  \r\n;;\na;b\n1;x\n",
            &["a", "b"],
            &[&["1", "x"]],
        ),
        (
            "quote after spaces opens a quoted field",
            b"a, \"b,c\" \n1, \"2,5\"\n",
            &["a", "b,c"],
            &[&["1", "2,5"]],
        ),
        (
            "quote inside an unquoted field is a character",
            b"size,n\n5\" screen,1\n",
            &["size", "n"],
            &[&["5\" screen", "1"]],
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
    fn rejects_with_line_row_and_column() {
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
                    line: 3,
                    row: 2,
                    expected: 2,
                    found: 1,
                },
            ),
            (
                "too long",
                b"a,b\n1,2,3\n",
                TabularError::RaggedRow {
                    line: 2,
                    row: 1,
                    expected: 2,
                    found: 3,
                },
            ),
            (
                "ragged after a blank line and a quoted line break",
                b"a,b\n\"x\ny\",1\n\n2,3,4\n",
                TabularError::RaggedRow {
                    line: 5,
                    row: 2,
                    expected: 2,
                    found: 3,
                },
            ),
            (
                "bad utf8",
                b"a,b\n1,\xff\xfe\n",
                TabularError::NotUtf8 {
                    line: 2,
                    row: 1,
                    column: "b".into(),
                },
            ),
            (
                "duplicate header",
                b"a,a\n1,2\n",
                TabularError::DuplicateHeader {
                    line: 1,
                    name: "a".into(),
                },
            ),
            (
                "empty header",
                b"\na,,c\n1,2,3\n",
                TabularError::EmptyHeader { line: 2, column: 2 },
            ),
            (
                "unclosed quote",
                b"a,b\n1,2\n3,\"4\n5,6\n",
                TabularError::UnclosedQuote { line: 3 },
            ),
        ];
        for (case, input, expected) in cases {
            assert_eq!(read_csv(input).unwrap_err(), *expected, "{case}");
        }
        // What a person reads names the line and the data row.
        assert_eq!(
            cases[3].2.to_string(),
            "line 3 (row 2): expected 2 fields like the header, found 1"
        );
        assert_eq!(
            cases[6].2.to_string(),
            "line 2 (row 1), column `b`: not valid UTF-8 text"
        );
    }
}
