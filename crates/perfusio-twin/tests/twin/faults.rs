//! Faults that do not stop a run: a late sample, a malformed CSV row, rejected readings
//! (recorded with their reason whichever connector produced them).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use perfusio_audit::event::{Custom, SampleRejected};
use perfusio_connectors::opcua::{Emulator, EmulatorConfig, NodeMap, OpcUaConfig, OpcUaConnector};
use perfusio_connectors::virtual_reactor::Plant;
use perfusio_core::{ConnectorError, ControlArray, CultureDay, Sample};
use perfusio_mechanistic::VirtualReactor;
use perfusio_twin::prelude::*;

use crate::common::{Probe, quick_config, records, virtual_reactor};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_sample_is_waited_for_and_the_wait_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let mut probe = Probe::new(virtual_reactor(8));
    probe.late_day = Some(2);
    probe.late_polls = 3;
    let report = DigitalTwin::builder(probe, DEFAULT_AMBR250_DESIGN_SPACE, quick_config(4, 8))
        .audit_path(&audit)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(report.completed, "{}", report.reason);
    let recs = records(&audit);
    let waits: Vec<(f64, Custom)> = recs
        .iter()
        .filter(|r| r.kind == "custom")
        .map(|r| (r.day, r.payload_as::<Custom>().unwrap()))
        .filter(|(_, c)| c.name == "sample_wait")
        .collect();
    assert_eq!(waits.len(), 1);
    assert!((waits[0].0 - 2.0).abs() < 1e-12);
    assert_eq!(waits[0].1.data["attempts"], 4);
    // a day not yet there is polled every eighth of the wait, at least 25 ms apart: three
    // polls of 25 ms at least (the bound on lateness is tested in `poll_delay`'s unit test)
    assert!(waits[0].1.data["waited_s"].as_f64().unwrap() >= 0.075);
    // no day lost
    let reads: Vec<f64> = recs
        .iter()
        .filter(|r| r.kind == "sample_read")
        .map(|r| r.day)
        .collect();
    assert_eq!(reads, [0.0, 1.0, 2.0, 3.0, 4.0]);
}

/// Writes days `0..=days` of a simulated culture as CSV; `edit` may change a row's cells.
fn culture_csv(path: &Path, days: CultureDay, edit: impl Fn(CultureDay, &mut Vec<String>)) {
    let mut r = VirtualReactor::new(VirtualReactorConfig {
        seed: 4,
        ..VirtualReactorConfig::default()
    })
    .unwrap();
    r.advance_to(days).unwrap();
    let mut text = String::from("day");
    for s in Species::ALL {
        write!(text, ",{}", s.name()).unwrap();
    }
    text.push('\n');
    for day in 0..=days {
        let s = r.sample(day).unwrap();
        let mut cells = vec![day.to_string()];
        cells.extend(
            Species::ALL.map(|sp| s.get(sp).map_or_else(String::new, |v| format!("{v:.5}"))),
        );
        edit(day, &mut cells);
        writeln!(text, "{}", cells.join(",")).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_csv_row_on_day_5_is_recorded_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("culture.csv");
    culture_csv(&csv, 7, |day, cells| {
        if day == 5 {
            cells[1] = "n/a?".into(); // VCD is not a number
            cells.truncate(6); // and the row is ragged
        }
    });
    let audit = dir.path().join("audit.jsonl");
    let report = DigitalTwin::builder(
        FilesystemStore::from_path(&csv).unwrap(),
        DEFAULT_AMBR250_DESIGN_SPACE,
        quick_config(7, 9),
    )
    .audit_path(&audit)
    .build()
    .unwrap()
    .run()
    .await
    .unwrap();
    assert!(report.completed, "{}", report.reason);
    let recs = records(&audit);
    let day5: Vec<&str> = recs
        .iter()
        .filter(|r| (r.day - 5.0).abs() < 1e-12)
        .map(|r| r.kind.as_str())
        .collect();
    assert!(
        day5.contains(&"connector_error") || day5.contains(&"sample_rejected"),
        "day 5 records: {day5:?}"
    );
    // day 5 still ends with a terminal record, and days 6 and 7 are read
    assert!(day5.contains(&"setpoint_withheld"), "{day5:?}");
    for d in [6.0, 7.0] {
        assert!(
            recs.iter()
                .any(|r| r.kind == "sample_read" && (r.day - d).abs() < 1e-12),
            "day {d} was not read"
        );
    }
}

/// The virtual reactor with a viability probe that reads 150 % on day 2.
#[derive(Debug)]
struct BadViability(VirtualReactor);

impl Plant for BadViability {
    fn reactor_id(&self) -> String {
        self.0.config().reactor_id.clone()
    }
    fn day(&self) -> CultureDay {
        self.0.day()
    }
    fn advance_day(&mut self) -> Result<(), ConnectorError> {
        Plant::advance_day(&mut self.0)
    }
    fn sample(&self, day: CultureDay) -> Result<Sample, ConnectorError> {
        let mut s = Plant::sample(&self.0, day)?;
        if day == 2 {
            s.species[Species::Via.index()] = Some(150.0);
        }
        Ok(s)
    }
    fn setpoints(&self) -> ControlArray<f64> {
        self.0.setpoints()
    }
    fn set_setpoints(&mut self, values: &ControlArray<f64>) -> Result<(), ConnectorError> {
        Plant::set_setpoints(&mut self.0, values)
    }
}

fn bad_plant() -> BadViability {
    BadViability(
        VirtualReactor::new(VirtualReactorConfig {
            seed: 12,
            ..VirtualReactorConfig::default()
        })
        .unwrap(),
    )
}

/// Runs 3 days over `connector` and returns the rejections recorded (day, record).
async fn rejections(
    connector: impl Connector + 'static,
    audit: &Path,
) -> Vec<(f64, SampleRejected)> {
    let report = DigitalTwin::builder(connector, DEFAULT_AMBR250_DESIGN_SPACE, quick_config(3, 12))
        .audit_path(audit)
        .sample_wait(std::time::Duration::from_secs(5))
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(report.completed, "{}", report.reason);
    assert_eq!(report.days[2].rejected.len(), 1);
    records(audit)
        .iter()
        .filter(|r| r.kind == "sample_rejected")
        .map(|r| (r.day, r.payload_as().unwrap()))
        .collect()
}

fn assert_viability_rejected(found: &[(f64, SampleRejected)], origin: &str) {
    assert_eq!(found.len(), 1, "{found:?}");
    let (day, r) = &found[0];
    assert!((day - 2.0).abs() < 1e-12);
    assert_eq!(r.species, "Via");
    assert_eq!(r.raw, "150");
    assert_eq!(r.reason, "above_bound");
    let o = r.origin.as_deref().unwrap_or_default();
    assert!(o.contains(origin), "origin {o:?} should name {origin:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_readings_are_audited_from_every_connector() {
    let dir = tempfile::tempdir().unwrap();
    // file
    let csv = dir.path().join("culture.csv");
    culture_csv(&csv, 3, |day, cells| {
        if day == 2 {
            cells[1 + Species::Via.index()] = "150".into();
        }
    });
    let found = rejections(
        FilesystemStore::from_path(&csv).unwrap(),
        &dir.path().join("file.jsonl"),
    )
    .await;
    assert_viability_rejected(&found, "culture.csv");
    // virtual reactor
    let vr = VirtualReactorConnector::from_plant(bad_plant(), DEFAULT_AMBR250_DESIGN_SPACE);
    let found = rejections(vr, &dir.path().join("virtual.jsonl")).await;
    assert_viability_rejected(&found, "virtual reactor");
    // OPC UA (the emulator serving the same plant on 127.0.0.1)
    let emulator = Emulator::start(
        EmulatorConfig {
            pki_dir: dir.path().join("pki-server"),
            ..EmulatorConfig::default()
        },
        vec![Box::new(bad_plant())],
    )
    .await
    .unwrap();
    let mut cfg = OpcUaConfig::new(emulator.endpoint_url(), NodeMap::ambr250("R01"));
    cfg.pki_dir = dir.path().join("pki-client");
    cfg.trust_on_first_use = true;
    let client = OpcUaConnector::new(cfg).unwrap();
    let emu = Arc::new(emulator);
    let ticker = {
        let emu = emu.clone();
        tokio::spawn(async move {
            // one culture day a second: the twin polls for the next day until it is there (a
            // live server holds only the current day, so a twin day longer than the tick
            // would lose the next one: the tick leaves room for a loaded test machine)
            for _ in 0..3 {
                tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
                emu.advance_days(1).unwrap();
            }
        })
    };
    let found = rejections(client, &dir.path().join("opcua.jsonl")).await;
    ticker.await.unwrap();
    assert_viability_rejected(&found, "R01");
    if let Ok(emu) = Arc::try_unwrap(emu) {
        emu.stop().await;
    }
}
