//! The one CSV dialect of B3O: a streaming record reader used by training ingestion
//! ([`super::read_csv`]), codeless prediction and batch jobs (`wasm-client::codeless`), and the
//! web app's preview, check and group-creation form.
//!
//! What it accepts, as spreadsheets and scripts write it:
//! - a UTF-8 byte-order mark is skipped; line endings may be LF, CRLF or a bare CR;
//! - the separator is `,` `;` tab or `|`, detected once from the header line (the one that
//!   occurs most often outside quotes; ties go to `,` then `;` then tab then `|`);
//! - RFC 4180 quoting: a field that starts with `"` (after optional spaces) runs to the next
//!   lone `"`, may hold separators and line breaks, and `""` inside it is one `"`; text after the
//!   closing quote is kept; a `"` inside an unquoted field is an ordinary character;
//! - blank lines, and lines of nothing but separators and spaces, carry no data and are skipped
//!   (they still count as lines);
//! - every record must have as many fields as the header, and be valid UTF-8;
//! - cells are read as sent ([`CsvRecord::raw`]) or trimmed ([`CsvRecord::get`]), and the
//!   missing-value spellings ([`MissingValues`]) become `None` ([`CsvRecord::value`]).
//!
//! Records carry the 1-based line where they start (what an editor shows) and their data-row
//! number (the first row after the header is 1), and every error names the line. Memory is
//! bounded: the header's columns are counted as it is parsed and refused past
//! [`CsvOptions::max_columns`] before any name is allocated, a record longer than
//! [`CsvOptions::max_record_bytes`] is refused as it is read, and rows past
//! [`CsvOptions::max_rows`] are refused: errors, never panics.

use std::collections::HashSet;
use std::io::Read;
use std::ops::Range;

use super::TabularError;

/// Field separator of a CSV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delimiter {
    Comma,
    Semicolon,
    Tab,
    Pipe,
}

impl Delimiter {
    /// Every separator, in the order that breaks ties in [`Delimiter::detect`].
    pub const ALL: [Delimiter; 4] = [
        Delimiter::Comma,
        Delimiter::Semicolon,
        Delimiter::Tab,
        Delimiter::Pipe,
    ];

    /// The separator byte.
    pub fn byte(self) -> u8 {
        match self {
            Delimiter::Comma => b',',
            Delimiter::Semicolon => b';',
            Delimiter::Tab => b'\t',
            Delimiter::Pipe => b'|',
        }
    }

    /// The separator character.
    pub fn as_char(self) -> char {
        char::from(self.byte())
    }

    /// The separator that occurs most often outside quotes in the first line of `bytes`
    /// (comma, then semicolon, then tab, then pipe on a tie).
    pub fn detect(bytes: &[u8]) -> Delimiter {
        let mut counts = [0usize; 4];
        let mut quoted = false;
        for &b in bytes {
            match b {
                b'"' => quoted = !quoted,
                b'\n' | b'\r' if !quoted => break,
                _ if !quoted => {
                    if let Some(i) = Delimiter::ALL.iter().position(|d| d.byte() == b) {
                        counts[i] += 1;
                    }
                }
                _ => {}
            }
        }
        let mut best = 0;
        for i in 1..counts.len() {
            if counts[i] > counts[best] {
                best = i;
            }
        }
        Delimiter::ALL[best]
    }
}

/// The spellings of a missing value, compared case-insensitively after trimming; an empty
/// cell is always missing. The default set is `NA`, `N/A`, `?`, `null`, `NaN` and `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingValues {
    markers: Vec<String>,
}

/// The default missing-value spellings (besides the empty cell).
pub const DEFAULT_MISSING: [&str; 6] = ["na", "n/a", "?", "null", "nan", "none"];

impl Default for MissingValues {
    fn default() -> Self {
        MissingValues::new(DEFAULT_MISSING)
    }
}

impl MissingValues {
    /// These spellings (and the empty cell).
    pub fn new<S: Into<String>>(markers: impl IntoIterator<Item = S>) -> Self {
        MissingValues {
            markers: markers.into_iter().map(Into::into).collect(),
        }
    }

    /// True when `cell` is missing.
    pub fn is_missing(&self, cell: &str) -> bool {
        let t = cell.trim();
        t.is_empty() || self.markers.iter().any(|m| t.eq_ignore_ascii_case(m))
    }
}

/// True for the default spellings of a missing value: empty, `NA`, `N/A`, `?`, `null`, `NaN`,
/// `None` (case-insensitive, surrounding spaces ignored).
pub fn is_missing(cell: &str) -> bool {
    let t = cell.trim();
    t.is_empty() || DEFAULT_MISSING.iter().any(|m| t.eq_ignore_ascii_case(m))
}

/// Most columns a header may have by default.
pub const DEFAULT_MAX_COLUMNS: usize = 100_000;
/// Longest record (header or row, after unquoting) by default.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 16 << 20;

/// How a CSV is read: the dialect's choices and its bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOptions {
    /// The separator; `None` detects it from the header line.
    pub delimiter: Option<Delimiter>,
    /// Most columns in the header ([`TabularError::TooManyColumns`] past it).
    pub max_columns: usize,
    /// Most data rows (`None`: any number; [`TabularError::TooManyRows`] past it).
    pub max_rows: Option<usize>,
    /// Longest record in bytes ([`TabularError::RecordTooLong`] past it).
    pub max_record_bytes: usize,
    /// The spellings of a missing value ([`CsvRecord::value`]).
    pub missing: MissingValues,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            delimiter: None,
            max_columns: DEFAULT_MAX_COLUMNS,
            max_rows: None,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            missing: MissingValues::default(),
        }
    }
}

/// One record of a CSV: its fields (unquoted, otherwise as sent), the line it starts on, its
/// data-row number and its bytes in the source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CsvRecord {
    text: String,
    /// End of each field in `text`.
    ends: Vec<usize>,
    line: usize,
    row: usize,
    span: Range<u64>,
    /// Fields in the source line, kept or not (a ragged row keeps at most one extra).
    fields_seen: usize,
    /// The first field that is not UTF-8 (the record is then refused).
    bad_utf8: Option<usize>,
}

impl CsvRecord {
    /// The 1-based line of the source where this record starts.
    pub fn line(&self) -> usize {
        self.line
    }

    /// The data-row number: 1 for the first row after the header, 0 for the header.
    pub fn row(&self) -> usize {
        self.row
    }

    /// The record's bytes in the source (from its first byte to its line break, excluded).
    pub fn span(&self) -> Range<u64> {
        self.span.clone()
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Field `i` as sent (quotes removed, `""` unescaped, spaces kept).
    pub fn raw(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.text.get(start..end)
    }

    /// Field `i` without surrounding ASCII spaces.
    pub fn get(&self, i: usize) -> Option<&str> {
        self.raw(i).map(str::trim_ascii)
    }

    /// Field `i` trimmed, `None` when it is one of `missing`'s spellings (or absent).
    pub fn value(&self, i: usize, missing: &MissingValues) -> Option<&str> {
        self.get(i).filter(|t| !missing.is_missing(t))
    }

    /// The fields as sent.
    pub fn iter_raw(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.len()).map(|i| self.raw(i).unwrap_or_default())
    }

    /// The fields trimmed.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.len()).map(|i| self.get(i).unwrap_or_default())
    }

    /// True when every field is empty after trimming (a line of separators and spaces).
    pub fn is_blank(&self) -> bool {
        self.iter().all(str::is_empty)
    }
}

/// Bytes of a [`Read`] source, buffered, with the line count and offset of what was consumed.
struct Source<R> {
    inner: R,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    eof: bool,
    /// Bytes of the source before `buf[pos]`.
    offset: u64,
    /// Line of `buf[pos]` (1-based).
    line: usize,
    /// The byte before `buf[pos]` (0 at the start).
    prev: u8,
}

const BLOCK: usize = 64 * 1024;

impl<R: Read> Source<R> {
    fn new(inner: R) -> Self {
        Source {
            inner,
            buf: Vec::new(),
            pos: 0,
            len: 0,
            eof: false,
            offset: 0,
            line: 1,
            prev: 0,
        }
    }

    /// Reads more bytes after the buffered ones (growing the buffer when `grow`); false at
    /// the end of the source.
    fn fill(&mut self, grow: bool) -> Result<bool, TabularError> {
        if self.eof {
            return Ok(false);
        }
        if !grow && self.pos == self.len {
            self.pos = 0;
            self.len = 0;
        }
        if self.buf.len() - self.len < BLOCK / 4 {
            if !grow && self.pos > 0 {
                self.buf.copy_within(self.pos..self.len, 0);
                self.len -= self.pos;
                self.pos = 0;
            }
            if self.buf.len() - self.len < BLOCK / 4 {
                self.buf.resize(self.len + BLOCK, 0);
            }
        }
        loop {
            match self.inner.read(&mut self.buf[self.len..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.len += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(TabularError::Io {
                        message: e.to_string(),
                    });
                }
            }
        }
    }

    /// Skips `n` buffered bytes that hold `lines` line breaks.
    fn skip(&mut self, n: usize, lines: usize) {
        if n > 0 {
            self.prev = self.buf[self.pos + n - 1];
        }
        self.pos += n;
        self.offset += n as u64;
        self.line += lines;
    }
}

/// The streaming reader: the header when built, then one [`CsvRecord`] per data row, each
/// checked against the header (see the module documentation for the dialect).
///
/// Iterating yields `Result<CsvRecord, _>` and stops after the first error;
/// [`CsvReader::read_record`] reuses one record's buffers.
pub struct CsvReader<R> {
    source: Source<R>,
    delimiter: Delimiter,
    options: CsvOptions,
    header: CsvRecord,
    names: Vec<String>,
    rows: usize,
    failed: bool,
}

impl<R> std::fmt::Debug for CsvReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvReader")
            .field("delimiter", &self.delimiter)
            .field("columns", &self.names.len())
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl<R: Read> CsvReader<R> {
    /// Reads the header of `source` with the default options.
    pub fn new(source: R) -> Result<Self, TabularError> {
        CsvReader::with_options(source, CsvOptions::default())
    }

    /// Reads the header of `source`: skips a BOM and blank lines, detects the separator (unless
    /// `options` names it) and checks the column names (none empty, none twice).
    pub fn with_options(source: R, options: CsvOptions) -> Result<Self, TabularError> {
        let mut source = Source::new(source);
        // A byte-order mark.
        while source.len < 3 && source.fill(true)? {}
        if source.buf[..source.len].starts_with(b"\xEF\xBB\xBF") {
            source.skip(3, 0);
        }
        let delimiter = find_header(&mut source, &options)?;
        let mut reader = CsvReader {
            source,
            delimiter,
            options,
            header: CsvRecord::default(),
            names: Vec::new(),
            rows: 0,
            failed: false,
        };
        let mut header = CsvRecord::default();
        if !reader.parse(&mut header, reader.options.max_columns, true)? {
            return Err(TabularError::Empty);
        }
        let line = header.line;
        let mut names = Vec::with_capacity(header.len());
        // A set, not `names.contains`: the check is linear in the columns.
        let mut seen = HashSet::with_capacity(header.len());
        for (i, name) in header.iter().enumerate() {
            if name.is_empty() {
                return Err(TabularError::EmptyHeader {
                    line,
                    column: i + 1,
                });
            }
            if !seen.insert(name) {
                return Err(TabularError::DuplicateHeader {
                    line,
                    name: name.to_string(),
                });
            }
            names.push(name.to_string());
        }
        drop(seen);
        reader.header = header;
        reader.names = names;
        Ok(reader)
    }

    /// The separator in use.
    pub fn delimiter(&self) -> Delimiter {
        self.delimiter
    }

    /// The column names, trimmed, in file order.
    pub fn header(&self) -> &[String] {
        &self.names
    }

    /// The header record as sent.
    pub fn header_record(&self) -> &CsvRecord {
        &self.header
    }

    /// The options the reader was built with.
    pub fn options(&self) -> &CsvOptions {
        &self.options
    }

    /// The missing-value spellings ([`CsvRecord::value`]).
    pub fn missing(&self) -> &MissingValues {
        &self.options.missing
    }

    /// Data rows read so far.
    pub fn rows_read(&self) -> usize {
        self.rows
    }

    /// Reads the next data row into `record` (blank lines skipped); false after the last.
    pub fn read_record(&mut self, record: &mut CsvRecord) -> Result<bool, TabularError> {
        if self.failed {
            return Ok(false);
        }
        let read = self.read_checked(record);
        if read.is_err() {
            self.failed = true;
        }
        read
    }

    fn read_checked(&mut self, record: &mut CsvRecord) -> Result<bool, TabularError> {
        let width = self.names.len();
        loop {
            // One field past the header's is kept so that a long row is seen as ragged; the
            // others are only counted.
            if !self.parse(record, width + 1, false)? {
                return Ok(false);
            }
            if record.is_blank() {
                continue;
            }
            let row = self.rows + 1;
            if let Some(max) = self.options.max_rows
                && self.rows >= max
            {
                return Err(TabularError::TooManyRows { max });
            }
            record.row = row;
            if record.fields_seen != width {
                return Err(TabularError::RaggedRow {
                    line: record.line,
                    row,
                    expected: width,
                    found: record.fields_seen,
                });
            }
            if let Some(bad) = record.bad_utf8 {
                return Err(TabularError::NotUtf8 {
                    line: record.line,
                    row,
                    column: self.names.get(bad).cloned().unwrap_or_default(),
                });
            }
            self.rows = row;
            return Ok(true);
        }
    }

    /// Parses one record (blank or not) into `record`, keeping at most `keep` fields; false at
    /// the end of the source. For the header, more than `keep` fields is an error.
    ///
    /// A bare CR ends a record like a LF; the LF of a CRLF then reads as an empty record,
    /// which is blank, and is not counted as a line of its own.
    fn parse(
        &mut self,
        record: &mut CsvRecord,
        keep: usize,
        header: bool,
    ) -> Result<bool, TabularError> {
        #[derive(Clone, Copy, PartialEq)]
        enum State {
            Field,
            Quoted,
            /// A `"` in a quoted field: the end of the quotes, or the first of `""`.
            QuoteInQuoted,
        }
        let delimiter = self.delimiter.byte();
        let max_bytes = self.options.max_record_bytes;
        let src = &mut self.source;
        if src.pos == src.len && !src.fill(false)? {
            return Ok(false);
        }
        let line = src.line;
        let start = src.offset;
        let mut bytes = std::mem::take(&mut record.text).into_bytes();
        bytes.clear();
        record.ends.clear();
        let mut fields = 0usize;
        // Where the current field starts in `bytes`, and whether a quote may still open it.
        let mut field_start = 0usize;
        let mut may_quote = true;
        let mut state = State::Field;
        let mut quote_line = line;
        let unquoted_special = |b: u8| b == delimiter || matches!(b, b'"' | b'\n' | b'\r');
        let quoted_special = |b: u8| matches!(b, b'"' | b'\n' | b'\r');
        let end = 'record: loop {
            if src.pos == src.len && !src.fill(false)? {
                if state == State::Quoted {
                    return Err(TabularError::UnclosedQuote { line: quote_line });
                }
                break 'record src.offset;
            }
            let avail = &src.buf[src.pos..src.len];
            let mut i = 0;
            // Ends of the record inside this buffer: the terminator's index.
            let mut terminator = None;
            while i < avail.len() {
                match state {
                    State::Field => {
                        let run = avail[i..]
                            .iter()
                            .position(|&b| unquoted_special(b))
                            .map_or(avail.len(), |n| i + n);
                        if run > i {
                            let text = &avail[i..run];
                            if may_quote && !text.iter().all(u8::is_ascii_whitespace) {
                                may_quote = false;
                            }
                            bytes.extend_from_slice(text);
                            i = run;
                            continue;
                        }
                        let b = avail[i];
                        i += 1;
                        if b == delimiter {
                            fields += 1;
                            if fields <= keep {
                                record.ends.push(bytes.len());
                            } else if header {
                                return Err(TabularError::TooManyColumns { max: keep });
                            } else {
                                bytes.truncate(field_start);
                            }
                            field_start = bytes.len();
                            may_quote = true;
                        } else if b == b'"' {
                            if may_quote {
                                // Spaces before an opening quote are not part of the field.
                                bytes.truncate(field_start);
                                state = State::Quoted;
                                may_quote = false;
                                quote_line = src.line;
                            } else {
                                bytes.push(b);
                            }
                        } else {
                            // `\n` or `\r`: the end of the record.
                            let after_cr = if i >= 2 { avail[i - 2] } else { src.prev } == b'\r';
                            if b == b'\r' || !after_cr {
                                src.line += 1;
                            }
                            terminator = Some(i - 1);
                            break;
                        }
                    }
                    State::Quoted => {
                        let run = avail[i..]
                            .iter()
                            .position(|&b| quoted_special(b))
                            .map_or(avail.len(), |n| i + n);
                        bytes.extend_from_slice(&avail[i..run]);
                        i = run;
                        let Some(&b) = avail.get(i) else { break };
                        i += 1;
                        match b {
                            b'"' => state = State::QuoteInQuoted,
                            _ => {
                                let after_cr =
                                    if i >= 2 { avail[i - 2] } else { src.prev } == b'\r';
                                if b == b'\r' || !after_cr {
                                    src.line += 1;
                                }
                                bytes.push(b);
                            }
                        }
                    }
                    State::QuoteInQuoted => {
                        if avail[i] == b'"' {
                            bytes.push(b'"');
                            i += 1;
                            state = State::Quoted;
                        } else {
                            // Text after the closing quote is kept, as it comes.
                            state = State::Field;
                            may_quote = false;
                        }
                    }
                }
                if bytes.len() > max_bytes {
                    return Err(TabularError::RecordTooLong {
                        line,
                        max: max_bytes,
                    });
                }
            }
            if bytes.len() > max_bytes {
                return Err(TabularError::RecordTooLong {
                    line,
                    max: max_bytes,
                });
            }
            if i > 0 {
                src.prev = avail[i - 1];
            }
            src.pos += i;
            src.offset += i as u64;
            if let Some(t) = terminator {
                break 'record src.offset - (i - t) as u64;
            }
        };
        fields += 1;
        if fields <= keep {
            record.ends.push(bytes.len());
        } else if header {
            return Err(TabularError::TooManyColumns { max: keep });
        } else {
            bytes.truncate(field_start);
        }
        record.fields_seen = fields;
        record.line = line;
        record.row = 0;
        record.span = start..end;
        record.bad_utf8 = None;
        record.text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => {
                let at = e.utf8_error().valid_up_to();
                let column = record.ends.iter().position(|&end| at < end).unwrap_or(0);
                record.bad_utf8 = Some(column);
                if header {
                    return Err(TabularError::NotUtf8 {
                        line,
                        row: 0,
                        column: format!("#{}", column + 1),
                    });
                }
                // Kept as text so that the record stays usable; the caller refuses it.
                String::from_utf8_lossy(e.as_bytes()).into_owned()
            }
        };
        Ok(true)
    }
}

impl<R: Read> Iterator for CsvReader<R> {
    type Item = Result<CsvRecord, TabularError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut record = CsvRecord::default();
        match self.read_record(&mut record) {
            Ok(true) => Some(Ok(record)),
            Ok(false) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

/// Buffers the source up to the end of its header line and skips the blank lines before it;
/// returns the separator (the one in `options`, or the one detected on that line).
fn find_header<R: Read>(
    source: &mut Source<R>,
    options: &CsvOptions,
) -> Result<Delimiter, TabularError> {
    let blank_byte = |b: u8| {
        matches!(b, b' ' | b'\t')
            || match options.delimiter {
                Some(d) => b == d.byte(),
                None => Delimiter::ALL.iter().any(|d| d.byte() == b),
            }
    };
    // Line start (in the buffer, from `source.pos`) and line breaks before it.
    let mut line_start = 0usize;
    let mut lines = 0usize;
    let mut i = 0usize;
    let mut blank = true;
    let mut quoted = false;
    loop {
        let avail = source.len - source.pos;
        if i >= avail {
            let limit = line_start.saturating_add(options.max_record_bytes);
            if i >= limit || !source.fill(true)? {
                break;
            }
            continue;
        }
        let b = source.buf[source.pos + i];
        i += 1;
        if quoted {
            quoted = b != b'"';
            continue;
        }
        match b {
            b'"' => {
                quoted = true;
                blank = false;
            }
            b'\n' | b'\r' if blank => {
                if b == b'\r' {
                    // A CRLF is one line break; the LF may not be buffered yet.
                    while source.pos + i >= source.len && source.fill(true)? {}
                    if source.pos + i < source.len && source.buf[source.pos + i] == b'\n' {
                        i += 1;
                    }
                }
                lines += 1;
                line_start = i;
            }
            b'\n' | b'\r' => break,
            b if blank_byte(b) => {}
            _ => blank = false,
        }
    }
    if blank {
        return Err(TabularError::Empty);
    }
    source.skip(line_start, lines);
    let start = source.pos;
    Ok(options
        .delimiter
        .unwrap_or_else(|| Delimiter::detect(&source.buf[start..source.len])))
}

/// The fields of one line of text (trimmed, unquoted) split at `delimiter`, as the reader
/// reads a header: for lists typed in a form, such as column names to leave out.
pub fn split_fields(text: &str, delimiter: Delimiter) -> Result<Vec<String>, TabularError> {
    let options = CsvOptions {
        delimiter: Some(delimiter),
        ..CsvOptions::default()
    };
    let mut reader = CsvReader {
        source: Source::new(text.as_bytes()),
        delimiter,
        options,
        header: CsvRecord::default(),
        names: Vec::new(),
        rows: 0,
        failed: false,
    };
    let mut record = CsvRecord::default();
    if !reader.parse(&mut record, DEFAULT_MAX_COLUMNS, true)? {
        return Ok(Vec::new());
    }
    Ok(record.iter().map(str::to_string).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source that hands out one byte per read: every buffer boundary is crossed.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((&b, rest)), Some(slot)) => {
                    *slot = b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    /// (line, row, trimmed fields) of every record.
    fn records<R: Read>(reader: CsvReader<R>) -> Vec<(usize, usize, Vec<String>)> {
        reader
            .map(|r| {
                let r = r.unwrap();
                (r.line(), r.row(), r.iter().map(str::to_string).collect())
            })
            .collect()
    }

    #[test]
    fn records_carry_their_line_through_any_line_ending_and_quoted_breaks() {
        let input = b"\xEF\xBB\xBFid;note\r\n1;\"two\r\nlines\"\r\n\r\n2;\"bare\rcr\"\r3;x\n4;\"\"\"q\"\"\"\n";
        let want = vec![
            (2, 1, vec!["1".to_string(), "two\r\nlines".into()]),
            (5, 2, vec!["2".into(), "bare\rcr".into()]),
            (7, 3, vec!["3".into(), "x".into()]),
            (8, 4, vec!["4".into(), "\"q\"".into()]),
        ];
        let reader = CsvReader::new(&input[..]).unwrap();
        assert_eq!(reader.delimiter(), Delimiter::Semicolon);
        assert_eq!(reader.header(), ["id", "note"]);
        assert_eq!(reader.header_record().line(), 1);
        assert_eq!(records(reader), want);
        // The same records when the source hands out one byte at a time.
        assert_eq!(records(CsvReader::new(Trickle(input)).unwrap()), want);
    }

    #[test]
    fn spans_and_raw_cells_are_as_sent() {
        let text = "a , b\n\n x ,\" y\"\" \" \n";
        let mut reader = CsvReader::new(text.as_bytes()).unwrap();
        assert_eq!(reader.header_record().span(), 0..5);
        let r = reader.next().unwrap().unwrap();
        assert_eq!((r.line(), r.span()), (3, 7..19));
        assert_eq!(r.iter_raw().collect::<Vec<_>>(), [" x ", " y\"  "]);
        assert_eq!(r.iter().collect::<Vec<_>>(), ["x", "y\""]);
        assert!(reader.next().is_none());
    }

    #[test]
    fn missing_values_are_configurable() {
        let r = CsvReader::new(&b"a,b,c,d\n NA ,?,-,x\n"[..])
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let default = MissingValues::default();
        let cells: Vec<_> = (0..4).map(|i| r.value(i, &default)).collect();
        assert_eq!(cells, [None, None, Some("-"), Some("x")]);
        let custom = MissingValues::new(["-"]);
        let cells: Vec<_> = (0..4).map(|i| r.value(i, &custom)).collect();
        assert_eq!(cells, [Some("NA"), Some("?"), None, Some("x")]);
        assert!(is_missing(" None ") && !is_missing("0"));
    }

    #[test]
    fn limits_are_errors_found_before_the_memory_they_bound() {
        let options = |max_columns, max_rows, max_record_bytes| CsvOptions {
            max_columns,
            max_rows,
            max_record_bytes,
            ..CsvOptions::default()
        };
        let err = |input: &[u8], o: CsvOptions| {
            CsvReader::with_options(input, o)
                .and_then(|r| r.collect::<Result<Vec<_>, _>>())
                .unwrap_err()
        };
        // A quoted separator is not a column.
        assert!(CsvReader::with_options(&b"a,\"b,c\"\n"[..], options(2, None, 100)).is_ok());
        // A million separators: refused at the third column, not after allocating a million.
        let wide = ",".repeat(1_000_000);
        assert_eq!(
            err(wide.as_bytes(), options(2, None, 1 << 30)),
            TabularError::Empty
        );
        let wide = format!("a{wide}\n");
        assert_eq!(
            err(wide.as_bytes(), options(2, None, 1 << 30)),
            TabularError::TooManyColumns { max: 2 }
        );
        assert_eq!(
            err(b"a\n1\n\n2\n3\n", options(10, Some(2), 100)),
            TabularError::TooManyRows { max: 2 }
        );
        let long = format!("a\n1\n\"{}\"\n", "x".repeat(200));
        assert_eq!(
            err(long.as_bytes(), options(10, None, 100)),
            TabularError::RecordTooLong { line: 3, max: 100 }
        );
        // A ragged row with many more fields keeps only one past the header's.
        let ragged = format!("a,b\n1{}\n", ",".repeat(100_000));
        assert_eq!(
            err(ragged.as_bytes(), CsvOptions::default()),
            TabularError::RaggedRow {
                line: 2,
                row: 1,
                expected: 2,
                found: 100_001,
            }
        );
        // Reading stops at the first error.
        let mut reader = CsvReader::new(&b"a\n\"1\n"[..]).unwrap();
        assert!(reader.next().unwrap().is_err());
        assert!(reader.next().is_none());
    }

    #[test]
    fn detects_delimiter_from_the_header_line() {
        assert_eq!(Delimiter::detect(b"a;b;c\n1,2;3;4"), Delimiter::Semicolon);
        assert_eq!(Delimiter::detect(b"a\tb\n"), Delimiter::Tab);
        assert_eq!(Delimiter::detect(b"a|b|c\n"), Delimiter::Pipe);
        assert_eq!(Delimiter::detect(b"single\n1\n"), Delimiter::Comma);
        assert_eq!(Delimiter::detect(b"\"a;b\",c\n"), Delimiter::Comma);
        assert_eq!(Delimiter::detect(b"a;b\tc\n"), Delimiter::Semicolon);
        let forced = CsvOptions {
            delimiter: Some(Delimiter::Comma),
            ..CsvOptions::default()
        };
        let reader = CsvReader::with_options(&b"a;b,c\n1,2\n"[..], forced).unwrap();
        assert_eq!(reader.header(), ["a;b", "c"]);
    }

    #[test]
    fn split_fields_reads_one_line_like_a_header() {
        assert_eq!(
            split_fields(" id, \"last, first\" ,", Delimiter::Comma).unwrap(),
            ["id", "last, first", ""]
        );
        assert!(split_fields("", Delimiter::Comma).unwrap().is_empty());
    }

    /// The reader against the `csv` crate (the maintained reference for RFC 4180): whatever
    /// table `csv::Writer` writes, with any separator and line ending, read in one block or a
    /// byte at a time, comes back cell for cell, each record on the line where it starts.
    mod against_the_csv_crate {
        use super::*;
        use proptest::prelude::*;

        fn cell() -> impl Strategy<Value = String> {
            proptest::collection::vec(
                prop_oneof![
                    4 => proptest::char::range('a', 'e'),
                    1 => Just(' '),
                    1 => Just('"'),
                    1 => Just(','),
                    1 => Just(';'),
                    1 => Just('\t'),
                    1 => Just('|'),
                    1 => Just('\r'),
                    1 => Just('\n'),
                    1 => Just('é'),
                ],
                0..6,
            )
            .prop_map(|c| c.into_iter().collect())
        }

        fn table() -> impl Strategy<Value = (usize, Vec<Vec<String>>)> {
            (1usize..5).prop_flat_map(|width| {
                (
                    Just(width),
                    proptest::collection::vec(proptest::collection::vec(cell(), width), 0..12),
                )
            })
        }

        /// 1 + the line breaks (CRLF counted once) before `end`.
        fn line_at(bytes: &[u8], end: usize) -> usize {
            let mut line = 1;
            for i in 0..end {
                match bytes[i] {
                    b'\n' => line += 1,
                    b'\r' if bytes.get(i + 1) != Some(&b'\n') => line += 1,
                    _ => {}
                }
            }
            line
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]
            #[test]
            fn every_written_table_reads_back(
                (width, rows) in table(),
                delimiter in proptest::sample::select(Delimiter::ALL.to_vec()),
                terminator in proptest::sample::select(vec![
                    csv::Terminator::CRLF,
                    csv::Terminator::Any(b'\n'),
                    csv::Terminator::Any(b'\r'),
                ]),
                trickle in any::<bool>(),
            ) {
                // Rows of nothing but blanks carry no data: the reader skips them by design.
                let rows: Vec<Vec<String>> = rows
                    .into_iter()
                    .filter(|r| r.iter().any(|c| !c.trim_ascii().is_empty()))
                    .collect();
                let header: Vec<String> = (0..width).map(|i| format!("c{i}")).collect();
                let mut writer = csv::WriterBuilder::new()
                    .delimiter(delimiter.byte())
                    .terminator(terminator)
                    .from_writer(Vec::new());
                writer.write_record(&header).unwrap();
                for row in &rows {
                    writer.write_record(row).unwrap();
                }
                let bytes = writer.into_inner().unwrap();

                let options = CsvOptions { delimiter: Some(delimiter), ..CsvOptions::default() };
                let read: Vec<CsvRecord> = if trickle {
                    CsvReader::with_options(Trickle(&bytes), options).unwrap()
                        .collect::<Result<_, _>>().unwrap()
                } else {
                    CsvReader::with_options(&bytes[..], options).unwrap()
                        .collect::<Result<_, _>>().unwrap()
                };
                prop_assert_eq!(read.len(), rows.len());
                for (record, row) in read.iter().zip(&rows) {
                    let cells: Vec<&str> = record.iter_raw().collect();
                    let want: Vec<&str> = row.iter().map(String::as_str).collect();
                    prop_assert_eq!(cells, want);
                    let start = record.span().start as usize;
                    prop_assert_eq!(record.line(), line_at(&bytes, start));
                }
            }
        }
    }
}
