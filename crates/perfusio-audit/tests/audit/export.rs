//! CSV export.

use perfusio_audit::{EXPORT_COLUMNS, export_csv_file, read_verified};

use crate::common::write_demo;

#[test]
fn csv_export_has_one_row_per_record() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_demo(dir.path(), "a.jsonl", 120, 30);
    let out = dir.path().join("a.csv");
    assert_eq!(export_csv_file(&path, &out).unwrap(), 120);
    let (_, recs) = read_verified(&path).unwrap();
    let mut rdr = csv::Reader::from_path(&out).unwrap();
    assert_eq!(
        rdr.headers().unwrap().iter().collect::<Vec<_>>(),
        EXPORT_COLUMNS.to_vec()
    );
    let rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 120);
    for (row, r) in rows.iter().zip(&recs) {
        assert_eq!(row[0].parse::<u64>().unwrap(), r.seq);
        assert_eq!(&row[1], r.ts);
        assert!((row[4].parse::<f64>().unwrap() - r.day).abs() < 1e-12);
        assert_eq!(&row[6], r.kind);
        let payload: serde_json::Value = serde_json::from_str(&row[7]).unwrap();
        assert_eq!(payload, r.payload);
        assert_eq!(&row[10], r.hash);
    }
}
