//! A simulated run for demonstrations, tests and benchmarks: a reproducible sequence of
//! realistic entries of every kind.
//!
//! The numbers follow the shape of a CHO perfusion culture (cells grow and plateau, glucose is
//! consumed, titer accumulates) but come from a tiny deterministic generator, not from the plant
//! model: the point is realistic *records*, not realistic biology.

use std::collections::BTreeMap;

use serde_json::json;
use time::{Duration, OffsetDateTime, macros::datetime};

use crate::event::{
    Alarm, ConnectorError, Decision, Event, Forecast, ModelRetrained, RunFinished, RunStarted,
    SampleRead, SampleRejected, SetpointWithheld, SetpointWritten, Severity,
};
use crate::record::Actor;
use crate::writer::Entry;

/// Species names used by the demo, in canonical order.
pub const SPECIES: [&str; 9] = [
    "VCD", "Via", "Glc", "Gln", "Glu", "Lac", "Amm", "Pyr", "Titer",
];

/// Control names used by the demo.
pub const CONTROLS: [&str; 6] = [
    "perfusion_rate",
    "bleed_rate",
    "glucose_setpoint",
    "temperature",
    "agitation",
    "pyruvate_feed",
];

/// Timestamp of the demo's first record.
pub const START: OffsetDateTime = datetime!(2026-11-02 08:00:00 UTC);

/// Small deterministic generator (SplitMix64).
#[derive(Debug, Clone)]
struct Mix(u64);

impl Mix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Value with ±`rel` relative noise, rounded to 4 significant-ish decimals.
    fn noisy(&mut self, x: f64, rel: f64) -> f64 {
        let v = x * (1.0 + rel * (2.0 * self.unit() - 1.0));
        (v * 1e4).round() / 1e4
    }
}

fn state(day: f64) -> [f64; 9] {
    let vcd = 60.0 / (1.0 + 59.0 * (-0.6 * day).exp());
    [
        vcd,
        99.0 - 0.3 * day,
        (5.0 - 0.05 * vcd).max(0.5),
        (4.0 - 0.03 * vcd).max(0.1),
        0.5 + 0.02 * vcd,
        2.0 + 0.2 * vcd,
        0.5 + 0.05 * vcd,
        0.1,
        25.0 * day * (vcd / 60.0),
    ]
}

fn controls(day: f64, rng: &mut Mix) -> BTreeMap<String, f64> {
    let base = [1.0 + 0.03 * day, 0.15, 5.0, 36.5, 850.0, 1.0];
    CONTROLS
        .iter()
        .zip(base)
        .map(|(n, v)| ((*n).to_string(), rng.noisy(v, 0.02)))
        .collect()
}

/// `n` entries of a simulated run, the last one `run_finished` (for `n ≥ 1`), with
/// reproducible timestamps counted from [`START`]. The same `seed` gives the same entries.
///
/// ```
/// let entries = perfusio_audit::demo::simulated_run(40, 7);
/// assert_eq!(entries.len(), 40);
/// assert_eq!(entries[0].event.kind().as_str(), "run_started");
/// assert_eq!(entries[39].event.kind().as_str(), "run_finished");
/// ```
pub fn simulated_run(n: usize, seed: u64) -> Vec<Entry> {
    let mut rng = Mix(seed);
    let mut out: Vec<Entry> = Vec::with_capacity(n);
    let mut day = 0u32;
    let mut step = 0usize;
    if n == 0 {
        return out;
    }
    let settings = BTreeMap::from([
        (
            "connector".to_string(),
            json!({"kind": "virtual", "clone": "CloneX", "volume_l": 0.25}),
        ),
        (
            "objective".to_string(),
            json!({"kind": "vcv_target", "target_percent": 30.0, "horizon_days": 3}),
        ),
        ("retrain_every".to_string(), json!(1)),
        ("allow_write".to_string(), json!(true)),
    ]);
    let mut events: Vec<(f64, Actor, Event)> = vec![(
        0.0,
        Actor::System,
        Event::RunStarted(RunStarted {
            software: format!("perfusio {}", env!("CARGO_PKG_VERSION")),
            seed: Some(seed),
            settings,
        }),
    )];
    while events.len() + 1 < n {
        let d = f64::from(day);
        let s = state(d);
        let mut values: BTreeMap<String, Option<f64>> = SPECIES
            .iter()
            .zip(s)
            .map(|(name, v)| ((*name).to_string(), Some(rng.noisy(v, 0.03))))
            .collect();
        if rng.unit() < 0.1 {
            values.insert("Pyr".into(), None);
        }
        events.push((
            d,
            Actor::System,
            Event::SampleRead(SampleRead {
                source: "virtual-R1".into(),
                values,
            }),
        ));
        if day % 5 == 3 {
            events.push((
                d,
                Actor::System,
                Event::SampleRejected(SampleRejected {
                    species: "Lac".into(),
                    raw: "-0.4".into(),
                    reason: "out_of_bounds".into(),
                    detail: "lactate -0.4 mmol/L is below the lower bound 0".into(),
                }),
            ));
        }
        if day > 0 && day % 7 == 4 {
            events.push((
                d,
                Actor::System,
                Event::ConnectorError(ConnectorError {
                    connector: "opcua://127.0.0.1:4840".into(),
                    operation: "read_sample".into(),
                    message: "BadConnectionClosed; retrying in 0.4 s".into(),
                    retryable: true,
                }),
            ));
        }
        if day > 0 {
            let fit_summary = BTreeMap::from([
                (
                    "log_marginal_likelihood".to_string(),
                    rng.noisy(-120.0 + 3.0 * d, 0.05),
                ),
                ("noise_variance".to_string(), rng.noisy(0.02, 0.2)),
            ]);
            events.push((
                d,
                Actor::System,
                Event::ModelRetrained(ModelRetrained {
                    observations: u64::from(day),
                    fit_summary,
                    duration_s: rng.noisy(0.8 + 0.05 * d, 0.3),
                }),
            ));
        }
        let horizon = 3u32;
        let mut mean = BTreeMap::new();
        let mut lower = BTreeMap::new();
        let mut upper = BTreeMap::new();
        for (k, name) in SPECIES.iter().enumerate() {
            let m: Vec<f64> = (1..=horizon)
                .map(|h| rng.noisy(state(d + f64::from(h))[k], 0.01))
                .collect();
            lower.insert(
                (*name).to_string(),
                m.iter().map(|v| (v * 0.9 * 1e4).round() / 1e4).collect(),
            );
            upper.insert(
                (*name).to_string(),
                m.iter().map(|v| (v * 1.1 * 1e4).round() / 1e4).collect(),
            );
            mean.insert((*name).to_string(), m);
        }
        events.push((
            d,
            Actor::System,
            Event::Forecast(Forecast {
                from_day: d,
                horizon_days: horizon,
                level: 0.9,
                mean,
                lower,
                upper,
            }),
        ));
        let c = controls(d, &mut rng);
        events.push((
            d,
            Actor::System,
            Event::Decision(Decision {
                controls: c.clone(),
                acquisition: "log_ei".into(),
                acquisition_value: rng.noisy(-2.5, 0.5),
                predicted_objective: rng.noisy(1.5 + 0.1 * d, 0.1),
            }),
        ));
        if day % 6 == 5 {
            events.push((
                d,
                Actor::operator("alice").unwrap_or(Actor::System),
                Event::SetpointWithheld(SetpointWithheld {
                    setpoints: c,
                    reason: "write gate closed by operator for sampling".into(),
                }),
            ));
        } else {
            events.push((
                d,
                Actor::System,
                Event::SetpointWritten(SetpointWritten {
                    connector: "virtual-R1".into(),
                    setpoints: c,
                }),
            ));
        }
        if s[2] < 2.5 {
            events.push((
                d,
                Actor::System,
                Event::Alarm(Alarm {
                    severity: Severity::Warning,
                    species: Some("Glc".into()),
                    value: Some((s[2] * 1e3).round() / 1e3),
                    threshold: Some(2.5),
                    predicted_day: Some(d + 2.0),
                    message: "glucose predicted below 2.5 g/L within 2 days".into(),
                }),
            ));
        }
        day += 1;
        step += 1;
        if step > n {
            break;
        }
    }
    events.truncate(n - 1);
    let last_day = events.last().map_or(0.0, |e| e.0);
    events.push((
        last_day,
        Actor::System,
        Event::RunFinished(RunFinished {
            reason: "completed".into(),
            last_day,
        }),
    ));
    for (i, (d, actor, event)) in events.into_iter().enumerate() {
        // Day `d` starts `d` days after START; records within a day are one second apart.
        let secs = i64::try_from(i).unwrap_or(0);
        let at = START
            + Duration::seconds_f64(d * 86_400.0)
            + Duration::seconds(secs)
            + Duration::microseconds(250);
        out.push(Entry::new(d, event).by(actor).at(at));
    }
    out
}
