//! One day read over loopback OPC UA (security None, anonymous): the culture day,
//! 9 species, 2 derived variables and 6 controls in one Read request, plus validation
//! (`read_validated`; the bench keeps its historical name `opcua_read_sample_loopback`).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use perfusio_connectors::opcua::{Emulator, EmulatorConfig, NodeMap, OpcUaConfig, OpcUaConnector};
use perfusio_connectors::virtual_reactor::Plant;
use perfusio_core::{
    ConnectorError, Control, ControlArray, CultureDay, DEFAULT_AMBR250_DESIGN_SPACE as DS, Derived,
    Sample, read_validated,
};

/// A constant plant: the bench measures the protocol path, not the simulation.
#[derive(Debug)]
struct Still(ControlArray<f64>);

impl Plant for Still {
    fn reactor_id(&self) -> String {
        "R01".into()
    }
    fn day(&self) -> CultureDay {
        0
    }
    fn advance_day(&mut self) -> Result<(), ConnectorError> {
        Ok(())
    }
    fn sample(&self, day: CultureDay) -> Result<Sample, ConnectorError> {
        let state = [10.0, 97.0, 4.0, 3.0, 0.8, 15.0, 4.0, 0.5, 300.0];
        let mut s = Sample::from_state(day, &state);
        s.derived = [
            Some(Derived::VCV.compute(&state)),
            Some(Derived::Diam.compute(&state)),
        ];
        Ok(s)
    }
    fn setpoints(&self) -> ControlArray<f64> {
        self.0
    }
    fn set_setpoints(&mut self, v: &ControlArray<f64>) -> Result<(), ConnectorError> {
        self.0 = *v;
        Ok(())
    }
}

fn bench_read(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (emu, conn) = rt.block_on(async {
        let cfg = EmulatorConfig {
            pki_dir: dir.path().join("server"),
            ..EmulatorConfig::default()
        };
        let emu = Emulator::start(cfg, vec![Box::new(Still(Control::defaults()))])
            .await
            .expect("emulator");
        let mut cc = OpcUaConfig::new(emu.endpoint_url(), NodeMap::ambr250("R01"));
        cc.pki_dir = dir.path().join("client");
        let conn = OpcUaConnector::new(cc).expect("connector");
        read_validated(&conn, 0, &DS).await.expect("first read");
        (emu, conn)
    });
    c.bench_function("opcua_read_sample_loopback", |b| {
        b.iter(|| {
            rt.block_on(read_validated(&conn, black_box(0), &DS))
                .expect("read")
        })
    });
    rt.block_on(emu.stop());
}

criterion_group!(benches, bench_read);
criterion_main!(benches);
