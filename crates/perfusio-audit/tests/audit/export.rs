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

#[cfg(feature = "polars")]
#[test]
fn parquet_export_round_trips_through_polars() {
    use polars::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    let (path, receipts) = write_demo(dir.path(), "a.jsonl", 80, 31);
    let out = dir.path().join("a.parquet");
    assert_eq!(
        perfusio_audit::export_parquet_file(&path, &out).unwrap(),
        80
    );
    let df = ParquetReader::new(std::fs::File::open(&out).unwrap())
        .finish()
        .unwrap();
    assert_eq!(df.height(), 80);
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(names, EXPORT_COLUMNS.to_vec());
    let hashes = df.column("hash").unwrap().str().unwrap();
    assert_eq!(hashes.get(79), Some(receipts[79].hash.as_str()));
    let seq = df.column("seq").unwrap().u64().unwrap();
    assert_eq!(seq.get(0), Some(1));
}
