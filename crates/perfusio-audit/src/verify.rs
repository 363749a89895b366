//! Verification of a log: schema, canonical form, record hashes, chain links and sequence.

use std::fmt;
use std::path::Path;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::canonical::hex;
use crate::error::{AuditError, Result};
use crate::record::{Actor, GENESIS, timestamp_is_valid};
use crate::strict::{Members, canonical_object};

/// Why verification failed, as reported for the first bad record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TamperKind {
    /// A record's content no longer matches its hash, or its `prev` no longer matches the
    /// previous record (which was then rewritten with a recomputed hash).
    Edited,
    /// One or more records are missing from the middle (or the start) of the chain.
    Deleted,
    /// A record that does not belong to the chain was inserted.
    Inserted,
    /// A record appears twice.
    Duplicated,
    /// Records are present but out of order.
    Reordered,
    /// A line is not a well-formed record: invalid JSON, not in canonical form, wrong members.
    Malformed,
    /// The first record's `prev` is not the genesis value.
    WrongGenesis,
    /// The final line is incomplete (no newline): a write was interrupted.
    TornTail,
    /// The chain is intact but its head is not the expected head: records were cut off the end
    /// or appended after the head was taken.
    HeadMismatch,
}

impl TamperKind {
    /// Lowercase name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Edited => "edited",
            Self::Deleted => "deleted",
            Self::Inserted => "inserted",
            Self::Duplicated => "duplicated",
            Self::Reordered => "reordered",
            Self::Malformed => "malformed",
            Self::WrongGenesis => "wrong genesis",
            Self::TornTail => "torn tail",
            Self::HeadMismatch => "head mismatch",
        }
    }
}

impl fmt::Display for TamperKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first bad record of a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyFailure {
    /// Sequence number at which the chain breaks (the expected sequence number at that point,
    /// or for duplicates and insertions the sequence number that appears twice).
    pub seq: u64,
    /// 1-based line number in the file.
    pub line: u64,
    /// Classification.
    pub kind: TamperKind,
    /// Explanation.
    pub detail: String,
}

impl fmt::Display for VerifyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "record {} (line {}): {}: {}",
            self.seq, self.line, self.kind, self.detail
        )
    }
}

/// Options for [`verify_bytes`] and [`verify_file`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Head hash kept elsewhere (e.g. printed when the run finished). When set, the log must end
    /// exactly at this hash, which proves that nothing was cut off the end.
    pub expect_head: Option<String>,
}

/// Summary of a log that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Number of records.
    pub records: u64,
    /// Hash of the last record ([`GENESIS`] for an empty log).
    pub head: String,
    /// Whether the last record is `run_finished`. If not, records may have been cut off the end;
    /// only an expected head can prove otherwise.
    pub finished: bool,
    /// Whether the head was checked against [`VerifyOptions::expect_head`].
    pub head_checked: bool,
}

impl VerifyReport {
    /// Whether the log may have lost records at its end (no `run_finished` and no head check).
    pub fn possibly_truncated(&self) -> bool {
        !self.finished && !self.head_checked
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OK {} records, head hash {}", self.records, self.head)?;
        if self.head_checked {
            write!(f, " (matches the expected head)")?;
        } else if !self.finished {
            write!(
                f,
                "; warning: the run has no run_finished record, so records may have been cut off \
                 the end; pass --expect-head HASH to prove the log is complete"
            )?;
        }
        Ok(())
    }
}

/// What a scan found; used by the verifier and by the writer when it resumes.
#[derive(Debug)]
pub(crate) struct Scan {
    pub(crate) records: u64,
    pub(crate) head: String,
    /// Kind of the last record ("" for none).
    pub(crate) last_kind: String,
    /// Culture day of the last record (0 for none).
    pub(crate) last_day: f64,
    pub(crate) first_run_id: Option<String>,
    /// Byte length of the complete, verified lines.
    pub(crate) valid_len: usize,
    /// Hashes of all records, index = seq - 1.
    pub(crate) hashes: Vec<String>,
    pub(crate) failure: Option<VerifyFailure>,
}

/// Verify a log held in memory.
///
/// The per-line checks (canonical form, schema, own hash) of logs with at least 4096 lines run
/// on up to 8 threads (`std::thread::available_parallelism`); the chain is then linked in order,
/// so the result, including which record is reported first, does not depend on the threads.
///
/// ```
/// # fn main() -> perfusio_audit::Result<()> {
/// use perfusio_audit::{verify_bytes, VerifyOptions, TamperKind};
/// assert_eq!(verify_bytes(b"", &VerifyOptions::default()).unwrap().records, 0);
/// let failure = verify_bytes(b"{\"seq\":1}\n", &VerifyOptions::default()).unwrap_err();
/// assert_eq!(failure.kind, TamperKind::Malformed);
/// assert_eq!(failure.seq, 1);
/// # Ok(()) }
/// ```
pub fn verify_bytes(
    bytes: &[u8],
    opts: &VerifyOptions,
) -> std::result::Result<VerifyReport, VerifyFailure> {
    let scan = scan(bytes);
    if let Some(f) = scan.failure {
        return Err(f);
    }
    let finished = scan.last_kind == "run_finished";
    let mut head_checked = false;
    if let Some(expected) = &opts.expect_head {
        let expected = expected.trim().to_ascii_lowercase();
        if expected != scan.head {
            let n = scan.records;
            return Err(match scan.hashes.iter().position(|h| *h == expected) {
                Some(i) => VerifyFailure {
                    seq: i as u64 + 2,
                    line: i as u64 + 2,
                    kind: TamperKind::HeadMismatch,
                    detail: format!(
                        "the expected head is the hash of record {}, but the log continues to record \
                         {n}: records were appended after the head was taken",
                        i + 1
                    ),
                },
                None => VerifyFailure {
                    seq: n + 1,
                    line: n + 1,
                    kind: TamperKind::HeadMismatch,
                    detail: format!(
                        "the log ends at record {n} with head {}, and the expected head {expected} \
                         is not in it: records were cut off the end, or the head belongs to another log",
                        scan.head
                    ),
                },
            });
        }
        head_checked = true;
    }
    Ok(VerifyReport {
        records: scan.records,
        head: scan.head,
        finished,
        head_checked,
    })
}

/// Verify a log file. Tampering is reported as [`AuditError::Verification`].
pub fn verify_file(path: impl AsRef<Path>, opts: &VerifyOptions) -> Result<VerifyReport> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| AuditError::io("reading", path, e))?;
    verify_bytes(&bytes, opts).map_err(|failure| AuditError::Verification {
        path: path.to_path_buf(),
        failure,
    })
}

/// SHA-256 (hex) of a canonical record line without its `"hash":"<64 hex>",` member, given the
/// member's value (a sub-slice of `line`).
fn record_hash_of_line(line: &[u8], hash_value: &[u8]) -> Option<String> {
    // Offset of the value inside the line; `"hash":` (7 bytes) precedes it, a `,` follows it.
    let value_at = (hash_value.as_ptr() as usize).checked_sub(line.as_ptr() as usize)?;
    let cut = value_at.checked_sub(7)?;
    let end = value_at + hash_value.len() + 1;
    if line.get(cut..value_at) != Some(&b"\"hash\":"[..]) || line.get(end - 1) != Some(&b',') {
        return None;
    }
    let mut h = Sha256::new();
    h.update(&line[..cut]);
    h.update(&line[end..]);
    Some(hex(&h.finalize()))
}

/// Loose look at a line: its `seq` and `prev`, if it parses at all.
fn peek(line: &[u8]) -> Option<(u64, String)> {
    let v: Value = serde_json::from_slice(line).ok()?;
    let seq = v.get("seq")?.as_u64()?;
    let prev = v.get("prev")?.as_str()?.to_string();
    Some((seq, prev))
}

pub(crate) fn scan(bytes: &[u8]) -> Scan {
    let mut s = Scan {
        records: 0,
        head: GENESIS.to_string(),
        last_kind: String::new(),
        last_day: 0.0,
        first_run_id: None,
        valid_len: 0,
        hashes: Vec::new(),
        failure: None,
    };
    // Complete lines end with '\n'; whatever follows the last '\n' is a torn tail.
    let complete_len = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
    let lines: Vec<&[u8]> = if complete_len == 0 {
        Vec::new()
    } else {
        bytes[..complete_len - 1].split(|b| *b == b'\n').collect()
    };
    // The per-line checks (canonical form, schema, own hash) are independent of each other:
    // run them first, on several threads for large logs; then link the chain in order.
    let mut offset = 0usize;
    let mut checked = check_lines(bytes, &lines).into_iter();
    for (i, line) in lines.iter().enumerate() {
        let expected = s.records + 1;
        let line_no = i as u64 + 1;
        let fail = |kind, seq, detail: String| {
            Some(VerifyFailure {
                seq,
                line: line_no,
                kind,
                detail,
            })
        };
        let next_fits = |prev: &str| {
            lines
                .get(i + 1)
                .and_then(|l| peek(l))
                .is_some_and(|(q, p)| q == expected && p == prev)
        };
        let (rec, computed) = match checked.next() {
            Some(Ok(pair)) => pair,
            Some(Err(d)) => {
                s.failure = fail(TamperKind::Malformed, expected, d);
                return s;
            }
            None => {
                s.failure = fail(
                    TamperKind::Malformed,
                    expected,
                    "line was not checked".into(),
                );
                return s;
            }
        };
        let self_ok = computed == rec.hash;
        if rec.seq == expected {
            if i == 0 && rec.prev != GENESIS {
                s.failure = fail(
                    TamperKind::WrongGenesis,
                    expected,
                    format!(
                        "the first record's prev must be {GENESIS}, found {}",
                        rec.prev
                    ),
                );
                return s;
            }
            if !self_ok || rec.prev != s.head {
                if next_fits(&s.head) {
                    s.failure = fail(
                        TamperKind::Inserted,
                        expected,
                        format!(
                            "this line does not belong to the chain and the next line is the real \
                             record {expected}: it was inserted"
                        ),
                    );
                } else if !self_ok {
                    s.failure = fail(
                        TamperKind::Edited,
                        expected,
                        format!(
                            "the content does not match its hash (stored {}, computed {computed})",
                            rec.hash
                        ),
                    );
                } else {
                    s.failure = fail(
                        TamperKind::Edited,
                        expected,
                        format!(
                            "prev {} is not the hash of record {} ({}): that record was rewritten \
                             with a recomputed hash, or this one was replaced",
                            rec.prev,
                            expected - 1,
                            s.head
                        ),
                    );
                }
                return s;
            }
        } else if !self_ok {
            s.failure = fail(
                TamperKind::Edited,
                expected,
                format!(
                    "expected record {expected}, found a line claiming seq {} whose content does not \
                     match its hash",
                    rec.seq
                ),
            );
            return s;
        } else if rec.seq < expected {
            let earlier = usize::try_from(rec.seq - 1)
                .ok()
                .and_then(|k| s.hashes.get(k));
            s.failure = if earlier.is_some_and(|h| h == rec.hash) {
                fail(
                    TamperKind::Duplicated,
                    rec.seq,
                    format!(
                        "record {} appears again (expected record {expected})",
                        rec.seq
                    ),
                )
            } else {
                fail(
                    TamperKind::Inserted,
                    rec.seq,
                    format!(
                        "a second, different record with seq {} (expected record {expected}): one of \
                         them was inserted",
                        rec.seq
                    ),
                )
            };
            return s;
        } else {
            // rec.seq > expected: missing or moved records.
            let later = lines
                .iter()
                .enumerate()
                .skip(i + 1)
                .find(|(_, l)| peek(l).is_some_and(|(q, _)| q == expected))
                .map(|(j, _)| j + 1);
            s.failure = match later {
                Some(at) => fail(
                    TamperKind::Reordered,
                    expected,
                    format!(
                        "found record {} where record {expected} belongs; record {expected} is at line {at}",
                        rec.seq
                    ),
                ),
                None => fail(
                    TamperKind::Deleted,
                    expected,
                    format!(
                        "records {expected} to {} are missing (found record {} next)",
                        rec.seq - 1,
                        rec.seq
                    ),
                ),
            };
            return s;
        }
        // The record extends the chain.
        if s.first_run_id.is_none() {
            s.first_run_id = Some(rec.run_id.clone());
        }
        s.records = rec.seq;
        s.head.clear();
        s.head.push_str(rec.hash);
        s.hashes.push(rec.hash.to_string());
        s.last_kind = rec.kind;
        s.last_day = rec.day;
        offset += line.len() + 1;
        s.valid_len = offset;
    }
    if complete_len < bytes.len() {
        let expected = s.records + 1;
        s.failure = Some(VerifyFailure {
            seq: expected,
            line: lines.len() as u64 + 1,
            kind: TamperKind::TornTail,
            detail: format!(
                "the final {} bytes have no terminating newline: a write was interrupted",
                bytes.len() - complete_len
            ),
        });
    }
    s
}

/// Logs with at least this many lines are checked on several threads.
const PARALLEL_MIN_LINES: usize = 4096;

/// Check each line on its own: canonical form, schema, and its own hash (computed, not yet
/// compared). Results are in line order.
fn check_lines<'a>(
    bytes: &'a [u8],
    lines: &[&'a [u8]],
) -> Vec<std::result::Result<(Light<'a>, String), String>> {
    // Validate UTF-8 once for the whole file; lines past the first invalid byte are checked
    // again one by one, so that the error lands on the right line.
    let valid_up_to = std::str::from_utf8(bytes).map_or_else(|e| e.valid_up_to(), |_| bytes.len());
    let base = bytes.as_ptr() as usize;
    let one = |line: &&'a [u8]| {
        let end = (line.as_ptr() as usize - base) + line.len();
        check_line(line, end <= valid_up_to)
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    if threads < 2 || lines.len() < PARALLEL_MIN_LINES {
        return lines.iter().map(one).collect();
    }
    let chunk = lines.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = lines
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(one).collect::<Vec<_>>()))
            .collect();
        let mut all = Vec::with_capacity(lines.len());
        for h in handles {
            match h.join() {
                Ok(part) => all.extend(part),
                // A checker thread cannot panic on input; if it did, report the lines as unchecked.
                Err(_) => return all,
            }
        }
        all
    })
}

fn check_line(line: &[u8], utf8_checked: bool) -> std::result::Result<(Light<'_>, String), String> {
    let members = canonical_object(line, utf8_checked)?;
    let rec = Light::from_members(&members)?;
    let computed = record_hash_of_line(line, members[2].1).ok_or("no `hash` member found")?;
    Ok((rec, computed))
}

/// The members of a record the verifier needs, checked against the schema.
#[derive(Debug)]
struct Light<'a> {
    seq: u64,
    run_id: String,
    day: f64,
    kind: String,
    prev: &'a str,
    hash: &'a str,
}

/// Member names of a record, in canonical (sorted) order.
const MEMBERS: [&str; 12] = [
    "actor",
    "day",
    "hash",
    "kind",
    "payload",
    "prev",
    "reactor_id",
    "run_id",
    "seq",
    "state_sha256",
    "ts",
    "v",
];

impl<'a> Light<'a> {
    fn from_members(m: &Members<'a>) -> std::result::Result<Self, String> {
        if m.len() != MEMBERS.len()
            || m.iter()
                .zip(MEMBERS)
                .any(|((k, _), want)| *k != want.as_bytes())
        {
            let found: Vec<String> = m
                .iter()
                .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
                .collect();
            return Err(format!(
                "a record has exactly the 12 members {}; found {}",
                MEMBERS.join(", "),
                found.join(", ")
            ));
        }
        let string = |i: usize| -> std::result::Result<String, String> {
            serde_json::from_slice::<String>(m[i].1)
                .map_err(|_| format!("`{}` must be a string", MEMBERS[i]))
        };
        let hex64 = |i: usize| -> std::result::Result<&'a str, String> {
            let v = m[i].1;
            let ok = v.len() == 66
                && v[0] == b'"'
                && v[65] == b'"'
                && v[1..65]
                    .iter()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
            match std::str::from_utf8(&v[1..v.len().max(2) - 1]) {
                Ok(h) if ok => Ok(h),
                _ => Err(format!("`{}` must be 64 lowercase hex digits", MEMBERS[i])),
            }
        };
        let actor = string(0)?;
        if Actor::parse(&actor).is_none() {
            return Err(format!(
                "`actor` must be \"system\" or \"operator:<name>\", found {actor:?}"
            ));
        }
        let day_text = m[1].1;
        let day = std::str::from_utf8(day_text)
            .ok()
            .filter(|t| t.contains(['.', 'e']))
            .and_then(|t| t.parse::<f64>().ok())
            .ok_or("`day` must be a floating-point number")?;
        let hash = hex64(2)?;
        let kind = string(3)?;
        if m[4].1.first() != Some(&b'{') {
            return Err("`payload` must be an object".into());
        }
        let prev = hex64(5)?;
        string(6)?;
        let run_id = string(7)?;
        let seq = std::str::from_utf8(m[8].1)
            .ok()
            .and_then(|t| t.parse::<u64>().ok())
            .filter(|s| *s >= 1)
            .ok_or("`seq` must be an integer >= 1")?;
        hex64(9)?;
        let ts = string(10)?;
        if !timestamp_is_valid(&ts) {
            return Err(format!("`ts` {ts:?} is not YYYY-MM-DDTHH:MM:SS.ffffffZ"));
        }
        if m[11].1 != b"1" {
            return Err(format!(
                "`v` must be 1, found {}",
                String::from_utf8_lossy(m[11].1)
            ));
        }
        Ok(Self {
            seq,
            run_id,
            day,
            kind,
            prev,
            hash,
        })
    }
}
