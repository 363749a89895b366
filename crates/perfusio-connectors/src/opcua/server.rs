//! The ambr250 emulator: an OPC UA server hosting 1–24 simulated reactors.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use opcua::crypto::SecurityPolicy;
use opcua::nodes::{ObjectBuilder, VariableBuilder};
use opcua::server::diagnostics::NamespaceMetadata;
use opcua::server::node_manager::memory::{SimpleNodeManager, simple_node_manager};
use opcua::server::{ANONYMOUS_USER_TOKEN_ID, ServerBuilder, ServerHandle, ServerUserToken};
use opcua::types::{
    DataTypeId, DataValue, MessageSecurityMode, NodeId, NumericRange, ObjectId, StatusCode, Variant,
};
use perfusio_core::{
    ConnectorError, Control, DEFAULT_AMBR250_DESIGN_SPACE, Derived, DesignSpace, Sample, Secret,
    Species,
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::node_map::{ADVANCE_DAYS, AMBR250_NAMESPACE_URI, CULTURE_DAY, ambr250_node_id};
use crate::virtual_reactor::Plant;

/// Most reactors one emulator hosts (an ambr250 HT has 24 vessels).
pub const MAX_REACTORS: usize = 24;

/// Largest on-demand jump of the `AdvanceDays` variable, days.
pub const MAX_ADVANCE_DAYS: u32 = 365;

/// Concurrent sessions the emulator accepts: a campaign opens one per reactor folder (up to
/// 24), and dashboards and other clients come on top (the server library's default is 20,
/// fewer than one campaign of 24 reactors needs).
pub(crate) const EMULATOR_MAX_SESSIONS: usize = 100;

/// Settings of an [`Emulator`].
///
/// The defaults serve on `127.0.0.1` on a free port (`port = 0`), with an unsecured
/// endpoint for anonymous loopback demos and Basic256Sha256 Sign / SignAndEncrypt endpoints;
/// time advances only on demand.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Interface to listen on; also the host name advertised in endpoint URLs.
    pub host: String,
    /// TCP port; 0 picks a free one ([`Emulator::addr`] reports it).
    pub port: u16,
    /// Culture-time acceleration: one culture day every this many wall-clock seconds
    /// (`None`: time advances only through `AdvanceDays` or [`Emulator::advance_days`]).
    pub seconds_per_day: Option<f64>,
    /// With [`seconds_per_day`](Self::seconds_per_day): the clock starts at the first read
    /// of a reactor's variable by any client, so day 0 lasts until a supervisor has read
    /// it (however long its start-up took), and every later day lasts `seconds_per_day`.
    /// `false` (the default): the clock starts with the server.
    pub clock_starts_on_first_read: bool,
    /// PKI directory of the server (own certificate and key are created there on first
    /// start; client certificates land in `trusted/` or `rejected/`).
    pub pki_dir: PathBuf,
    /// Offer the unsecured endpoint (SecurityPolicy None). Keep it for loopback only.
    pub security_none: bool,
    /// Accept anonymous sessions (on every endpoint).
    pub allow_anonymous: bool,
    /// User name / password pairs accepted on every endpoint.
    pub users: Vec<(String, Secret)>,
    /// X.509 user identities accepted on every endpoint: user name and the path of the
    /// user's certificate (DER).
    pub x509_users: Vec<(String, PathBuf)>,
    /// Trust any client certificate (an emulator for demos and tests). When `false`,
    /// client certificates must be copied into `<pki_dir>/trusted/`.
    pub trust_client_certs: bool,
    /// Limits enforced on setpoint writes (hard limits and bleed ≤ perfusion).
    pub design_space: DesignSpace,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 0,
            seconds_per_day: None,
            clock_starts_on_first_read: false,
            pki_dir: PathBuf::from("pki-emulator"),
            security_none: true,
            allow_anonymous: true,
            users: Vec::new(),
            x509_users: Vec::new(),
            trust_client_certs: true,
            design_space: DEFAULT_AMBR250_DESIGN_SPACE,
        }
    }
}

/// One served reactor: the plant and the sample of its current day.
#[derive(Debug)]
struct Slot {
    plant: Box<dyn Plant>,
    current: Sample,
}

impl Slot {
    fn refresh(&mut self) {
        match self.plant.sample(self.plant.day()) {
            Ok(s) => self.current = s,
            Err(e) => tracing::error!(
                reactor = %self.plant.reactor_id(), error = %e,
                "emulator: cannot sample the current day; keeping the previous values"
            ),
        }
    }

    fn advance(&mut self, days: u32) -> Result<(), ConnectorError> {
        for _ in 0..days {
            self.plant.advance_day()?;
        }
        self.refresh();
        Ok(())
    }
}

#[derive(Debug)]
struct Shared {
    slots: Vec<Slot>,
    design_space: DesignSpace,
}

type SharedRef = Arc<Mutex<Shared>>;

fn lock(shared: &SharedRef) -> Result<MutexGuard<'_, Shared>, StatusCode> {
    shared.lock().map_err(|_| StatusCode::BadInternalError)
}

/// A variable of one reactor folder.
#[derive(Debug, Clone, Copy)]
enum Var {
    CultureDay,
    Species(Species),
    Derived(Derived),
    Control(Control),
    AdvanceDays,
}

impl Var {
    fn all() -> Vec<Var> {
        let mut v = vec![Var::CultureDay];
        v.extend(Species::ALL.map(Var::Species));
        v.extend(Derived::ALL.map(Var::Derived));
        v.extend(Control::ALL.map(Var::Control));
        v.push(Var::AdvanceDays);
        v
    }

    fn name(self) -> &'static str {
        match self {
            Var::CultureDay => CULTURE_DAY,
            Var::Species(s) => s.name(),
            Var::Derived(d) => d.name(),
            Var::Control(c) => c.name(),
            Var::AdvanceDays => ADVANCE_DAYS,
        }
    }

    fn writable(self) -> bool {
        matches!(self, Var::Control(_) | Var::AdvanceDays)
    }

    fn read(self, slot: &Slot) -> Result<f64, StatusCode> {
        let v = match self {
            Var::CultureDay => Some(f64::from(slot.plant.day())),
            Var::Species(s) => slot.current.get(s),
            Var::Derived(d) => slot.current.derived[d.index()],
            Var::Control(c) => Some(slot.plant.setpoints()[c.index()]),
            Var::AdvanceDays => Some(0.0),
        };
        // A species not measured on the current day reads as BadNoDataAvailable.
        v.ok_or(StatusCode::BadNoDataAvailable)
    }
}

fn write_var(shared: &SharedRef, index: usize, var: Var, value: &DataValue) -> StatusCode {
    let v = match &value.value {
        Some(Variant::Double(v)) => *v,
        Some(_) => return StatusCode::BadTypeMismatch,
        None => return StatusCode::BadNothingToDo,
    };
    let Ok(mut guard) = lock(shared) else {
        return StatusCode::BadInternalError;
    };
    let Shared {
        slots,
        design_space,
    } = &mut *guard;
    let Some(slot) = slots.get_mut(index) else {
        return StatusCode::BadNodeIdUnknown;
    };
    let reactor = slot.plant.reactor_id();
    match var {
        Var::Control(c) => {
            let mut candidate = slot.plant.setpoints();
            candidate[c.index()] = v;
            let hard: Vec<String> = design_space
                .check_setpoints(&candidate)
                .into_iter()
                .filter(|x| x.hard)
                .map(|x| x.to_string())
                .collect();
            if !hard.is_empty() {
                tracing::warn!(%reactor, control = %c, value = v, reason = %hard.join("; "),
                    "emulator: setpoint write rejected (BadOutOfRange), value left unchanged");
                return StatusCode::BadOutOfRange;
            }
            match slot.plant.set_setpoints(&candidate) {
                Ok(()) => {
                    tracing::info!(%reactor, control = %c, value = v, "emulator: setpoint written");
                    slot.refresh();
                    StatusCode::Good
                }
                Err(e) => {
                    tracing::warn!(%reactor, control = %c, value = v, error = %e,
                        "emulator: setpoint write refused by the plant");
                    StatusCode::BadOutOfRange
                }
            }
        }
        Var::AdvanceDays => {
            let whole = v.is_finite() && v.fract().abs() < 1e-9;
            if !whole || v < 1.0 || v > f64::from(MAX_ADVANCE_DAYS) {
                tracing::warn!(%reactor, value = v,
                    "emulator: AdvanceDays needs a whole number of days in 1..={MAX_ADVANCE_DAYS}");
                return StatusCode::BadOutOfRange;
            }
            // `v` is a whole number in [1, MAX_ADVANCE_DAYS]: the cast is exact.
            let days = v as u32;
            match slot.advance(days) {
                Ok(()) => {
                    tracing::info!(%reactor, days, day = slot.plant.day(), "emulator: advanced on demand");
                    StatusCode::Good
                }
                Err(e) => {
                    tracing::error!(%reactor, error = %e, "emulator: advancing failed");
                    StatusCode::BadInternalError
                }
            }
        }
        _ => StatusCode::BadNotWritable,
    }
}

/// An OPC UA server emulating an ambr250: one folder object per reactor under `Objects`,
/// in namespace [`AMBR250_NAMESPACE_URI`], holding Double variables with the canonical
/// browse names (string NodeIds `"{reactor}.{name}"`, see [`super::NodeMap::ambr250`]):
///
/// | variables | access | meaning |
/// |---|---|---|
/// | `CultureDay` | read | current culture day (days since inoculation) |
/// | `VCD, Via, Glc, Gln, Glu, Lac, Amm, Pyr, Titer` | read | measured sample of the current day; a value missing from that sample reads as `BadNoDataAvailable` |
/// | `VCV, Diam` | read | derived variables of the same sample |
/// | `perfusion_rate, bleed_rate, glucose_setpoint, temperature, agitation, pyruvate_feed` | read/write | setpoints acting from the current day on |
/// | `AdvanceDays` | read/write | write a whole number `n` in 1..=365 to advance `n` days now (reads 0) |
///
/// Setpoint writes that are not finite, outside the design space's hard limits or that
/// make the bleed exceed the perfusion rate are refused with `BadOutOfRange` and leave the
/// value unchanged. Culture time also advances by itself when
/// [`EmulatorConfig::seconds_per_day`] is set.
///
/// The server is stopped by [`Emulator::stop`] (or when the value is dropped).
pub struct Emulator {
    handle: ServerHandle,
    addr: SocketAddr,
    url: String,
    shared: SharedRef,
    server_task: Option<JoinHandle<Result<(), String>>>,
    ticker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("url", &self.url)
            .field("reactors", &self.reactor_ids())
            .finish_non_exhaustive()
    }
}

fn other(context: &str, message: impl Into<String>) -> ConnectorError {
    ConnectorError::Data {
        context: context.to_string(),
        message: message.into(),
    }
}

impl Emulator {
    /// Starts the server on `config.host:config.port` serving `plants` (1 to
    /// [`MAX_REACTORS`], distinct reactor ids) and returns once it listens.
    pub async fn start(
        config: EmulatorConfig,
        plants: Vec<Box<dyn Plant>>,
    ) -> Result<Self, ConnectorError> {
        const CTX: &str = "starting the OPC UA emulator";
        if plants.is_empty() || plants.len() > MAX_REACTORS {
            return Err(other(
                CTX,
                format!(
                    "{} reactors requested; the emulator hosts 1 to {MAX_REACTORS}",
                    plants.len()
                ),
            ));
        }
        let mut ids: Vec<String> = plants.iter().map(|p| p.reactor_id()).collect();
        ids.sort();
        ids.dedup();
        if ids.len() != plants.len() {
            return Err(other(CTX, "reactor ids must be distinct"));
        }
        if let Some(s) = config.seconds_per_day
            && !(s.is_finite() && s > 0.0)
        {
            return Err(other(
                CTX,
                format!("seconds_per_day = {s}: give a positive number of seconds"),
            ));
        }
        if !config.allow_anonymous && config.users.is_empty() && config.x509_users.is_empty() {
            return Err(other(
                CTX,
                "no identity accepted: allow anonymous sessions or add a user",
            ));
        }
        let listener = TcpListener::bind((config.host.as_str(), config.port))
            .await
            .map_err(|source| ConnectorError::Io {
                context: format!("binding {}:{}", config.host, config.port),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ConnectorError::Io {
            context: "reading the bound address".into(),
            source,
        })?;
        let url = format!("opc.tcp://{}:{}/", config.host, addr.port());

        let mut token_ids: Vec<String> = Vec::new();
        if config.allow_anonymous {
            token_ids.push(ANONYMOUS_USER_TOKEN_ID.to_string());
        }
        let mut builder = ServerBuilder::new()
            .application_name("perfusio ambr250 emulator")
            .application_uri("urn:perfusio:ambr250-emulator")
            .product_uri("urn:perfusio:ambr250-emulator")
            .create_sample_keypair(true)
            .pki_dir(&config.pki_dir)
            .trust_client_certs(config.trust_client_certs)
            .host(config.host.clone())
            .port(addr.port())
            .discovery_urls(vec![url.clone()])
            .max_sessions(EMULATOR_MAX_SESSIONS)
            .diagnostics_enabled(false)
            .with_node_manager(simple_node_manager(
                NamespaceMetadata {
                    namespace_uri: AMBR250_NAMESPACE_URI.to_string(),
                    ..Default::default()
                },
                "ambr250",
            ));
        for (i, (user, pass)) in config.users.iter().enumerate() {
            let id = format!("user{i}");
            builder = builder.add_user_token(
                id.clone(),
                ServerUserToken::user_pass(user.clone(), pass.expose().to_string()),
            );
            token_ids.push(id);
        }
        for (i, (user, cert)) in config.x509_users.iter().enumerate() {
            let id = format!("x509user{i}");
            builder = builder.add_user_token(id.clone(), ServerUserToken::x509(user.clone(), cert));
            token_ids.push(id);
        }
        let ids_ref: Vec<&str> = token_ids.iter().map(String::as_str).collect();
        if config.security_none {
            builder = builder.add_endpoint(
                "none",
                (
                    "/",
                    SecurityPolicy::None,
                    MessageSecurityMode::None,
                    ids_ref.as_slice(),
                ),
            );
        }
        builder = builder
            .add_endpoint(
                "basic256sha256_sign",
                (
                    "/",
                    SecurityPolicy::Basic256Sha256,
                    MessageSecurityMode::Sign,
                    ids_ref.as_slice(),
                ),
            )
            .add_endpoint(
                "basic256sha256_sign_encrypt",
                (
                    "/",
                    SecurityPolicy::Basic256Sha256,
                    MessageSecurityMode::SignAndEncrypt,
                    ids_ref.as_slice(),
                ),
            );
        let (server, handle) = builder
            .build()
            .map_err(|e| other(CTX, format!("invalid server configuration: {e}")))?;

        let mut slots = Vec::with_capacity(plants.len());
        for plant in plants {
            let current = plant.sample(plant.day())?;
            slots.push(Slot { plant, current });
        }
        let shared: SharedRef = Arc::new(Mutex::new(Shared {
            slots,
            design_space: config.design_space.clone(),
        }));
        let first_read = Arc::new(FirstRead::default());
        populate(&handle, &shared, &first_read)?;

        let server_task = tokio::spawn(server.run_with(listener));
        let ticker = config.seconds_per_day.map(|s| {
            let shared = shared.clone();
            let token = handle.token().clone();
            let wait_for_read = config.clock_starts_on_first_read;
            tokio::spawn(async move {
                if wait_for_read {
                    tokio::select! {
                        _ = token.cancelled() => return,
                        () = first_read.notify.notified() => {}
                    }
                    tracing::info!("emulator: first read by a client, the culture clock starts");
                }
                let period = Duration::from_secs_f64(s);
                let mut interval =
                    tokio::time::interval_at(tokio::time::Instant::now() + period, period);
                loop {
                    tokio::select! {
                        _ = token.cancelled() => break,
                        _ = interval.tick() => {
                            if let Ok(mut g) = shared.lock() {
                                for slot in &mut g.slots {
                                    if let Err(e) = slot.advance(1) {
                                        tracing::error!(error = %e, "emulator: advancing failed");
                                    }
                                }
                            }
                        }
                    }
                }
            })
        });
        tracing::info!(%url, reactors = ids.len(), "OPC UA ambr250 emulator listening");
        Ok(Self {
            handle,
            addr,
            url,
            shared,
            server_task: Some(server_task),
            ticker,
        })
    }

    /// Address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Endpoint URL, e.g. `opc.tcp://127.0.0.1:4840/`.
    pub fn endpoint_url(&self) -> &str {
        &self.url
    }

    /// Reactor ids in folder order.
    pub fn reactor_ids(&self) -> Vec<String> {
        self.shared
            .lock()
            .map(|g| g.slots.iter().map(|s| s.plant.reactor_id()).collect())
            .unwrap_or_default()
    }

    fn with_slot<T>(
        &self,
        reactor: usize,
        f: impl FnOnce(&mut Slot) -> Result<T, ConnectorError>,
    ) -> Result<T, ConnectorError> {
        let mut g = self
            .shared
            .lock()
            .map_err(|_| other("emulator", "state lock poisoned"))?;
        let n = g.slots.len();
        let slot = g.slots.get_mut(reactor).ok_or_else(|| {
            other(
                "emulator",
                format!("reactor index {reactor} out of range (0..{n})"),
            )
        })?;
        f(slot)
    }

    /// Current culture day of reactor `reactor` (index in folder order).
    pub fn day(&self, reactor: usize) -> Result<u32, ConnectorError> {
        self.with_slot(reactor, |s| Ok(s.plant.day()))
    }

    /// Setpoints acting in reactor `reactor`.
    pub fn setpoints(
        &self,
        reactor: usize,
    ) -> Result<perfusio_core::ControlArray<f64>, ConnectorError> {
        self.with_slot(reactor, |s| Ok(s.plant.setpoints()))
    }

    /// The sample currently served by reactor `reactor`.
    pub fn current_sample(&self, reactor: usize) -> Result<Sample, ConnectorError> {
        self.with_slot(reactor, |s| Ok(s.current.clone()))
    }

    /// Advances every reactor by `days` culture days now.
    pub fn advance_days(&self, days: u32) -> Result<(), ConnectorError> {
        let mut g = self
            .shared
            .lock()
            .map_err(|_| other("emulator", "state lock poisoned"))?;
        for slot in &mut g.slots {
            slot.advance(days)?;
        }
        Ok(())
    }

    /// Stops the server and waits (at most 5 s) until it has closed its port.
    pub async fn stop(mut self) {
        self.shutdown();
        if let Some(task) = self.server_task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        if let Some(t) = self.ticker.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), t).await;
        }
    }

    /// Waits until the server ends (after [`Emulator::stop`] from elsewhere, or an error).
    pub async fn wait(&mut self) -> Result<(), ConnectorError> {
        if let Some(task) = self.server_task.as_mut() {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(other("OPC UA emulator", e)),
                Err(e) => return Err(other("OPC UA emulator", e.to_string())),
            }
            self.server_task = None;
        }
        Ok(())
    }

    /// Asks the server to stop (without waiting).
    pub fn shutdown(&self) {
        self.handle.cancel();
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.handle.cancel();
    }
}

/// Signals the first read of a reactor's variable (see
/// [`EmulatorConfig::clock_starts_on_first_read`]).
#[derive(Debug, Default)]
struct FirstRead {
    seen: AtomicBool,
    notify: tokio::sync::Notify,
}

impl FirstRead {
    fn mark(&self) {
        // every read calls this: after the first, a shared load and nothing written
        if !self.seen.load(Ordering::Acquire) && !self.seen.swap(true, Ordering::AcqRel) {
            // a permit is stored if the ticker is not waiting yet
            self.notify.notify_one();
        }
    }
}

/// Creates the reactor folders and variables and registers the read/write callbacks (each
/// read marks `first_read`).
fn populate(
    handle: &ServerHandle,
    shared: &SharedRef,
    first_read: &Arc<FirstRead>,
) -> Result<(), ConnectorError> {
    const CTX: &str = "building the emulator address space";
    let nm = handle
        .node_managers()
        .get_of_type::<SimpleNodeManager>()
        .ok_or_else(|| other(CTX, "simple node manager missing"))?;
    let ns = handle
        .get_namespace_index(AMBR250_NAMESPACE_URI)
        .ok_or_else(|| other(CTX, "namespace not registered"))?;
    let ids: Vec<String> = shared
        .lock()
        .map_err(|_| other(CTX, "state lock poisoned"))?
        .slots
        .iter()
        .map(|s| s.plant.reactor_id())
        .collect();
    let objects: NodeId = ObjectId::ObjectsFolder.into();
    {
        let mut space = nm.address_space().write();
        for reactor in &ids {
            let folder = NodeId::new(ns, reactor.clone());
            ObjectBuilder::new(&folder, reactor.as_str(), reactor.as_str())
                .is_folder()
                .organized_by(objects.clone())
                .insert(&mut *space);
            for var in Var::all() {
                let id = NodeId::new(ns, ambr250_node_id(reactor, var.name()));
                let mut b = VariableBuilder::new(&id, var.name(), var.name())
                    .data_type(DataTypeId::Double)
                    .value(0.0f64)
                    .organized_by(folder.clone());
                if var.writable() {
                    b = b.writable();
                }
                b.insert(&mut *space);
            }
        }
    }
    let inner = nm.inner();
    for (index, reactor) in ids.iter().enumerate() {
        for var in Var::all() {
            let id = NodeId::new(ns, ambr250_node_id(reactor, var.name()));
            let sh = shared.clone();
            let first = first_read.clone();
            inner.add_read_callback(id.clone(), move |_range, _ts, _age| {
                first.mark();
                let g = lock(&sh)?;
                let slot = g.slots.get(index).ok_or(StatusCode::BadNodeIdUnknown)?;
                Ok(DataValue::new_now(var.read(slot)?))
            });
            if var.writable() {
                let sh = shared.clone();
                inner.add_write_callback(id, move |value: DataValue, _range: &NumericRange| {
                    write_var(&sh, index, var, &value)
                });
            }
        }
    }
    Ok(())
}
