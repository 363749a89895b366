//! OPC UA client against the ambr250 emulator, both real, on 127.0.0.1.
#![cfg(feature = "opcua")]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use opcua::client::{ClientBuilder, IdentityToken, Session};
use opcua::crypto::SecurityPolicy;
use opcua::types::{
    AttributeId, DataValue, MessageSecurityMode, NodeId, StatusCode, Variant, WriteValue,
};
use perfusio_connectors::opcua::{
    AMBR250_NAMESPACE_URI, Backoff, Emulator, EmulatorConfig, Identity, NodeMap, OpcUaConfig,
    OpcUaConnector, ReplayConnector, Security, ambr250_node_id,
};
use perfusio_connectors::virtual_reactor::Plant;
use perfusio_core::{
    Connector, ConnectorError, Control, ControlArray, CultureDay, DEFAULT_AMBR250_DESIGN_SPACE,
    Derived, Health, Origin, Sample, Secret, Setpoints, Species, WriteStatus, read_validated,
};

/// The validated sample of `day`, read through the trait (the one validation step).
async fn read(c: &impl Connector, day: CultureDay) -> Result<Sample, ConnectorError> {
    read_validated(c, day, &DEFAULT_AMBR250_DESIGN_SPACE)
        .await
        .map(|v| v.sample)
}

/// Upper bound for any single test step.
const STEP: Duration = Duration::from_secs(20);

/// A deterministic plant: values are closed-form functions of the day and setpoints.
#[derive(Debug)]
struct TestPlant {
    id: String,
    day: u32,
    sp: ControlArray<f64>,
    /// The impeller drive only takes multiples of this many rpm (rounds the setpoint).
    agitation_step: Option<f64>,
}

impl TestPlant {
    fn boxed(id: &str) -> Box<dyn Plant> {
        Box::new(Self {
            id: id.to_string(),
            day: 0,
            sp: Control::defaults(),
            agitation_step: None,
        })
    }
}

/// Expected species of `day` under setpoints `sp` (with a per-reactor offset).
fn expected_state(id: &str, day: u32, sp: &ControlArray<f64>) -> [f64; 9] {
    let d = f64::from(day);
    let off = f64::from(id.bytes().last().unwrap_or(b'0') - b'0');
    [
        0.5 + 2.0 * d * sp[0] + 0.1 * off,
        99.0 - 0.2 * d,
        sp[2] - 0.1 * d,
        4.0 - 0.05 * d,
        0.5 + 0.01 * d,
        2.0 + 0.5 * d,
        0.3 + 0.1 * d,
        0.2,
        25.0 * d + off,
    ]
}

impl Plant for TestPlant {
    fn reactor_id(&self) -> String {
        self.id.clone()
    }
    fn day(&self) -> u32 {
        self.day
    }
    fn advance_day(&mut self) -> Result<(), ConnectorError> {
        self.day += 1;
        Ok(())
    }
    fn sample(&self, day: u32) -> Result<Sample, ConnectorError> {
        let state = expected_state(&self.id, day, &self.sp);
        let mut s = Sample::from_state(day, &state);
        s.derived = [
            Some(Derived::VCV.compute(&state)),
            Some(Derived::Diam.compute(&state)),
        ];
        s.controls = self.sp.map(Some);
        s.reactor_id = Some(self.id.clone());
        Ok(s)
    }
    fn setpoints(&self) -> ControlArray<f64> {
        self.sp
    }
    fn set_setpoints(&mut self, values: &ControlArray<f64>) -> Result<(), ConnectorError> {
        DEFAULT_AMBR250_DESIGN_SPACE
            .validate(values)
            .map_err(|e| ConnectorError::Data {
                context: "test plant".into(),
                message: e.to_string(),
            })?;
        self.sp = *values;
        if let Some(step) = self.agitation_step {
            let a = Control::Agitation.index();
            self.sp[a] = (self.sp[a] / step).round() * step;
        }
        Ok(())
    }
}

fn plants(n: usize) -> Vec<Box<dyn Plant>> {
    (1..=n)
        .map(|i| TestPlant::boxed(&format!("R0{i}")))
        .collect()
}

fn emulator_config(dir: &Path) -> EmulatorConfig {
    EmulatorConfig {
        pki_dir: dir.join("server-pki"),
        users: vec![("operator".into(), Secret::new("correct horse"))],
        ..EmulatorConfig::default()
    }
}

async fn start(dir: &Path, n: usize) -> Emulator {
    tokio::time::timeout(STEP, Emulator::start(emulator_config(dir), plants(n)))
        .await
        .unwrap()
        .unwrap()
}

fn fast_backoff() -> Backoff {
    Backoff {
        initial_ms: 100,
        cap_ms: 800,
        max_attempts: 8,
    }
}

fn client_config(dir: &Path, emu: &Emulator, reactor: &str) -> OpcUaConfig {
    let mut c = OpcUaConfig::new(emu.endpoint_url(), NodeMap::ambr250(reactor));
    c.pki_dir = dir.join("client-pki");
    c.backoff = fast_backoff();
    c.timeout_ms = 3000;
    c
}

fn assert_same_sample(got: &Sample, want: &Sample) {
    assert_eq!(got.day, want.day);
    for s in Species::ALL {
        let (g, w) = (got.get(s), want.get(s));
        match (g, w) {
            (Some(g), Some(w)) => {
                assert!((g - w).abs() <= 1e-12 * w.abs().max(1.0), "{s}: {g} vs {w}")
            }
            _ => assert_eq!(g.is_some(), w.is_some(), "{s}"),
        }
    }
    for i in 0..2 {
        let (g, w) = (got.derived[i], want.derived[i]);
        assert_eq!(g.is_some(), w.is_some());
        if let (Some(g), Some(w)) = (g, w) {
            assert!((g - w).abs() <= 1e-12 * w.abs().max(1.0));
        }
    }
}

fn assert_controls(got: &ControlArray<f64>, want: &ControlArray<f64>) {
    for c in Control::ALL {
        let (g, w) = (got[c.index()], want[c.index()]);
        assert!((g - w).abs() <= 1e-12 * w.abs().max(1.0), "{c}: {g} vs {w}");
    }
}

/// A raw async-opcua session (bypassing the connector's client-side validation).
async fn raw_session(dir: &Path, url: &str) -> (Arc<Session>, u16) {
    let mut client = ClientBuilder::new()
        .application_name("raw test client")
        .application_uri("urn:perfusio:raw-test")
        .pki_dir(dir.join("raw-pki"))
        .create_sample_keypair(true)
        .trust_server_certs(true)
        .session_retry_limit(0)
        .client()
        .unwrap();
    let (session, event_loop) = client
        .connect_to_matching_endpoint(
            (
                url,
                SecurityPolicy::None.to_str(),
                MessageSecurityMode::None,
            ),
            IdentityToken::Anonymous,
        )
        .await
        .unwrap();
    event_loop.spawn();
    tokio::time::timeout(STEP, session.wait_for_connection())
        .await
        .unwrap();
    let ns = session
        .get_namespace_index(AMBR250_NAMESPACE_URI)
        .await
        .unwrap();
    (session, ns)
}

async fn raw_write(session: &Session, ns: u16, reactor: &str, name: &str, v: f64) -> StatusCode {
    let w = WriteValue {
        node_id: NodeId::new(ns, ambr250_node_id(reactor, name)),
        attribute_id: AttributeId::Value as u32,
        index_range: Default::default(),
        value: DataValue::value_only(Variant::Double(v)),
    };
    session.write(&[w]).await.unwrap()[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_every_species_of_the_right_reactor_and_day() {
    let dir = tempfile::tempdir().unwrap();
    let emu = start(dir.path(), 3).await;
    assert_eq!(emu.reactor_ids(), ["R01", "R02", "R03"]);
    let conn = OpcUaConnector::new(client_config(dir.path(), &emu, "R02")).unwrap();

    let s0 = read(&conn, 0).await.unwrap();
    assert!(s0.is_complete());
    assert_eq!(s0.reactor_id.as_deref(), Some("R02"));
    assert_same_sample(&s0, &emu.current_sample(1).unwrap());
    // closed form of the test plant: VCD = 0.5 + 2 d perf + 0.1 * 2
    assert!((s0.get(Species::VCD).unwrap() - 0.7).abs() < 1e-12);
    assert_eq!(s0.controls, Control::defaults().map(Some));
    let checked = read_validated(&conn, 0, &DEFAULT_AMBR250_DESIGN_SPACE)
        .await
        .unwrap();
    assert!(checked.rejections.is_empty());
    // every value names its node
    let raw = conn.read_raw(0).await.unwrap();
    assert_eq!(raw.len(), 17);
    let glc = raw.get(Species::Glc).unwrap();
    assert_eq!(
        glc.origin,
        Origin::Node {
            server: emu.endpoint_url().to_string(),
            node: format!("nsu={AMBR250_NAMESPACE_URI};s=R02.Glc"),
        }
    );

    // day 1 is not there yet
    let e = read(&conn, 1).await.unwrap_err();
    assert!(
        matches!(e, ConnectorError::NotYetAvailable { day: 1, .. }),
        "{e}"
    );

    emu.advance_days(2).unwrap();
    let s2 = read(&conn, 2).await.unwrap();
    assert!((s2.get(Species::Titer).unwrap() - 52.0).abs() < 1e-12);
    assert_same_sample(&s2, &emu.current_sample(1).unwrap());
    // day 0 was read while current: its last reading is served from this session's history
    assert_eq!(conn.read_raw(0).await.unwrap(), raw);
    assert_eq!(read(&conn, 0).await.unwrap().species, s0.species);
    // day 1 was never read while current
    let e = read(&conn, 1).await.unwrap_err();
    assert!(e.to_string().contains("already at culture day 2"), "{e}");
    assert_eq!(conn.sessions_established(), 1);
    assert_eq!(conn.health().await, Health::Ok);
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_setpoints_and_confirms_by_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let emu = start(dir.path(), 1).await;
    let conn = OpcUaConnector::new(client_config(dir.path(), &emu, "R01")).unwrap();

    // high bleed (soft: outside the design range, inside the limits)
    let sp = Setpoints::new(0, [2.0, 0.9, 6.0, 36.0, 900.0, 1.0]);
    let r = conn.write_setpoints(&sp).await.unwrap();
    assert!(r.is_fully_confirmed(), "{r:?}");
    assert_eq!(r.controls.len(), 6);
    for c in &r.controls {
        assert!((c.readback.unwrap() - c.requested).abs() < 1e-12);
    }
    assert_controls(&emu.setpoints(0).unwrap(), &sp.values);

    // lowering perfusion below the bleed now acting needs the bleed written first
    let sp2 = Setpoints::new(0, [0.5, 0.4, 6.0, 36.5, 800.0, 0.0]);
    let r = conn.write_setpoints(&sp2).await.unwrap();
    assert!(r.is_fully_confirmed(), "{r:?}");
    assert_controls(&emu.setpoints(0).unwrap(), &sp2.values);

    // the sample reports the controls acting
    let s = read(&conn, 0).await.unwrap();
    assert_eq!(s.controls, sp2.values.map(Some));
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_setpoints_are_refused_by_client_and_server() {
    let dir = tempfile::tempdir().unwrap();
    let emu = start(dir.path(), 2).await;
    let conn = OpcUaConnector::new(client_config(dir.path(), &emu, "R01")).unwrap();

    // client side: nothing is sent
    let bad = Setpoints::defaults(0).with(Control::Agitation, 1200.0);
    let e = conn.write_setpoints(&bad).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Rejected(ref v) if v[0].control == Control::Agitation));
    assert_eq!(
        e.to_string(),
        "setpoints refused: agitation = 1200 rpm is above 1050"
    );
    let nan = Setpoints::defaults(0).with(Control::Temperature, f64::NAN);
    assert!(matches!(
        conn.write_setpoints(&nan).await.unwrap_err(),
        ConnectorError::Rejected(_)
    ));
    assert_controls(&emu.setpoints(0).unwrap(), &Control::defaults());

    // server side, through a raw session
    let (raw, ns) = raw_session(dir.path(), emu.endpoint_url()).await;
    assert_eq!(
        raw_write(&raw, ns, "R01", "agitation", 1200.0).await,
        StatusCode::BadOutOfRange
    );
    assert_eq!(
        raw_write(&raw, ns, "R01", "temperature", f64::NAN).await,
        StatusCode::BadOutOfRange
    );
    assert_eq!(
        raw_write(&raw, ns, "R01", "temperature", f64::INFINITY).await,
        StatusCode::BadOutOfRange
    );
    // bleed above the perfusion rate (1.0) is refused as a whole-vector rule
    assert_eq!(
        raw_write(&raw, ns, "R01", "bleed_rate", 1.0 + 1e-6).await,
        StatusCode::BadOutOfRange
    );
    // measured values are read-only
    assert_eq!(
        raw_write(&raw, ns, "R01", "VCD", 3.0).await,
        StatusCode::BadUserAccessDenied
    );
    assert_eq!(
        raw_write(&raw, ns, "R01", "agitation", 900.0).await,
        StatusCode::Good
    );
    let mut want = Control::defaults();
    want[Control::Agitation.index()] = 900.0;
    assert_controls(&emu.setpoints(0).unwrap(), &want);
    assert_controls(&emu.setpoints(1).unwrap(), &Control::defaults());

    // on-demand time through the AdvanceDays variable
    assert_eq!(
        raw_write(&raw, ns, "R02", "AdvanceDays", 3.0).await,
        StatusCode::Good
    );
    assert_eq!(
        raw_write(&raw, ns, "R02", "AdvanceDays", 0.5).await,
        StatusCode::BadOutOfRange
    );
    assert_eq!(
        raw_write(&raw, ns, "R02", "AdvanceDays", 0.0).await,
        StatusCode::BadOutOfRange
    );
    assert_eq!(emu.day(1).unwrap(), 3);
    assert_eq!(emu.day(0).unwrap(), 0);
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_an_authentication_error_without_retries() {
    let dir = tempfile::tempdir().unwrap();
    let emu = start(dir.path(), 1).await;
    let mut cfg = client_config(dir.path(), &emu, "R01");
    cfg.security = Security::Basic256Sha256SignAndEncrypt;
    cfg.trust_on_first_use = true;
    // a retry would wait 3 s first
    cfg.backoff = Backoff {
        initial_ms: 3000,
        cap_ms: 3000,
        max_attempts: 5,
    };
    cfg.identity = Identity::UserName {
        user: "operator".into(),
        password: Secret::new("wrong"),
    };
    let conn = OpcUaConnector::new(cfg.clone()).unwrap();
    let t0 = Instant::now();
    let e = read(&conn, 0).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Authentication { .. }), "{e}");
    assert!(
        e.to_string().contains("BadIdentityTokenRejected")
            || e.to_string().contains("BadUserAccessDenied"),
        "{e}"
    );
    assert!(!e.is_transient());
    assert!(
        t0.elapsed() < Duration::from_millis(2900),
        "{:?}",
        t0.elapsed()
    );
    assert!(!format!("{conn:?}").contains("wrong"));
    assert!(
        conn.describe().contains("user 'operator'"),
        "{}",
        conn.describe()
    );
    assert!(!conn.describe().contains("wrong"));

    // the right password works over the same secured endpoint
    cfg.identity = Identity::UserName {
        user: "operator".into(),
        password: Secret::new("correct horse"),
    };
    let conn = OpcUaConnector::new(cfg).unwrap();
    assert!(read(&conn, 0).await.unwrap().is_complete());
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_server_certificate_is_rejected_unless_trust_on_first_use() {
    let dir = tempfile::tempdir().unwrap();
    let emu = start(dir.path(), 1).await;
    let mut cfg = client_config(dir.path(), &emu, "R01");
    cfg.security = Security::Basic256Sha256Sign;
    cfg.pki_dir = dir.path().join("strict-pki");
    let strict = OpcUaConnector::new(cfg.clone()).unwrap();
    let e = read(&strict, 0).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Untrusted { .. }), "{e}");
    assert!(e.to_string().contains("rejected/"), "{e}");
    let rejected = std::fs::read_dir(cfg.pki_dir.join("rejected"))
        .unwrap()
        .count();
    assert_eq!(rejected, 1);

    // trust on first use: a fresh PKI directory accepts and stores the first certificate
    cfg.pki_dir = dir.path().join("tofu-pki");
    cfg.trust_on_first_use = true;
    let tofu = OpcUaConnector::new(cfg.clone()).unwrap();
    assert!(read(&tofu, 0).await.unwrap().is_complete());
    let trusted = std::fs::read_dir(cfg.pki_dir.join("trusted"))
        .unwrap()
        .count();
    assert_eq!(trusted, 1);

    // ...and only that one: another server (another certificate) is refused
    let other_dir = tempfile::tempdir().unwrap();
    let other = start(other_dir.path(), 1).await;
    let mut cfg2 = cfg.clone();
    cfg2.endpoint = other.endpoint_url().to_string();
    let e = read(&OpcUaConnector::new(cfg2).unwrap(), 0)
        .await
        .unwrap_err();
    assert!(matches!(e, ConnectorError::Untrusted { .. }), "{e}");
    emu.stop().await;
    other.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_a_server_restart_on_the_same_port() {
    let dir = tempfile::tempdir().unwrap();
    let emu = start(dir.path(), 1).await;
    let port = emu.addr().port();
    let cfg = client_config(dir.path(), &emu, "R01");
    let schedule = cfg.backoff.total();
    let conn = OpcUaConnector::new(cfg).unwrap();
    assert!(read(&conn, 0).await.is_ok());
    assert_eq!(conn.sessions_established(), 1);

    emu.stop().await;
    let down = Duration::from_millis(700);
    let restart_dir = dir.path().to_path_buf();
    let restarted = tokio::spawn(async move {
        tokio::time::sleep(down).await;
        let mut c = emulator_config(&restart_dir);
        c.port = port;
        Emulator::start(c, plants(1)).await.unwrap()
    });
    let t0 = Instant::now();
    let s = tokio::time::timeout(STEP, read(&conn, 0))
        .await
        .unwrap()
        .unwrap();
    let took = t0.elapsed();
    assert!(s.is_complete());
    assert!(took >= down, "{took:?}");
    assert!(took < down + schedule, "{took:?} vs schedule {schedule:?}");
    assert_eq!(conn.sessions_established(), 2);
    restarted.await.unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_gone_for_good_gives_disconnected_after_the_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let emu = start(dir.path(), 1).await;
    let mut cfg = client_config(dir.path(), &emu, "R01");
    cfg.backoff = Backoff {
        initial_ms: 50,
        cap_ms: 100,
        max_attempts: 4,
    };
    let conn = OpcUaConnector::new(cfg.clone()).unwrap();
    read(&conn, 0).await.unwrap();
    emu.stop().await;
    let t0 = Instant::now();
    let e = tokio::time::timeout(STEP, read(&conn, 0))
        .await
        .unwrap()
        .unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert!(matches!(e, ConnectorError::Disconnected { .. }), "{e}");
    assert!(e.to_string().contains("after 4 attempts"), "{e}");
    // 50 + 100 + 100 ms of backoff
    assert!(
        t0.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t0.elapsed()
    );
    let h = conn.health().await;
    assert!(!h.is_usable(), "{h}");
    assert!(h.reason().unwrap().contains("disconnected"), "{h}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_nodes_and_namespaces_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let emu = start(dir.path(), 1).await;
    let mut cfg = client_config(dir.path(), &emu, "R01");
    cfg.node_map.species.insert(
        Species::Glc,
        format!("nsu={AMBR250_NAMESPACE_URI};s=R01.Sugar"),
    );
    let e = read(&OpcUaConnector::new(cfg.clone()).unwrap(), 0)
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, ConnectorError::Node { .. }), "{e}");
    assert!(
        text.starts_with("node Glc (nsu=urn:perfusio:ambr250;s=R01.Sugar): BadNodeIdUnknown"),
        "{text}"
    );

    let mut cfg = client_config(dir.path(), &emu, "R01");
    cfg.node_map.culture_day = "nsu=urn:elsewhere;s=Day".into();
    let e = read(&OpcUaConnector::new(cfg).unwrap(), 0)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains(
            "CultureDay (nsu=urn:elsewhere;s=Day): namespace 'urn:elsewhere' is not served"
        ),
        "{e}"
    );
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_then_replay_gives_identical_samples() {
    let dir = tempfile::tempdir().unwrap();
    let emu = start(dir.path(), 1).await;
    let record = dir.path().join("reads.jsonl");
    let mut cfg = client_config(dir.path(), &emu, "R01");
    cfg.record = Some(record.clone());
    let conn = OpcUaConnector::new(cfg).unwrap();
    let mut live = Vec::new();
    for day in 0..3 {
        live.push(read(&conn, day).await.unwrap());
        emu.advance_days(1).unwrap();
    }
    let text = std::fs::read_to_string(&record).unwrap();
    assert_eq!(text.lines().count(), 3);
    assert!(
        text.lines()
            .all(|l| l.starts_with(r#"{"v":2,"endpoint":"opc.tcp://127.0.0.1:"#))
    );

    let replay = ReplayConnector::open(&record).unwrap();
    assert_eq!(replay.days(), [0, 1, 2]);
    for (day, want) in live.iter().enumerate() {
        assert_eq!(&read(&replay, day as u32).await.unwrap(), want);
    }
    assert!(matches!(
        read(&replay, 3).await.unwrap_err(),
        ConnectorError::NotYetAvailable { day: 3, .. }
    ));
    let r = replay
        .write_setpoints(&Setpoints::defaults(3))
        .await
        .unwrap();
    assert!(
        r.controls
            .iter()
            .all(|c| matches!(c.status, WriteStatus::Rejected { .. }))
    );
    emu.stop().await;
}

/// Waits (at most 5 s) until both reactors of `emu` are at day 3 and says how long it took;
/// they advance together.
async fn time_to_day_3(emu: &Emulator) -> Duration {
    let t0 = Instant::now();
    while emu.day(1).unwrap() < 3 && t0.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = t0.elapsed();
    assert!(emu.day(1).unwrap() >= 3);
    assert_eq!(emu.day(0).unwrap(), emu.day(1).unwrap());
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn culture_time_accelerates() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = emulator_config(dir.path());
    c.seconds_per_day = Some(0.1);
    let emu = Emulator::start(c, plants(2)).await.unwrap();
    let took = time_to_day_3(&emu).await;
    assert!(took >= Duration::from_millis(290), "{took:?}");
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn culture_clock_can_start_at_the_first_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = emulator_config(dir.path());
    c.seconds_per_day = Some(0.1);
    c.clock_starts_on_first_read = true;
    let emu = Emulator::start(c, plants(2)).await.unwrap();
    // no client has read anything: the clock holds day 0 (five periods here)
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(emu.day(0).unwrap(), 0);
    assert_eq!(emu.day(1).unwrap(), 0);
    let conn = OpcUaConnector::new(client_config(dir.path(), &emu, "R02")).unwrap();
    let s = read(&conn, 0).await.unwrap();
    assert_eq!(s.day, 0);
    // then days pass at the configured pace, counted from the first read (before `read`
    // returned)
    let took = time_to_day_3(&emu).await;
    assert!(took >= Duration::from_millis(150), "{took:?}");
    emu.stop().await;
}

#[tokio::test]
async fn emulator_refuses_bad_configurations() {
    let dir = tempfile::tempdir().unwrap();
    let e = Emulator::start(emulator_config(dir.path()), plants(0))
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("0 reactors requested; the emulator hosts 1 to 24"),
        "{e}"
    );
    let e = Emulator::start(
        emulator_config(dir.path()),
        vec![TestPlant::boxed("R01"), TestPlant::boxed("R01")],
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("distinct"), "{e}");
    let mut c = emulator_config(dir.path());
    c.seconds_per_day = Some(0.0);
    assert!(Emulator::start(c, plants(1)).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_the_mechanistic_virtual_reactor_including_missing_values() {
    use perfusio_connectors::virtual_reactor::virtual_plants;
    use perfusio_mechanistic::{VirtualReactor, VirtualReactorConfig};

    let dir = tempfile::tempdir().unwrap();
    let emu = Emulator::start(emulator_config(dir.path()), virtual_plants(2, 7).unwrap())
        .await
        .unwrap();
    let conn = OpcUaConnector::new(client_config(dir.path(), &emu, "R02")).unwrap();
    // independent computation: the same reactor driven directly
    let base = VirtualReactorConfig {
        seed: 7,
        ..VirtualReactorConfig::default()
    };
    let mut direct = VirtualReactor::ensemble(2, base).unwrap().remove(1);
    let mut missing = 0;
    for day in 0..=12 {
        let got = read(&conn, day).await.unwrap();
        let want = direct
            .sample(day)
            .unwrap()
            .validate(&DEFAULT_AMBR250_DESIGN_SPACE)
            .sample;
        assert_same_sample(&got, &want);
        assert_eq!(got.controls, want.controls);
        missing += Species::ALL
            .iter()
            .filter(|s| got.get(**s).is_none())
            .count();
        emu.advance_days(1).unwrap();
        direct.advance_day().unwrap();
    }
    // the noise model drops ~5 % of the values; they travel as BadNoDataAvailable
    assert!(missing >= 1, "no missing value in 13 days x 9 species");
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x509_user_identity_is_accepted_and_an_unknown_one_refused() {
    use opcua::crypto::{CertificateStore, X509Data};
    use opcua::types::ApplicationDescription;

    let dir = tempfile::tempdir().unwrap();
    let make_user = |name: &str| {
        let desc = ApplicationDescription {
            application_name: name.into(),
            application_uri: format!("urn:perfusio:user:{name}").into(),
            ..Default::default()
        };
        let cert = dir.path().join(format!("{name}.der"));
        let key = dir.path().join(format!("{name}.pem"));
        CertificateStore::create_certificate_and_key(&X509Data::from(desc), true, &cert, &key)
            .unwrap();
        (cert, key)
    };
    let (cert, key) = make_user("lab-twin");
    let (other_cert, other_key) = make_user("stranger");
    let mut ec = emulator_config(dir.path());
    ec.allow_anonymous = false;
    ec.x509_users = vec![("lab-twin".into(), cert.clone())];
    let emu = Emulator::start(ec, plants(1)).await.unwrap();

    let mut cfg = client_config(dir.path(), &emu, "R01");
    cfg.security = Security::Basic256Sha256SignAndEncrypt;
    cfg.trust_on_first_use = true;
    cfg.identity = Identity::X509 {
        certificate: cert,
        private_key: key,
    };
    let conn = OpcUaConnector::new(cfg.clone()).unwrap();
    assert!(read(&conn, 0).await.unwrap().is_complete());

    cfg.identity = Identity::X509 {
        certificate: other_cert,
        private_key: other_key,
    };
    let e = read(&OpcUaConnector::new(cfg).unwrap(), 0)
        .await
        .unwrap_err();
    assert!(matches!(e, ConnectorError::Authentication { .. }), "{e}");
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implausible_reads_are_rejected_with_reasons_and_kept() {
    use perfusio_core::{Quantity, RejectionReason, Variable};

    let dir = tempfile::tempdir().unwrap();
    let emu = start(dir.path(), 1).await;
    let record = dir.path().join("reads.jsonl");
    let mut cfg = client_config(dir.path(), &emu, "R01");
    cfg.record = Some(record.clone());
    let conn = OpcUaConnector::new(cfg).unwrap();
    // day 201 of the test plant: Titer = 25 d + 1 = 5026 mg/L is above its 5000 bound,
    // and so are others (glucose and glutamine below 0, lactate above its bound)
    emu.advance_days(201).unwrap();
    let raw = conn.read_raw(201).await.unwrap();
    let checked = raw.validate(&DEFAULT_AMBR250_DESIGN_SPACE);
    let s = checked.sample.clone();
    let state = expected_state("R01", 201, &Control::defaults());
    let mut want = Vec::new();
    for sp in Species::ALL {
        let v = state[sp.index()];
        let b = DEFAULT_AMBR250_DESIGN_SPACE.bounds(Variable::Species(sp));
        let reason = if v < b.lower {
            Some(RejectionReason::BelowBound { bound: b.lower })
        } else if v > b.upper {
            Some(RejectionReason::AboveBound { bound: b.upper })
        } else {
            None
        };
        match reason {
            Some(r) => {
                assert_eq!(s.get(sp), None, "{sp}");
                want.push((sp, v, r));
            }
            None => assert!((s.get(sp).unwrap() - v).abs() < 1e-9, "{sp}"),
        }
    }
    assert!(
        want.iter()
            .any(|w| w.0 == Species::Titer && (w.1 - 5026.0).abs() < 1e-9)
    );
    assert!(want.len() >= 4, "{want:?}");
    let rej = &checked.rejections;
    let species_rej: Vec<_> = rej
        .iter()
        .filter(|r| matches!(r.variable, Quantity::Species(_)))
        .collect();
    assert_eq!(species_rej.len(), want.len());
    for (r, (sp, v, reason)) in species_rej.iter().zip(&want) {
        assert_eq!(r.variable, Quantity::Species(*sp));
        assert!((r.value.as_number().unwrap() - v).abs() < 1e-9);
        assert_eq!(r.reason, *reason);
        assert_eq!(
            r.origin,
            Origin::Node {
                server: emu.endpoint_url().to_string(),
                node: format!("nsu={AMBR250_NAMESPACE_URI};s=R01.{}", sp.name()),
            }
        );
    }
    // the record keeps the raw reading; a replay gives the same one, hence the same
    // sample and the same rejections (origins included)
    let replay = ReplayConnector::open(&record).unwrap();
    assert_eq!(replay.read_raw(201).await.unwrap(), raw);
    let again = read_validated(&replay, 201, &DEFAULT_AMBR250_DESIGN_SPACE)
        .await
        .unwrap();
    assert_eq!(&again, &checked);
    assert!(replay.health().await.is_ok());
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_times_out_within_the_schedule() {
    // accepts TCP connections and never answers
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hole = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = OpcUaConfig::new(
        format!("opc.tcp://127.0.0.1:{port}/"),
        NodeMap::ambr250("R01"),
    );
    cfg.pki_dir = dir.path().join("pki");
    cfg.timeout_ms = 300;
    cfg.connect_timeout_ms = 300;
    cfg.backoff = Backoff {
        initial_ms: 50,
        cap_ms: 50,
        max_attempts: 3,
    };
    let conn = OpcUaConnector::new(cfg).unwrap();
    let t0 = Instant::now();
    let e = tokio::time::timeout(STEP, read(&conn, 0))
        .await
        .unwrap()
        .unwrap_err();
    let took = t0.elapsed();
    assert!(matches!(e, ConnectorError::Timeout { .. }), "{e}");
    assert!(e.is_transient());
    assert!(
        e.to_string()
            .contains("after 3 attempts) timed out after 300ms"),
        "{e}"
    );
    // 3 attempts of 300 ms and 2 pauses of 50 ms
    assert!(took >= Duration::from_millis(950), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    hole.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_refused_by_the_server_is_rejected_in_the_receipt_naming_its_node() {
    let dir = tempfile::tempdir().unwrap();
    let emu = start(dir.path(), 1).await;
    let mut cfg = client_config(dir.path(), &emu, "R01");
    // mis-mapped: the temperature setpoint points at a read-only measurement
    let wrong = format!("nsu={AMBR250_NAMESPACE_URI};s=R01.Via");
    cfg.node_map
        .controls
        .insert(Control::Temperature, wrong.clone());
    cfg.node_map.controls.remove(&Control::PyruvateFeed);
    let conn = OpcUaConnector::new(cfg).unwrap();
    let sp = Setpoints::defaults(0).with(Control::Agitation, 950.0);
    let r = conn.write_setpoints(&sp).await.unwrap();
    assert!(!r.is_fully_confirmed());
    let by = |c: Control| r.controls.iter().find(|x| x.control == c).unwrap();
    assert_eq!(by(Control::Agitation).status, WriteStatus::Confirmed);
    assert_eq!(
        by(Control::Temperature).status,
        WriteStatus::Rejected {
            reason: format!("node {wrong}: BadUserAccessDenied")
        }
    );
    // the read-back of the mis-mapped node is the viability, 99 % on day 0
    assert!((by(Control::Temperature).readback.unwrap() - 99.0).abs() < 1e-9);
    assert!(r.control(Control::Temperature).is_some());
    assert_eq!(
        by(Control::PyruvateFeed).status,
        WriteStatus::Rejected {
            reason: "no node is mapped for this control".into()
        }
    );
    let mut want = Control::defaults();
    want[Control::Agitation.index()] = 950.0;
    assert_controls(&emu.setpoints(0).unwrap(), &want);
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setpoint_the_reactor_rounds_is_unconfirmed_naming_the_read_back() {
    let dir = tempfile::tempdir().unwrap();
    // the impeller drive of this reactor only takes multiples of 10 rpm
    let plant = Box::new(TestPlant {
        id: "R01".into(),
        day: 0,
        sp: Control::defaults(),
        agitation_step: Some(10.0),
    });
    let emu = tokio::time::timeout(
        STEP,
        Emulator::start(emulator_config(dir.path()), vec![plant]),
    )
    .await
    .unwrap()
    .unwrap();
    let conn = OpcUaConnector::new(client_config(dir.path(), &emu, "R01")).unwrap();
    let sp = Setpoints::defaults(0)
        .with(Control::Agitation, 855.0)
        .with(Control::Temperature, 36.5);
    let r = conn.write_setpoints(&sp).await.unwrap();
    assert!(!r.is_fully_confirmed());
    let a = r.control(Control::Agitation).unwrap();
    assert_eq!(a.readback, Some(860.0));
    assert_eq!(
        a.status,
        WriteStatus::Unconfirmed {
            reason: format!("read back 860 from node nsu={AMBR250_NAMESPACE_URI};s=R01.agitation")
        }
    );
    for c in Control::ALL
        .into_iter()
        .filter(|c| *c != Control::Agitation)
    {
        assert_eq!(r.control(c).unwrap().status, WriteStatus::Confirmed, "{c}");
    }
    // what the reactor applies is what the receipt's read-back says
    assert!((emu.setpoints(0).unwrap()[Control::Agitation.index()] - 860.0).abs() < 1e-12);
    // a value the drive can take exactly is confirmed
    let r = conn
        .write_setpoints(&sp.clone().with(Control::Agitation, 870.0))
        .await
        .unwrap();
    assert!(r.is_fully_confirmed(), "{r:?}");
    emu.stop().await;
}

/// A 24-reactor campaign opens one session per folder: the emulator serves all of them at
/// once (its server library alone would refuse the 21st session).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_four_clients_read_their_folders_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let emu = Arc::new(start(dir.path(), 24).await);
    let ids = emu.reactor_ids();
    assert_eq!(ids.len(), 24);
    // one client key for all (as a campaign shares its PKI directory): made once, up front
    let first = OpcUaConnector::new(client_config(dir.path(), &emu, &ids[0])).unwrap();
    read(&first, 0).await.unwrap();
    let t0 = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for (i, id) in ids.iter().enumerate().skip(1) {
        let conn = OpcUaConnector::new(client_config(dir.path(), &emu, id)).unwrap();
        let emu = emu.clone();
        set.spawn(async move {
            let s = tokio::time::timeout(STEP, read(&conn, 0)).await;
            (i, s, emu.current_sample(i))
        });
    }
    let mut n = 1;
    while let Some(r) = set.join_next().await {
        let (i, got, want) = r.unwrap();
        let got = got.unwrap_or_else(|_| panic!("reactor {i}: no reading within {STEP:?}"));
        let got = got.unwrap_or_else(|e| panic!("reactor {i}: {e}"));
        assert_same_sample(&got, &want.unwrap());
        n += 1;
    }
    assert_eq!(n, 24);
    assert!(t0.elapsed() < STEP, "{:?}", t0.elapsed());
}
