//! Issue 9: one validation boundary. The same malformed culture day (one NaN, one value
//! above its bound, one below) is driven through the file store (CSV in a temp dir), the
//! OPC UA client (against the in-process emulator, a real server and client on 127.0.0.1)
//! and the virtual reactor; read through the `Connector` trait and validated in the one
//! shared step, all three report the same rejections (variables, codes, raw values) and
//! accept the same values, each naming where the value came from.
#![cfg(feature = "opcua")]

use std::time::Duration;

use perfusio_connectors::files::{
    CsvWriteOptions, FileStoreConfig, FilesystemStore, write_samples_csv,
};
use perfusio_connectors::opcua::{Emulator, EmulatorConfig, NodeMap, OpcUaConfig, OpcUaConnector};
use perfusio_connectors::virtual_reactor::{Plant, VirtualReactorConnector};
use perfusio_core::{
    Connector, ConnectorError, Control, ControlArray, CultureDay,
    DEFAULT_AMBR250_DESIGN_SPACE as DS, Derived, Origin, Quantity, Sample, Species,
    ValidatedSample, read_validated,
};

/// Upper bound for any single network step.
const STEP: Duration = Duration::from_secs(20);

/// The day whose sample is malformed.
const BAD_DAY: CultureDay = 2;

/// A deterministic plant whose instrument misreports day [`BAD_DAY`].
#[derive(Debug)]
struct MisreportingPlant {
    day: CultureDay,
    sp: ControlArray<f64>,
}

impl MisreportingPlant {
    fn new() -> Self {
        Self {
            day: 0,
            sp: Control::defaults(),
        }
    }
}

impl Plant for MisreportingPlant {
    fn reactor_id(&self) -> String {
        "R01".into()
    }
    fn day(&self) -> CultureDay {
        self.day
    }
    fn advance_day(&mut self) -> Result<(), ConnectorError> {
        self.day += 1;
        Ok(())
    }
    fn sample(&self, day: CultureDay) -> Result<Sample, ConnectorError> {
        let d = f64::from(day);
        let state = [
            0.5 + 1.5 * d,
            98.0 - 0.5 * d,
            5.0 - 0.25 * d,
            4.0 - 0.125 * d,
            0.5 + 0.0625 * d,
            2.0 + 0.75 * d,
            0.5 + 0.25 * d,
            0.25,
            20.0 * d,
        ];
        let mut s = Sample::from_state(day, &state);
        s.derived = [
            Some(Derived::VCV.compute(&state)),
            Some(Derived::Diam.compute(&state)),
        ];
        s.controls = self.sp.map(Some);
        s.reactor_id = Some("R01".into());
        if day == BAD_DAY {
            s.species[Species::Glc.index()] = Some(f64::NAN); // analyser error
            s.species[Species::Lac.index()] = Some(-1.0); // below 0 mmol/L
            s.species[Species::Titer.index()] = Some(6000.0); // above 5000 mg/L
        }
        Ok(s)
    }
    fn setpoints(&self) -> ControlArray<f64> {
        self.sp
    }
    fn set_setpoints(&mut self, values: &ControlArray<f64>) -> Result<(), ConnectorError> {
        self.sp = *values;
        Ok(())
    }
}

/// `(variable, code, raw text)` of every rejection, in the order validation lists them.
fn summary(v: &ValidatedSample) -> Vec<(Quantity, &'static str, String)> {
    v.rejections
        .iter()
        .map(|r| (r.variable, r.code(), r.value.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_malformed_day_gives_the_same_rejections_from_every_connector() {
    let dir = tempfile::tempdir().unwrap();

    // 1. file store: the plant's days written as CSV by the library's writer
    let plant = MisreportingPlant::new();
    let days: Vec<Sample> = (0..=BAD_DAY).map(|d| plant.sample(d).unwrap()).collect();
    let csv = dir.path().join("culture.csv");
    let options = CsvWriteOptions::default().with_controls(true);
    write_samples_csv(std::fs::File::create(&csv).unwrap(), &days, &options).unwrap();
    let file =
        FilesystemStore::open(FileStoreConfig::new(&csv).with_reactor_id("R01"), DS).unwrap();

    // 2. OPC UA: the emulator serves the same plant, the client reads it
    let emulator = tokio::time::timeout(
        STEP,
        Emulator::start(
            EmulatorConfig {
                pki_dir: dir.path().join("server-pki"),
                ..EmulatorConfig::default()
            },
            vec![Box::new(MisreportingPlant::new())],
        ),
    )
    .await
    .unwrap()
    .unwrap();
    let mut config = OpcUaConfig::new(emulator.endpoint_url(), NodeMap::ambr250("R01"));
    config.pki_dir = dir.path().join("client-pki");
    config.timeout_ms = 3000;
    let opcua = OpcUaConnector::new(config).unwrap();

    // 3. the virtual reactor serving the same plant
    let virtual_reactor = VirtualReactorConnector::from_plant(MisreportingPlant::new(), DS);

    let connectors: [(&str, &dyn Connector); 3] = [
        ("file store", &file),
        ("OPC UA client", &opcua),
        ("virtual reactor", &virtual_reactor),
    ];
    let mut results = Vec::new();
    for (name, c) in connectors {
        // a live OPC UA server only holds its current day: read each day while it is current
        let mut last = None;
        for day in 0..=BAD_DAY {
            let v = tokio::time::timeout(STEP, read_validated(c, day, &DS))
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("{name}, day {day}: {e}"));
            if day < BAD_DAY {
                assert!(
                    v.rejections.is_empty(),
                    "{name}, day {day}: {:?}",
                    v.rejections
                );
                if name == "OPC UA client" {
                    emulator.advance_days(1).unwrap();
                }
            }
            last = Some(v);
        }
        results.push((name, last.unwrap()));
    }

    let expected = vec![
        (
            Quantity::Species(Species::Glc),
            "non_finite",
            "NaN".to_string(),
        ),
        (
            Quantity::Species(Species::Lac),
            "below_bound",
            "-1".to_string(),
        ),
        (
            Quantity::Species(Species::Titer),
            "above_bound",
            "6000".to_string(),
        ),
    ];
    for (name, v) in &results {
        assert_eq!(summary(v), expected, "{name}");
        // the rejected values are not in the sample; the others are, and agree
        for q in [Species::Glc, Species::Lac, Species::Titer] {
            assert_eq!(v.sample.get(q), None, "{name} {q}");
        }
        assert_eq!(v.sample.n_present(), 6, "{name}");
        assert_eq!(v.sample.reactor_id.as_deref(), Some("R01"), "{name}");
    }
    let (_, reference) = &results[2];
    for (name, v) in &results[..2] {
        for q in Quantity::all() {
            let (a, b) = (v.sample.quantity(q), reference.sample.quantity(q));
            assert_eq!(a.map(f64::to_bits), b.map(f64::to_bits), "{name} {q}");
        }
    }

    // each names its own place: the CSV cell, the OPC UA node, the simulator
    let titer = |v: &ValidatedSample| v.rejections[2].origin.clone();
    assert_eq!(
        titer(&results[0].1),
        Origin::Cell {
            file: csv.display().to_string(),
            line: 2 + BAD_DAY as u64,
            column: "Titer".into()
        }
    );
    assert_eq!(
        titer(&results[1].1),
        Origin::Node {
            server: emulator.endpoint_url().to_string(),
            node: "nsu=urn:perfusio:ambr250;s=R01.Titer".into()
        }
    );
    assert_eq!(
        titer(&results[2].1),
        Origin::Source {
            name: "virtual reactor R01".into()
        }
    );
    assert_eq!(
        results[0].1.rejections[2].to_string(),
        format!(
            "Titer = 6000 mg/L is above 5000 ({} line 4, column `Titer`)",
            csv.display()
        )
    );
    emulator.stop().await;
}
