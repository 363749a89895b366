//! Shared fixtures.

use std::path::{Path, PathBuf};

use perfusio_audit::{AuditWriter, FsyncPolicy, Receipt, WriterOptions, demo};

/// Write the demo run of `n` records (seed `seed`) to `dir/name` without per-record fsync.
pub(crate) fn write_demo(dir: &Path, name: &str, n: usize, seed: u64) -> (PathBuf, Vec<Receipt>) {
    let path = dir.join(name);
    let opts = WriterOptions::new(format!("run-{seed}"), "R1").fsync(FsyncPolicy::Never);
    let (mut w, report) = AuditWriter::open(&path, opts).unwrap();
    assert_eq!(report.records_found, 0);
    let receipts = demo::simulated_run(n, seed)
        .into_iter()
        .map(|e| w.append(e).unwrap())
        .collect();
    w.close().unwrap();
    (path, receipts)
}

/// The lines of a file including their newlines.
pub(crate) fn lines(path: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    bytes
        .split_inclusive(|b| *b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

/// Concatenate lines.
pub(crate) fn join(lines: &[Vec<u8>]) -> Vec<u8> {
    lines.concat()
}
