//! The OPC UA emulator is restarted in the middle of a run: the client reconnects and the
//! run goes on with no lost day.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use perfusio_connectors::opcua::{Emulator, EmulatorConfig, NodeMap, OpcUaConfig, OpcUaConnector};
use perfusio_mechanistic::VirtualReactor;
use perfusio_twin::DayRecord;
use perfusio_twin::prelude::*;
use tokio::sync::Mutex;

use crate::common::{quick_config, records};

const SEED: u64 = 17;
const RESTART_AFTER: u32 = 2;

fn plant_at(day: u32) -> VirtualReactor {
    let mut r = VirtualReactor::new(VirtualReactorConfig {
        seed: SEED,
        ..VirtualReactorConfig::default()
    })
    .unwrap();
    r.advance_to(day).unwrap();
    r
}

fn emulator_config(pki: &std::path::Path, port: u16) -> EmulatorConfig {
    EmulatorConfig {
        port,
        pki_dir: pki.to_path_buf(),
        ..EmulatorConfig::default()
    }
}

/// Moves the emulator one culture day on when the twin completes a day; after day
/// `RESTART_AFTER` it stops the server and starts a new one on the same port, half a second
/// later, with the plant at the next day (a restarted server has fresh state).
#[derive(Debug)]
struct Driver {
    emulator: Arc<Mutex<Option<Emulator>>>,
    port: u16,
    pki: PathBuf,
    restarts: Arc<std::sync::atomic::AtomicU32>,
}

impl Observer for Driver {
    fn day_completed(&self, d: &DayRecord) {
        let (emulator, day, port, pki) =
            (self.emulator.clone(), d.day, self.port, self.pki.clone());
        let restarts = self.restarts.clone();
        tokio::spawn(async move {
            let mut slot = emulator.lock().await;
            if day == RESTART_AFTER {
                if let Some(e) = slot.take() {
                    e.stop().await;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                let e = Emulator::start(
                    emulator_config(&pki, port),
                    vec![Box::new(plant_at(day + 1))],
                )
                .await
                .unwrap();
                restarts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                *slot = Some(e);
            } else if let Some(e) = slot.as_ref() {
                e.advance_days(1).unwrap();
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emulator_restarted_mid_run_loses_no_day() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki-server");
    let first = Emulator::start(emulator_config(&pki, 0), vec![Box::new(plant_at(0))])
        .await
        .unwrap();
    let port = first.addr().port();
    let mut cfg = OpcUaConfig::new(first.endpoint_url(), NodeMap::ambr250("R01"));
    cfg.pki_dir = dir.path().join("pki-client");
    cfg.trust_on_first_use = true;
    let client = OpcUaConnector::new(cfg).unwrap();
    let emulator = Arc::new(Mutex::new(Some(first)));
    let restarts = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let audit = dir.path().join("audit.jsonl");
    let report = DigitalTwin::builder(client, DEFAULT_AMBR250_DESIGN_SPACE, quick_config(5, SEED))
        .audit_path(&audit)
        .sample_wait(Duration::from_secs(20))
        .observer(Driver {
            emulator: emulator.clone(),
            port,
            pki,
            restarts: restarts.clone(),
        })
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(report.completed, "{}", report.reason);
    assert_eq!(restarts.load(std::sync::atomic::Ordering::SeqCst), 1);
    let recs = records(&audit);
    let reads: Vec<f64> = recs
        .iter()
        .filter(|r| r.kind == "sample_read")
        .map(|r| r.day)
        .collect();
    assert_eq!(reads, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], "a day was lost");
    assert_eq!(report.decisions(), 5);
    // the day after the restart is the plant's own day 3 (same seed, same noise)
    let want = plant_at(3).sample(3).unwrap();
    let got = report.days[3].species(Species::VCD);
    match (got, want.get(Species::VCD)) {
        (Some(g), Some(w)) => assert!((g - w).abs() <= 1e-9 * w.abs().max(1.0), "{g} vs {w}"),
        (g, w) => assert_eq!(g.is_some(), w.is_some()),
    }
    if let Some(e) = emulator.lock().await.take() {
        e.stop().await;
    }
}
