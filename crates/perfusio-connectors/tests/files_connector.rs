//! Integration tests of the file connector (issue 6, FilesystemStore): the T06 tutorial
//! file, CSV dialects, every malformed case with its line and column, follow mode, the
//! setpoint log, a property test over random bytes and (feature `polars`) Parquet and
//! DataFrames. Every file lives in a temp dir.

use std::path::{Path, PathBuf};
use std::time::Duration;

use approx::assert_relative_eq;
use perfusio_connectors::files::{
    ColumnTarget, CultureTable, FileError, FileStoreConfig, FilesystemStore, FollowOptions, Layout,
    ParseOptions, Unit, read_setpoint_log, setpoint_log_header,
};
use perfusio_core::{
    Connector, ConnectorError, Control, CultureDay, DEFAULT_AMBR250_DESIGN_SPACE as DS, Derived,
    Origin, Quantity, RawValue, RejectionReason, Sample, Setpoints, Species, Variable,
    read_validated,
};

const T06: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/t06_culture.csv");

fn parse(text: &str) -> Result<CultureTable, FileError> {
    CultureTable::from_csv_bytes(text.as_bytes(), "test.csv", &ParseOptions::default())
}

fn parse_with(text: &str, o: &ParseOptions) -> Result<CultureTable, FileError> {
    CultureTable::from_csv_bytes(text.as_bytes(), "test.csv", o)
}

/// The validated sample of `day` read through the trait (the one validation step).
async fn read(c: &impl Connector, day: CultureDay) -> Result<Sample, ConnectorError> {
    read_validated(c, day, &DS).await.map(|v| v.sample)
}

/// `(line, column)` of a rejection read from a file.
fn cell_of(origin: &Origin) -> (u64, &str) {
    match origin {
        Origin::Cell { line, column, .. } => (*line, column.as_str()),
        other => panic!("not a cell: {other}"),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn follow(wait_ms: u64, poll_ms: u64) -> FollowOptions {
    FollowOptions {
        wait: Duration::from_millis(wait_ms),
        poll_interval: Duration::from_millis(poll_ms),
    }
}

mod t06 {
    use super::*;

    #[tokio::test]
    async fn tutorial_file_reads_with_viability_converted_and_controls() {
        let store =
            FilesystemStore::open(FileStoreConfig::new(T06).with_reactor_id("R1"), DS).unwrap();
        let s = read(&store, 5).await.unwrap();
        // day 5 row: 5,10.4,0.95,4.0,13.5,2.1,1.6,130,1.0,0
        assert_relative_eq!(s.get(Species::VCD).unwrap(), 10.4, max_relative = 1e-12);
        assert_relative_eq!(s.get(Species::Via).unwrap(), 95.0, max_relative = 1e-12);
        assert_relative_eq!(s.get(Species::Glc).unwrap(), 4.0, max_relative = 1e-12);
        assert_relative_eq!(s.get(Species::Lac).unwrap(), 13.5, max_relative = 1e-12);
        assert_relative_eq!(s.get(Species::Gln).unwrap(), 2.1, max_relative = 1e-12);
        assert_relative_eq!(s.get(Species::Glu).unwrap(), 1.6, max_relative = 1e-12);
        assert_relative_eq!(s.get(Species::Titer).unwrap(), 130.0, max_relative = 1e-12);
        assert_eq!(s.get(Species::Amm), None);
        assert_eq!(s.get(Species::Pyr), None);
        assert_eq!(s.control(Control::PerfusionRate), Some(1.0));
        assert_eq!(s.control(Control::BleedRate), Some(0.0));
        assert_eq!(s.control(Control::Temperature), None);
        assert_eq!(s.reactor_id.as_deref(), Some("R1"));
        assert!(
            read_validated(&store, 5, &DS)
                .await
                .unwrap()
                .rejections
                .is_empty()
        );

        let report = store.report().unwrap();
        assert_eq!(report.layout, Layout::Wide);
        assert_eq!(report.rows, 14);
        assert!(report.unknown.is_empty(), "{:?}", report.unknown);
        assert_eq!(report.conversions.len(), 1);
        let c = &report.conversions[0];
        assert_eq!(
            (c.variable, c.column.as_str(), c.unit, c.detected),
            (
                Variable::Species(Species::Via),
                "viability",
                Unit::Fraction,
                true
            )
        );
        let t = store.table().unwrap();
        assert_eq!(t.days().collect::<Vec<_>>(), (0..14).collect::<Vec<_>>());
        let last = read(&store, 13).await.unwrap();
        assert_relative_eq!(last.get(Species::Via).unwrap(), 88.0, max_relative = 1e-12);
        assert_eq!(last.control(Control::BleedRate), Some(0.2));
        let e = read(&store, 14).await.unwrap_err();
        assert!(
            matches!(e, ConnectorError::NotYetAvailable { day: 14, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("the last day in it is 13"), "{e}");
    }

    #[test]
    fn example_copy_matches_test_fixture() {
        let root =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/data/t06_culture.csv");
        assert_eq!(
            std::fs::read(root).unwrap(),
            std::fs::read(T06).unwrap(),
            "examples/data/t06_culture.csv must equal tests/data/t06_culture.csv"
        );
    }
}

mod dialects {
    use super::*;

    #[test]
    fn bom_crlf_and_quoted_fields() {
        let text = "\u{feff}\"day\",\"VCD\",\"viability\",\"operator, shift\"\r\n\
                    0,\"0.5\",97,\"Ann, early\"\r\n1,0.9,96.5,\"Bob \"\"B\"\"\"\r\n";
        let t = parse(text).unwrap();
        assert_eq!(t.len(), 2);
        let s = &t.get(1).unwrap().sample;
        assert_relative_eq!(s.get(Species::VCD).unwrap(), 0.9, max_relative = 1e-12);
        assert_relative_eq!(s.get(Species::Via).unwrap(), 96.5, max_relative = 1e-12);
        assert_eq!(t.report().unknown, ["operator, shift"]);
        assert_eq!(t.report().delimiter, Some(b','));
        assert!(t.report().conversions.is_empty());
        assert_eq!(t.get(1).unwrap().row, 3);
        // line numbers stay right after CRLF (the csv parser's own count is one short)
        let t = parse("day,VCD\r\n0,1\r\n1,2\r\n2,x\r\n").unwrap();
        let r = &t.validated(2, &DS).unwrap().rejections[0];
        assert_eq!(cell_of(&r.origin), (4, "VCD"));
        let t = parse("day,VCD\r\n0,1\r\n\r\n1\r\n").unwrap();
        assert_eq!(t.malformed(1).map(|m| m.row), Some(4));
    }

    #[test]
    fn semicolons_with_decimal_commas_are_detected() {
        let text = "Day;VCD;Viability;Glucose\n0;0,5;0,97;6,25\n1;1,25;0,96;5\n";
        let t = parse(text).unwrap();
        assert_eq!(t.report().delimiter, Some(b';'));
        assert!(t.report().decimal_comma);
        let s = &t.get(0).unwrap().sample;
        assert_relative_eq!(s.get(Species::VCD).unwrap(), 0.5, max_relative = 1e-12);
        assert_relative_eq!(s.get(Species::Via).unwrap(), 97.0, max_relative = 1e-12);
        assert_relative_eq!(s.get(Species::Glc).unwrap(), 6.25, max_relative = 1e-12);
        assert_relative_eq!(
            t.get(1).unwrap().sample.get(Species::VCD).unwrap(),
            1.25,
            max_relative = 1e-12
        );
        // an explicit option wins: tab separated with decimal points
        let o = ParseOptions::default()
            .with_delimiter(b'\t')
            .with_decimal_comma(false);
        let t = parse_with("day\tVCD\n0\t1.5\n", &o).unwrap();
        assert_relative_eq!(t.get(0).unwrap().sample.get(Species::VCD).unwrap(), 1.5);
        let t = parse_with("day\tVCD\n0\t1,5\n", &o).unwrap();
        let r = &t.validated(0, &DS).unwrap().rejections[0];
        assert_eq!((r.code(), cell_of(&r.origin)), ("not_a_number", (2, "VCD")));
    }

    #[test]
    fn missing_markers_blank_lines_and_separator_only_lines() {
        let text = "day,VCD,glucose\n0,NA,\n\n1,2.0,n/a\n,,\n2,3.0,4.5\n";
        let t = parse(text).unwrap();
        assert_eq!(t.days().collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(t.get(0).unwrap().sample.n_present(), 0);
        assert_eq!(t.get(1).unwrap().sample.get(Species::Glc), None);
        assert_eq!(t.get(2).unwrap().row, 6);
    }

    #[test]
    fn explicit_mapping_and_declared_units_win() {
        let text = "Culture Time,Xv (cells/mL),via,temp,reactor\n0,500000,1.0,37,R1\n1,900000,0.98,36.5,R1\n";
        let o = ParseOptions::default()
            .with_columns("culture time=day, Xv (cells/mL)=VCD, reactor=ignore")
            .unwrap()
            .with_units("vcd=x1e-6, viability=%")
            .unwrap();
        let t = parse_with(text, &o).unwrap();
        let s = &t.get(1).unwrap().sample;
        assert_relative_eq!(s.get(Species::VCD).unwrap(), 0.9, max_relative = 1e-12);
        // declared as % although <= 1.5: not converted
        assert_relative_eq!(s.get(Species::Via).unwrap(), 0.98, max_relative = 1e-12);
        assert_eq!(s.control(Control::Temperature), Some(36.5));
        assert!(t.report().unknown.is_empty());
        assert_eq!(t.report().conversions.len(), 1);
        assert_eq!(t.report().conversions[0].unit, Unit::Factor(1e-6));
        assert!(!t.report().conversions[0].detected);
        let roles: Vec<_> = t.report().columns.iter().map(|(_, r)| *r).collect();
        assert_eq!(roles[4], Some(ColumnTarget::Ignore));
        // declared fraction converts values above 1.5 too
        let o = ParseOptions::default().with_unit(Variable::Species(Species::Via), Unit::Fraction);
        let t = parse_with("day,viability\n0,0.9\n", &o).unwrap();
        assert_relative_eq!(t.get(0).unwrap().sample.get(Species::Via).unwrap(), 90.0);
    }

    #[test]
    fn viability_above_threshold_anywhere_stays_percent() {
        let t = parse("day,viability\n0,1.2\n1,96\n").unwrap();
        assert_relative_eq!(t.get(0).unwrap().sample.get(Species::Via).unwrap(), 1.2);
        assert!(t.report().conversions.is_empty());
    }

    #[test]
    fn long_layout_with_controls_derived_and_unknown_names() {
        let text = "day,species,value\n0,VCD,0.5\n0,viability,0.97\n1,VCD,0.9\n\
                    1,perfusion_rate,1.5\n1,Diam,20.9\n1,osmolality,310\n0,glucose,6\n";
        let t = parse(text).unwrap();
        assert_eq!(t.report().layout, Layout::Long);
        assert_eq!(t.report().unknown, ["osmolality"]);
        let d0 = &t.get(0).unwrap().sample;
        assert_relative_eq!(d0.get(Species::Via).unwrap(), 97.0, max_relative = 1e-12);
        assert_relative_eq!(d0.get(Species::Glc).unwrap(), 6.0);
        let d1 = &t.get(1).unwrap().sample;
        assert_eq!(d1.control(Control::PerfusionRate), Some(1.5));
        assert_eq!(d1.derived[Derived::Diam.index()], Some(20.9));
        assert_eq!(d1.get(Species::Via), None);
        // validation points at the value's line in a long file
        let text = "day,species,value\n0,VCD,0.5\n0,glucose,25\n";
        let c = parse(text).unwrap().validated(0, &DS).unwrap();
        assert_eq!(c.rejections.len(), 1);
        assert_eq!(cell_of(&c.rejections[0].origin), (3, "value"));
    }

    #[test]
    fn rejections_carry_line_column_value_and_reason() {
        let text = "day,VCD,viability,titer,VCV\n0,0.5,97,0,0.2\n1,-0.5,101,6000,61\n";
        let t = parse(text).unwrap();
        let c = t.validated(1, &DS).unwrap();
        let got: Vec<_> = c
            .rejections
            .iter()
            .map(|r| {
                let (line, column) = cell_of(&r.origin);
                (line, column.to_string(), r.value.as_number(), r.reason)
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    3,
                    "VCD".into(),
                    Some(-0.5),
                    RejectionReason::BelowBound { bound: 0.0 }
                ),
                (
                    3,
                    "viability".into(),
                    Some(101.0),
                    RejectionReason::AboveBound { bound: 100.0 }
                ),
                (
                    3,
                    "titer".into(),
                    Some(6000.0),
                    RejectionReason::AboveBound { bound: 5000.0 }
                ),
                (
                    3,
                    "VCV".into(),
                    Some(61.0),
                    RejectionReason::AboveBound { bound: 60.0 }
                ),
            ]
        );
        assert_eq!(c.sample.n_present(), 0);
        assert_eq!(
            c.rejections[1].to_string(),
            "Via = 101 % is above 100 (test.csv line 3, column `viability`)"
        );
    }

    #[test]
    fn a_column_named_t_is_unknown_not_a_temperature() {
        let t = parse("day,t,VCD\n0,0.0,0.5\n1,24.0,0.9\n").unwrap();
        assert_eq!(t.report().unknown, ["t"]);
        assert_eq!(t.report().columns[1], ("t".to_string(), None));
        let s = &t.get(1).unwrap().sample;
        assert_eq!(s.control(Control::Temperature), None);
        assert!(t.raw(1).unwrap().get(Control::Temperature).is_none());
        // mapped explicitly, it is what the mapping says
        let o = ParseOptions::default()
            .with_columns("t=temperature")
            .unwrap();
        let t = parse_with("day,t\n0,36.5\n", &o).unwrap();
        assert_eq!(
            t.get(0).unwrap().sample.control(Control::Temperature),
            Some(36.5)
        );
    }
}

mod malformed {
    use super::*;

    #[test]
    fn missing_day_column() {
        let e = parse("VCD,viability\n1,95\n").unwrap_err();
        assert!(
            matches!(&e, FileError::MissingDayColumn { found, .. } if found == "VCD, viability")
        );
        assert_eq!(
            e.to_string(),
            "test.csv has no `day` column (columns: VCD, viability); rename the day column to \
             `day` or map it explicitly, e.g. `culture_time=day`"
        );
    }

    #[test]
    fn empty_file_bom_only_and_whitespace() {
        for text in ["", "\u{feff}", " \r\n\n"] {
            let e = parse(text).unwrap_err();
            assert!(matches!(e, FileError::Empty { .. }), "{text:?}: {e}");
        }
        // a header without rows is a valid, empty table
        let t = parse("day,VCD\n").unwrap();
        assert!(t.is_empty());
        assert_eq!(t.last_day(), None);
    }

    #[test]
    fn non_numeric_cells_are_rejected_with_line_column_and_text() {
        // not a whole-file error (issue 9): the day is read, the cell is rejected
        let t = parse("day,VCD,glucose\n0,0.5,6\n1,0.9,high\n").unwrap();
        assert_eq!(
            t.get(1).unwrap().unreadable(),
            [(Quantity::Species(Species::Glc), "high".to_string())]
        );
        let v = t.validated(1, &DS).unwrap();
        assert_relative_eq!(v.sample.get(Species::VCD).unwrap(), 0.9);
        assert_eq!(v.rejections.len(), 1);
        let r = &v.rejections[0];
        assert_eq!(r.value, RawValue::Text("high".into()));
        assert_eq!(
            (r.code(), cell_of(&r.origin)),
            ("not_a_number", (3, "glucose"))
        );
        assert_eq!(
            r.to_string(),
            "Glc: `high` is not a number (test.csv line 3, column `glucose`)"
        );
        // a decimal comma is not a number in a comma-separated file
        let t = parse("day,VCD\n0,\"0,5\"\n").unwrap();
        let r = &t.validated(0, &DS).unwrap().rejections[0];
        assert_eq!(
            (r.value.to_string(), cell_of(&r.origin)),
            ("0,5".to_string(), (2, "VCD"))
        );
        // a control cell too
        let t = parse("day,perfusion_rate\n0,fast\n").unwrap();
        let r = &t.validated(0, &DS).unwrap().rejections[0];
        assert_eq!(r.variable, Quantity::Control(Control::PerfusionRate));
    }

    #[test]
    fn non_finite_values_are_rejected_not_fatal() {
        for cell in ["NaN", "inf", "-Infinity", "1e999"] {
            let t = parse(&format!("day,VCD\n0,1\n1,{cell}\n")).unwrap();
            let v = t.validated(1, &DS).unwrap();
            assert_eq!(v.sample.get(Species::VCD), None, "{cell}");
            let r = &v.rejections[0];
            assert_eq!(
                (r.code(), cell_of(&r.origin)),
                ("non_finite", (3, "VCD")),
                "{cell}"
            );
            assert!(r.value.as_number().is_some_and(|x| !x.is_finite()));
        }
        // a NaN does not stop the viability unit detection
        let t = parse("day,viability\n0,0.97\n1,NaN\n").unwrap();
        assert_relative_eq!(t.get(0).unwrap().sample.get(Species::Via).unwrap(), 97.0);
    }

    #[test]
    fn duplicate_and_decreasing_days() {
        let e = parse("day,VCD\n0,1\n1,2\n1,3\n").unwrap_err();
        assert!(
            matches!(
                e,
                FileError::DuplicateDay {
                    row: 4,
                    day: 1,
                    first_row: 3,
                    ..
                }
            ),
            "{e}"
        );
        let e = parse("day,VCD\n0,1\n2,2\n1,3\n").unwrap_err();
        assert!(
            matches!(
                e,
                FileError::DecreasingDay {
                    row: 4,
                    day: 1,
                    previous: 2,
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(e.column(), Some("day"));
        // going back to an earlier day that exists is reported as the duplicate it is
        let e = parse("day,VCD\n0,1\n1,2\n2,3\n0,4\n").unwrap_err();
        assert!(
            matches!(
                e,
                FileError::DuplicateDay {
                    row: 5,
                    day: 0,
                    first_row: 2,
                    ..
                }
            ),
            "{e}"
        );
        let e = parse("day,species,value\n0,VCD,1\n0,vcd,2\n").unwrap_err();
        assert!(
            matches!(
                e,
                FileError::DuplicateEntry {
                    row: 3,
                    day: 0,
                    first_row: 2,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn invalid_days() {
        for (cell, reason) in [
            ("1.5", "whole"),
            ("-1", "negative"),
            ("", "missing"),
            ("x", "not a number"),
            ("1e12", "too large"),
        ] {
            let e = parse(&format!("day,VCD\n{cell},1\n")).unwrap_err();
            match &e {
                FileError::InvalidDay {
                    row: 2,
                    column,
                    reason: r,
                    ..
                } => {
                    assert_eq!(column, "day");
                    assert!(r.contains(reason), "{cell}: {r}");
                }
                other => panic!("{cell}: {other}"),
            }
        }
        // "3.0" is a whole day
        assert_eq!(parse("day,VCD\n3.0,1\n").unwrap().last_day(), Some(3));
    }

    #[test]
    fn ragged_rows_are_confined_to_their_day() {
        // issue 12: a malformed line spoils its own day, not the file
        let t = parse("day,VCD,glucose\n0,1,2\n1,2\n2,3,4\n").unwrap();
        assert_eq!(t.days().collect::<Vec<_>>(), [0, 1, 2]);
        let m = t.malformed(1).unwrap();
        assert_eq!((m.row, m.expected, m.found), (3, 3, 2));
        assert_eq!(
            m.to_string(),
            "line 3 has 2 fields, but the header has 3; none of the day's values can be \
             attributed to a column, so the day is skipped (check for a missing or extra separator)"
        );
        assert!(t.raw(1).is_none());
        assert!(t.malformed(0).is_none() && t.malformed(2).is_none());
        assert!(t.validated(2, &DS).unwrap().rejections.is_empty());
        let t = parse("day,VCD\n0,1,2\n").unwrap();
        assert_eq!(t.malformed(0).map(|m| m.found), Some(3));
        // a ragged line whose day cannot be read still fails the file, naming the line
        let e = parse("day,VCD,glucose\n0,1,2\n,2\n").unwrap_err();
        assert!(
            matches!(
                e,
                FileError::RaggedRow {
                    row: 3,
                    expected: 3,
                    found: 2,
                    ..
                }
            ),
            "{e}"
        );
        // days stay ordered: a ragged line with a repeated day is a duplicate
        assert!(matches!(
            parse("day,VCD\n0,1\n0,1,2\n").unwrap_err(),
            FileError::DuplicateDay { .. }
        ));
        // long layout: the day of the ragged line is unreadable, the others are not
        let t = parse("day,species,value\n0,VCD,1\n1,VCD\n1,Glc,5\n2,VCD,3\n").unwrap();
        assert_eq!(t.malformed(1).map(|m| m.row), Some(3));
        assert!(t.malformed(2).is_none());
        // an unterminated short last line is tolerated only when asked (follow mode)
        let mut o = ParseOptions::default();
        o.tolerate_partial_last_line = true;
        let t = parse_with("day,VCD,glucose\n0,1,2\n1,2", &o).unwrap();
        assert_eq!(t.len(), 1);
        assert!(t.report().ignored_partial_line);
        let t = parse_with("day,VCD,glucose\n0,1\n1,2,3\n", &o).unwrap();
        assert!(t.malformed(0).is_some() && t.malformed(1).is_none());
    }

    #[test]
    fn duplicate_columns_timestamps_and_long_columns() {
        let e = parse("day,VCD,Viable_Cell_Density\n0,1,1\n").unwrap_err();
        assert!(
            matches!(&e, FileError::DuplicateColumn { first, second, .. } if first == "VCD" && second == "Viable_Cell_Density"),
            "{e}"
        );
        let e = parse("day,timestamp,VCD\n0,yesterday,1\n").unwrap_err();
        assert!(
            matches!(e, FileError::InvalidTimestamp { row: 2, .. }),
            "{e}"
        );
        let t = parse("day,timestamp,VCD\n0,2026-11-25T08:00:00Z,1\n").unwrap();
        assert_eq!(
            t.get(0).unwrap().sample.timestamp,
            Some(time::macros::datetime!(2026-11-25 08:00:00 UTC))
        );
        let o = ParseOptions::default().with_layout(Layout::Long);
        let e = parse_with("day,species\n0,VCD\n", &o).unwrap_err();
        assert!(
            matches!(
                e,
                FileError::MissingColumn {
                    column: "value",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn unreadable_files_are_io_errors() {
        let dir = tempfile::tempdir().unwrap();
        let e = CultureTable::read_csv(dir.path().join("nope.csv"), &ParseOptions::default())
            .unwrap_err();
        assert!(e.is_not_found(), "{e}");
        let e = CultureTable::read_csv(dir.path(), &ParseOptions::default()).unwrap_err();
        assert!(matches!(e, FileError::Io { .. }), "{e}");
        assert!(matches!(ConnectorError::from(e), ConnectorError::Io { .. }));
    }

    #[cfg(not(feature = "polars"))]
    #[test]
    fn parquet_without_feature_says_how_to_enable_it() {
        let e = perfusio_connectors::files::load_file(
            Path::new("x.parquet"),
            perfusio_connectors::files::FileKind::Auto,
            &ParseOptions::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("--features polars"), "{e}");
    }
}

mod store {
    use super::*;

    #[tokio::test]
    async fn follow_mode_waits_for_an_appended_day() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "lims.csv", "day,VCD\n0,0.5\n1,0.9\n");
        let store = FilesystemStore::open(
            FileStoreConfig::new(&path).with_follow(follow(5_000, 20)),
            DS,
        )
        .unwrap();
        assert_eq!(store.load_count(), 1);
        let p = path.clone();
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            // a writer appending in two steps: the half-written line must not fail the read
            let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
            std::io::Write::write_all(&mut f, b"2,1").unwrap();
            drop(f);
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
            std::io::Write::write_all(&mut f, b".7\n").unwrap();
        });
        let t0 = std::time::Instant::now();
        let s = read(&store, 2).await.unwrap();
        writer.await.unwrap();
        assert_relative_eq!(s.get(Species::VCD).unwrap(), 1.7, max_relative = 1e-12);
        let waited = t0.elapsed();
        assert!(waited >= Duration::from_millis(200), "{waited:?}");
        assert!(waited < Duration::from_secs(4), "{waited:?}");
        assert!(store.load_count() >= 2);
        // unchanged file: no re-parse
        let n = store.load_count();
        read(&store, 0).await.unwrap();
        assert_eq!(store.load_count(), n);
    }

    #[tokio::test]
    async fn follow_mode_gives_up_after_the_configured_wait() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "lims.csv", "day,VCD\n0,0.5\n");
        let store =
            FilesystemStore::new(FileStoreConfig::new(&path).with_follow(follow(300, 50)), DS);
        let t0 = std::time::Instant::now();
        let e = read(&store, 1).await.unwrap_err();
        let waited = t0.elapsed();
        assert!(
            matches!(e, ConnectorError::NotYetAvailable { day: 1, .. }),
            "{e}"
        );
        assert!(e.is_transient());
        assert!(waited >= Duration::from_millis(300), "{waited:?}");
        assert!(waited < Duration::from_millis(2_000), "{waited:?}");
        // a gap before the last day is reported at once, without waiting
        std::fs::write(&path, "day,VCD\n0,0.5\n2,0.9\n").unwrap();
        let t0 = std::time::Instant::now();
        let e = read(&store, 1).await.unwrap_err();
        assert!(e.to_string().contains("already has day 2"), "{e}");
        assert!(t0.elapsed() < Duration::from_millis(250));
    }

    #[tokio::test]
    async fn follow_mode_reads_an_unterminated_last_line_after_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "hand.csv", "day,VCD\n0,0.5\n1,0.9");
        let store =
            FilesystemStore::new(FileStoreConfig::new(&path).with_follow(follow(200, 50)), DS);
        assert_relative_eq!(
            read(&store, 0).await.unwrap().get(Species::VCD).unwrap(),
            0.5
        );
        assert!(store.report().unwrap().ignored_partial_line);
        let t0 = std::time::Instant::now();
        let s = read(&store, 1).await.unwrap();
        assert_relative_eq!(s.get(Species::VCD).unwrap(), 0.9);
        assert!(t0.elapsed() >= Duration::from_millis(200));
        // without follow mode the line is read at once
        let plain = FilesystemStore::new(FileStoreConfig::new(&path), DS);
        assert_relative_eq!(
            read(&plain, 1).await.unwrap().get(Species::VCD).unwrap(),
            0.9
        );
    }

    #[tokio::test]
    async fn missing_or_empty_file_in_follow_mode_is_not_yet_available() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("later.csv");
        let store =
            FilesystemStore::open(FileStoreConfig::new(&path).with_follow(follow(100, 20)), DS)
                .unwrap();
        let h = store.health().await;
        assert!(h.is_usable() && !h.is_ok(), "{h}");
        assert!(
            h.reason().unwrap().contains("follow mode waits for it"),
            "{h}"
        );
        let e = read(&store, 0).await.unwrap_err();
        assert!(e.to_string().contains("no data rows yet"), "{e}");
        std::fs::write(&path, "").unwrap();
        assert!(read(&store, 0).await.unwrap_err().is_transient());
        std::fs::write(&path, "day,VCD\n0,0.4\n").unwrap();
        assert_relative_eq!(
            read(&store, 0).await.unwrap().get(Species::VCD).unwrap(),
            0.4
        );
        // without follow mode a missing file is an I/O error at once
        let plain = FilesystemStore::new(FileStoreConfig::new(dir.path().join("no.csv")), DS);
        let h = plain.health().await;
        assert!(!h.is_usable(), "{h}");
        assert!(h.reason().unwrap().contains("no.csv"), "{h}");
        let e = read(&plain, 0).await.unwrap_err();
        assert!(matches!(e, ConnectorError::Io { .. }), "{e}");
        assert!(
            FilesystemStore::open(FileStoreConfig::new(dir.path().join("no.csv")), DS).is_err()
        );
    }

    #[tokio::test]
    async fn a_changed_file_is_re_read_and_a_broken_one_reports_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "c.csv", "day,VCD\n0,0.5\n");
        let store = FilesystemStore::new(FileStoreConfig::new(&path), DS);
        assert!(read(&store, 1).await.is_err());
        std::fs::write(&path, "day,VCD\n0,0.5\n1,0.75\n").unwrap();
        assert_relative_eq!(
            read(&store, 1).await.unwrap().get(Species::VCD).unwrap(),
            0.75
        );
        // a malformed cell is a rejection of its day only
        std::fs::write(&path, "day,VCD\n0,0.5\n1,0.75\n2,oops\n").unwrap();
        assert_relative_eq!(
            read(&store, 1).await.unwrap().get(Species::VCD).unwrap(),
            0.75
        );
        let v = read_validated(&store, 2, &DS).await.unwrap();
        assert_eq!(cell_of(&v.rejections[0].origin), (4, "VCD"));
        // a ragged row spoils its own day only (issue 12): reading it is a data error
        // naming the file, day and line; the days around it read as before
        std::fs::write(&path, "day,VCD\n0,0.5\n1,0.75\n2,1,3\n3,1.1\n").unwrap();
        assert_relative_eq!(
            read(&store, 1).await.unwrap().get(Species::VCD).unwrap(),
            0.75
        );
        match read(&store, 2).await.unwrap_err() {
            ConnectorError::Data { context, message } => {
                assert!(context.ends_with("c.csv day 2"), "{context}");
                assert!(message.starts_with("line 4 has 3 fields"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(!read(&store, 2).await.unwrap_err().is_transient());
        assert_relative_eq!(
            read(&store, 3).await.unwrap().get(Species::VCD).unwrap(),
            1.1
        );
        assert!(store.health().await.is_ok());
        // a ragged row without a readable day breaks the file: every read reports its
        // line, health says why
        std::fs::write(&path, "day,VCD\n0,0.5\n1,0.75\n,1,3\n").unwrap();
        let e = read(&store, 1).await.unwrap_err();
        match e {
            ConnectorError::Data { context, .. } => assert_eq!(context, "line 4"),
            other => panic!("{other:?}"),
        }
        let h = store.health().await;
        assert!(!h.is_usable(), "{h}");
        assert!(h.reason().unwrap().contains("line 4: 3 fields"), "{h}");
        assert!(store.describe().contains("c.csv"));
    }

    #[tokio::test]
    async fn setpoint_log_appends_sanitised_rows_and_never_rewrites() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("setpoints.csv");
        let cfg = FileStoreConfig::new(T06)
            .with_setpoint_log(&log)
            .with_setpoint_source("=cmd|' /C calc'!A0");
        let store = FilesystemStore::new(cfg, DS);
        let sp = Setpoints::defaults(3).with(Control::PerfusionRate, 1.75);
        let r = store.write_setpoints(&sp).await.unwrap();
        assert!(r.is_fully_confirmed());
        assert_eq!(r.day, 3);
        assert_eq!(r.controls.len(), 6);
        let first = std::fs::read(&log).unwrap();
        let r2 = store
            .write_setpoints_with_note(&Setpoints::defaults(4), "@SUM(A1:A2)\nsecond line")
            .await
            .unwrap();
        assert!(r2.timestamp >= r.timestamp);
        let both = std::fs::read(&log).unwrap();
        assert_eq!(
            &both[..first.len()],
            &first[..],
            "earlier rows must be unchanged"
        );

        let text = String::from_utf8(both).unwrap();
        let header = text.lines().next().unwrap();
        assert_eq!(header, setpoint_log_header().join(","));
        assert_eq!(
            header,
            "day,timestamp,perfusion_rate,bleed_rate,glucose_setpoint,temperature,agitation,\
             pyruvate_feed,source,note"
        );
        let rows = read_setpoint_log(&log).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].setpoints, sp);
        assert_eq!(rows[1].setpoints, Setpoints::defaults(4));
        assert_eq!(rows[0].source, "'=cmd|' /C calc'!A0");
        assert_eq!(rows[1].note, "'@SUM(A1:A2)\nsecond line");
        assert_eq!(Some(rows[0].timestamp), r.timestamp);
    }

    #[tokio::test]
    async fn setpoint_log_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sp.csv");
        let store = FilesystemStore::new(FileStoreConfig::new(T06).with_setpoint_log(&log), DS);
        // hard limit: nothing written
        let bad = Setpoints::defaults(1).with(Control::Agitation, 5000.0);
        let e = store.write_setpoints(&bad).await.unwrap_err();
        assert!(
            matches!(&e, ConnectorError::Rejected(v) if v.len() == 1),
            "{e}"
        );
        assert!(!log.exists());
        // a foreign file is not appended to
        std::fs::write(&log, "a,b\n1,2\n").unwrap();
        let e = store
            .write_setpoints(&Setpoints::defaults(1))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("refusing to append"), "{e}");
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "a,b\n1,2\n");
        // no log configured
        let store = FilesystemStore::new(FileStoreConfig::new(T06), DS);
        let e = store
            .write_setpoints(&Setpoints::defaults(1))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("setpoint_log"), "{e}");
    }

    #[tokio::test]
    async fn setpoint_log_repairs_a_missing_final_newline() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sp.csv");
        let header = setpoint_log_header().join(",");
        std::fs::write(
            &log,
            format!("{header}\n1,2026-11-25T08:00:00Z,1,0.1,5,37,850,0,x,"),
        )
        .unwrap();
        let store = FilesystemStore::new(FileStoreConfig::new(T06).with_setpoint_log(&log), DS);
        store
            .write_setpoints(&Setpoints::defaults(2))
            .await
            .unwrap();
        let rows = read_setpoint_log(&log).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].setpoints.day, 2);
    }

    #[test]
    fn public_types_are_send_sync() {
        fn ss<T: Send + Sync>() {}
        ss::<FilesystemStore>();
        ss::<CultureTable>();
        ss::<FileError>();
        fn clone<T: Clone>() {}
        clone::<CultureTable>();
        clone::<ParseOptions>();
        clone::<FileStoreConfig>();
    }
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngSeed};

    fn cfg() -> Config {
        Config {
            cases: 768,
            rng_seed: RngSeed::Fixed(0x7006),
            failure_persistence: None,
            ..Config::default()
        }
    }

    proptest! {
        #![proptest_config(cfg())]

        #[test]
        fn rejection_lines_match_physical_lines(
            endings in proptest::collection::vec((any::<bool>(), 0usize..3), 12),
            bad in 0usize..12,
        ) {
            // rows of days 0..12 with mixed LF/CRLF endings and blank lines; one bad cell
            let mut text = String::from("day,VCD\n");
            let mut line = 2u64;
            let mut bad_line = 0;
            for (day, (crlf, blanks)) in endings.iter().enumerate() {
                let eol = if *crlf { "\r\n" } else { "\n" };
                for _ in 0..*blanks {
                    text.push_str(eol);
                    line += 1;
                }
                let cell = if day == bad { "bad".to_string() } else { format!("{day}.5") };
                if day == bad {
                    bad_line = line;
                }
                text.push_str(&format!("{day},{cell}{eol}"));
                line += 1;
            }
            let t = parse(&text).unwrap();
            let v = t.validated(bad as u32, &DS).unwrap();
            prop_assert_eq!(v.rejections.len(), 1);
            prop_assert_eq!(cell_of(&v.rejections[0].origin), (bad_line, "VCD"));
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = CultureTable::from_csv_bytes(&bytes, "fuzz.csv", &ParseOptions::default());
        }

        #[test]
        fn csv_like_text_never_panics(
            header in "(day|VCD|viability|species|value|glucose|x)([,;\t](day|VCD|viability|species|value|glucose|x)){0,4}\r?\n",
            body in "[0-9a-z.,;\t\"\r\n -]{0,300}",
        ) {
            let text = format!("{header}{body}");
            let mut o = ParseOptions::default();
            o.tolerate_partial_last_line = body.len() % 2 == 0;
            if let Ok(t) = CultureTable::from_csv_bytes(text.as_bytes(), "fuzz.csv", &o) {
                // whatever parsed is consistent: ascending days; validation keeps finite
                // values only and loses nothing
                let days: Vec<u32> = t.days().collect();
                prop_assert!(days.windows(2).all(|w| w[0] < w[1]));
                for r in t.records() {
                    let raw = t.raw(r.day()).unwrap();
                    let v = raw.validate(&DS);
                    let kept: Vec<f64> = Quantity::all().filter_map(|q| v.sample.quantity(q)).collect();
                    prop_assert!(kept.iter().all(|x| x.is_finite()));
                    prop_assert_eq!(kept.len() + v.rejections.len(), raw.len());
                }
            }
        }
    }
}

#[cfg(feature = "polars")]
mod polars_sources {
    use super::*;
    use perfusio_connectors::files::{read_parquet, table_from_dataframe};
    use polars::prelude::*;

    #[test]
    fn dataframe_wide_and_long() {
        let df = df!(
            "day" => [0i64, 1, 2],
            "VCD" => [Some(0.5), None, Some(1.7)],
            "viability" => [0.97, 0.96, 0.95],
            "perfusion_rate" => [1.0, 1.0, 1.5],
            "operator" => ["a", "b", "c"],
        )
        .unwrap();
        let t = table_from_dataframe(&df, &ParseOptions::default()).unwrap();
        assert_eq!(t.days().collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(t.get(1).unwrap().sample.get(Species::VCD), None);
        assert_relative_eq!(
            t.get(2).unwrap().sample.get(Species::Via).unwrap(),
            95.0,
            max_relative = 1e-12
        );
        assert_eq!(
            t.get(2).unwrap().sample.control(Control::PerfusionRate),
            Some(1.5)
        );
        assert_eq!(t.report().unknown, ["operator"]);

        let long = df!(
            "day" => [0u32, 0, 1],
            "species" => ["VCD", "glucose", "VCD"],
            "value" => [0.5, 6.0, 0.9],
        )
        .unwrap();
        let t = table_from_dataframe(&long, &ParseOptions::default()).unwrap();
        assert_eq!(t.report().layout, Layout::Long);
        assert_relative_eq!(t.get(0).unwrap().sample.get(Species::Glc).unwrap(), 6.0);

        let nan = df!("day" => [0u32, 1], "VCD" => [0.5, f64::NAN]).unwrap();
        let t = table_from_dataframe(&nan, &ParseOptions::default()).unwrap();
        let r = &t.validated(1, &DS).unwrap().rejections[0];
        assert_eq!((r.code(), cell_of(&r.origin)), ("non_finite", (3, "VCD")));
        let dup = df!("day" => [0u32, 0], "VCD" => [0.5, 0.6]).unwrap();
        assert!(matches!(
            table_from_dataframe(&dup, &ParseOptions::default()).unwrap_err(),
            FileError::DuplicateDay { .. }
        ));
    }

    #[tokio::test]
    async fn parquet_files_wide_and_long_through_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let csv = CultureTable::read_csv(T06, &ParseOptions::default()).unwrap();
        let mut wide = CsvReadOptions::default()
            .with_has_header(true)
            .try_into_reader_with_file_path(Some(T06.into()))
            .unwrap()
            .finish()
            .unwrap();
        let wide_path = dir.path().join("t06.parquet");
        ParquetWriter::new(std::fs::File::create(&wide_path).unwrap())
            .finish(&mut wide)
            .unwrap();
        let t = read_parquet(&wide_path, &ParseOptions::default()).unwrap();
        assert_eq!(t.len(), csv.len());
        for (a, b) in t.records().iter().zip(csv.records()) {
            assert_eq!(a.sample, b.sample);
        }
        let store = FilesystemStore::open(FileStoreConfig::new(&wide_path), DS).unwrap();
        let s = read(&store, 5).await.unwrap();
        assert_relative_eq!(s.get(Species::Via).unwrap(), 95.0, max_relative = 1e-12);

        let mut long = df!(
            "day" => [3u32, 3, 4],
            "variable" => ["VCD", "viability", "VCD"],
            "value" => [3.2, 96.0, 5.9],
        )
        .unwrap();
        let long_path = dir.path().join("long.pq");
        ParquetWriter::new(std::fs::File::create(&long_path).unwrap())
            .finish(&mut long)
            .unwrap();
        let t = read_parquet(&long_path, &ParseOptions::default()).unwrap();
        assert_eq!(t.report().layout, Layout::Long);
        assert_relative_eq!(t.get(3).unwrap().sample.get(Species::Via).unwrap(), 96.0);

        let store = FilesystemStore::from_dataframe(&long, FileStoreConfig::new("<DataFrame>"), DS)
            .unwrap();
        assert!(store.health().await.is_ok());
        assert_relative_eq!(
            read(&store, 4).await.unwrap().get(Species::VCD).unwrap(),
            5.9
        );

        let bad = write(dir.path(), "bad.parquet", "not parquet");
        assert!(matches!(
            read_parquet(&bad, &ParseOptions::default()).unwrap_err(),
            FileError::Polars { .. }
        ));
    }
}

mod writer {
    use super::*;
    use perfusio_connectors::files::Unit;
    use perfusio_connectors::files::{CsvWriteOptions, samples_to_csv, write_samples_csv};
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngSeed};

    /// Same value, bit for bit (NaN included), or both missing.
    fn same(a: Option<f64>, b: Option<f64>) -> bool {
        match (a, b) {
            (Some(x), Some(y)) => x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
            (None, None) => true,
            _ => false,
        }
    }

    fn value() -> impl Strategy<Value = Option<f64>> {
        prop_oneof![
            6 => (-1e6f64..1e6).prop_map(Some),
            2 => (0.0f64..1.0).prop_map(|x| Some(x * 1e-7)),
            1 => Just(None),
            1 => prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY)].prop_map(Some),
        ]
    }

    fn samples() -> impl Strategy<Value = Vec<Sample>> {
        proptest::collection::vec(
            (
                1u32..4,
                proptest::collection::vec(value(), perfusio_core::N_QUANTITIES),
            ),
            1..12,
        )
        .prop_map(|rows| {
            let mut day = 0;
            rows.into_iter()
                .map(|(step, values)| {
                    day += step;
                    let mut s = Sample::new(day);
                    for (q, v) in Quantity::all().zip(values) {
                        s.set_quantity(q, v);
                    }
                    s.timestamp = Some(
                        time::macros::datetime!(2026-11-25 08:00:00.25 UTC)
                            + time::Duration::days(i64::from(day)),
                    );
                    s
                })
                .collect()
        })
    }

    proptest! {
        #![proptest_config(Config {
            cases: 256,
            rng_seed: RngSeed::Fixed(0x9009),
            failure_persistence: None,
            ..Config::default()
        })]

        #[test]
        fn writer_output_reads_back_to_the_same_values(samples in samples(), controls: bool, ts: bool) {
            let o = CsvWriteOptions::default().with_controls(controls).with_timestamp(ts);
            let text = samples_to_csv(&samples, &o).unwrap();
            // declared as %: a run whose viabilities all happen to be <= 1.5 is not a fraction
            let p = ParseOptions::default().with_unit(Variable::Species(Species::Via), Unit::Canonical);
            let t = parse_with(&text, &p).unwrap();
            prop_assert!(t.report().unknown.is_empty());
            prop_assert_eq!(t.days().collect::<Vec<_>>(), samples.iter().map(|s| s.day).collect::<Vec<_>>());
            for s in &samples {
                let back = &t.get(s.day).unwrap().sample;
                for q in Quantity::all() {
                    let want = match q {
                        Quantity::Control(_) if !controls => None,
                        _ => s.quantity(q),
                    };
                    prop_assert!(same(back.quantity(q), want), "day {} {}: {:?} vs {:?}", s.day, q, back.quantity(q), want);
                }
                prop_assert_eq!(back.timestamp, if ts { s.timestamp } else { None });
            }
        }
    }

    #[tokio::test]
    async fn simulated_run_written_then_served_by_the_store() {
        use perfusio_mechanistic::{VirtualReactor, VirtualReactorConfig};
        let mut r = VirtualReactor::new(VirtualReactorConfig::default()).unwrap();
        r.advance_to(14).unwrap();
        let samples: Vec<Sample> = (0..=14).map(|d| r.sample(d).unwrap()).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.csv");
        let file = std::fs::File::create(&path).unwrap();
        write_samples_csv(
            file,
            &samples,
            &CsvWriteOptions::default().with_controls(true),
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.lines().next().unwrap(),
            "day,VCD,Via,Glc,Gln,Glu,Lac,Amm,Pyr,Titer,VCV,Diam,perfusion_rate,bleed_rate,\
             glucose_setpoint,temperature,agitation,pyruvate_feed"
        );
        let store = FilesystemStore::open(FileStoreConfig::new(&path), DS).unwrap();
        for s in &samples {
            let want = s.validate(&DS);
            let got = read_validated(&store, s.day, &DS).await.unwrap();
            assert_eq!(got.sample.species, want.sample.species, "day {}", s.day);
            assert_eq!(got.sample.derived, want.sample.derived);
            assert_eq!(got.sample.controls, want.sample.controls);
            assert_eq!(got.rejections.len(), want.rejections.len());
        }
    }
}
