//! CSV reading: dialect detection (`,` / `;` / tab, decimal comma), UTF-8 BOM, CRLF and
//! quoted fields (through the `csv` crate); ragged rows are confined to their day by the table.

use std::path::Path;

use super::error::{FileError, Result};
use super::options::ParseOptions;
use super::table::{Cell, CultureTable, RawTable, build_table};

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Picks the separator from the header line: the most frequent of `,`, `;` and tab outside
/// double quotes (ties favour `,`, then `;`).
pub(crate) fn sniff_delimiter(header_line: &[u8]) -> u8 {
    let (mut comma, mut semi, mut tab, mut quoted) = (0usize, 0usize, 0usize, false);
    for &b in header_line {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => comma += 1,
            b';' if !quoted => semi += 1,
            b'\t' if !quoted => tab += 1,
            _ => {}
        }
    }
    if tab > comma && tab > semi {
        b'\t'
    } else if semi > comma {
        b';'
    } else {
        b','
    }
}

struct CsvTable {
    headers: Vec<String>,
    records: Vec<csv::ByteRecord>,
    lines: Vec<u64>,
}

impl RawTable for CsvTable {
    fn headers(&self) -> &[String] {
        &self.headers
    }
    fn n_rows(&self) -> usize {
        self.records.len()
    }
    fn line(&self, row: usize) -> u64 {
        self.lines.get(row).copied().unwrap_or(0)
    }
    fn cell(&self, row: usize, col: usize) -> Cell<'_> {
        match self.records.get(row).and_then(|r| r.get(col)) {
            None => Cell::Missing,
            Some([]) => Cell::Missing,
            Some(b) => Cell::Text(String::from_utf8_lossy(b)),
        }
    }
    fn ragged(&self, row: usize) -> Option<usize> {
        let n = self.records.get(row)?.len();
        (n != self.headers.len()).then_some(n)
    }
}

fn csv_error(path: &Path, e: &csv::Error) -> FileError {
    FileError::Csv {
        path: path.to_path_buf(),
        row: e.position().map_or(0, |p| p.line()),
        message: e.to_string(),
    }
}

/// Byte offset where a record starts. The parser reports the end of the previous line
/// (the `\n` after CRLF, or the start of skipped blank lines); a record never starts with a
/// line terminator, so skip those.
fn record_start(bytes: &[u8], offset: u64) -> usize {
    let mut o = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    while matches!(bytes.get(o), Some(b'\r' | b'\n')) {
        o += 1;
    }
    o
}

/// Parses CSV bytes into a [`CultureTable`].
pub(crate) fn parse_csv(bytes: &[u8], path: &Path, options: &ParseOptions) -> Result<CultureTable> {
    let bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(FileError::Empty {
            path: path.to_path_buf(),
        });
    }
    let header_end = bytes
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(bytes.len());
    let delimiter = options
        .delimiter
        .unwrap_or_else(|| sniff_delimiter(&bytes[..header_end]));
    let decimal_comma = options.decimal_comma.unwrap_or(delimiter != b',');

    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let headers: Vec<String> = reader
        .byte_headers()
        .map_err(|e| csv_error(path, &e))?
        .iter()
        .map(|h| String::from_utf8_lossy(h).trim().to_string())
        .collect();
    if headers.iter().all(String::is_empty) {
        return Err(FileError::Empty {
            path: path.to_path_buf(),
        });
    }

    let mut records = Vec::new();
    let mut lines = Vec::new();
    let mut ignored_partial_line = false;
    let mut record = csv::ByteRecord::new();
    // line numbers are counted here: the parser's own count is off by one after CRLF
    let (mut counted_to, mut line) = (0usize, 1u64);
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(csv_error(path, &e)),
        }
        let start = record_start(bytes, record.position().map_or(0, |p| p.byte()));
        if start > counted_to {
            line += bytes[counted_to..start]
                .iter()
                .filter(|&&b| b == b'\n')
                .count() as u64;
            counted_to = start;
        }
        if record.iter().all(<[u8]>::is_empty) {
            continue; // a line of separators only (spreadsheet padding)
        }
        // the unterminated tail of a file a writer may still be appending to
        if options.tolerate_partial_last_line && !bytes[start..].contains(&b'\n') {
            ignored_partial_line = true;
            break;
        }
        // a ragged line is kept: the table confines it to its day (or, when its day cannot be
        // read, reports it as a whole-file error)
        records.push(record.clone());
        lines.push(line);
    }
    let table = CsvTable {
        headers,
        records,
        lines,
    };
    build_table(
        &table,
        path,
        options,
        Some(delimiter),
        decimal_comma,
        ignored_partial_line,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    #[test]
    fn sniffing_counts_outside_quotes() {
        assert_eq!(sniff_delimiter(b"day,VCD,via"), b',');
        assert_eq!(sniff_delimiter(b"day;VCD;via"), b';');
        assert_eq!(sniff_delimiter(b"day\tVCD\tvia"), b'\t');
        assert_eq!(sniff_delimiter(b"\"day,x\";\"a,b\";c"), b';');
        assert_eq!(sniff_delimiter(b"day"), b',');
    }

    #[test]
    fn cell_text_is_lossy_for_invalid_utf8() {
        let t = CsvTable {
            headers: vec!["a".into()],
            records: vec![csv::ByteRecord::from(vec![&b"\xff1"[..]])],
            lines: vec![2],
        };
        match t.cell(0, 0) {
            Cell::Text(Cow::Owned(s)) => assert_eq!(s, "\u{FFFD}1"),
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(t.cell(5, 0), Cell::Missing));
    }
}
