//! A simulated run for demonstrations, tests and benchmarks: a reproducible sequence of
//! realistic entries of every kind (feature `demo`; not part of the stable API).
//!
//! The numbers follow the shape of a CHO perfusion culture (cells grow and plateau, glucose is
//! consumed, titer accumulates) but come from a tiny deterministic generator, not from the plant
//! model: the point is realistic *records*, not realistic biology.

use std::collections::BTreeMap;

use perfusio_core::{Acquisition, Control, ControlReceipt, Species, WriteReceipt, WriteStatus};
use serde_json::json;
use time::{Duration, OffsetDateTime, macros::datetime};

use crate::canonical::sha256_hex;
use crate::event::{
    Alarm, AlarmState, CalibratedParameter, ConnectorError, Decision, Event, Forecast,
    ForecastMethod, ModelRetrained, ObjectiveEstimate, RunFinished, RunStarted, SampleRead,
    SampleRejected, SetpointWithheld, SetpointWritten, Severity, SpeciesBands,
};
use crate::record::Actor;
use crate::writer::Entry;

/// Days ahead at which the demo's forecasts give their bands (as the twin does).
pub const DAYS_AHEAD: [u32; 4] = [1, 3, 7, 28];

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
        (99.0 - 0.3 * day).max(60.0),
        (5.0 - 0.05 * vcd).max(0.5),
        (4.0 - 0.03 * vcd).max(0.1),
        0.5 + 0.02 * vcd,
        2.0 + 0.2 * vcd,
        0.5 + 0.05 * vcd,
        0.1,
        25.0 * day * (vcd / 60.0),
    ]
}

fn controls(day: f64, rng: &mut Mix) -> Vec<(Control, f64)> {
    let base = [1.0 + 0.03 * day, 0.15, 5.0, 36.5, 850.0, 1.0];
    Control::ALL
        .iter()
        .zip(base)
        .map(|(c, v)| (*c, rng.noisy(v, 0.02)))
        .collect()
}

fn control_map(c: &[(Control, f64)]) -> BTreeMap<String, f64> {
    c.iter().map(|(k, v)| (k.name().to_string(), *v)).collect()
}

/// A receipt for `c` on `day`: every control confirmed, except that every fourth day agitation
/// reads back differently (unconfirmed) and every ninth day the pyruvate feed is refused.
fn receipt(day: u32, c: &[(Control, f64)], at: OffsetDateTime) -> WriteReceipt {
    let controls = c
        .iter()
        .map(|(control, v)| {
            let (readback, status) = match control {
                Control::Agitation if day % 4 == 2 => (
                    Some(v - 1.0),
                    WriteStatus::Unconfirmed {
                        reason: format!("read back {} rpm", v - 1.0),
                    },
                ),
                Control::PyruvateFeed if day % 9 == 7 => (
                    None,
                    WriteStatus::Rejected {
                        reason: "BadUserAccessDenied".into(),
                    },
                ),
                _ => (Some(*v), WriteStatus::Confirmed),
            };
            ControlReceipt {
                control: *control,
                requested: *v,
                readback,
                status,
            }
        })
        .collect();
    WriteReceipt {
        day,
        controls,
        timestamp: Some(at),
    }
}

/// A model hash that changes with every retrain.
fn model_hash(seed: u64, day: u32) -> String {
    sha256_hex(format!("demo model {seed} {day}").as_bytes())
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
    let mut events: Vec<(u32, Actor, Event)> = vec![(
        0,
        Actor::System,
        Event::RunStarted(RunStarted {
            software: format!("perfusio {}", env!("CARGO_PKG_VERSION")),
            seed: Some(seed),
            settings,
        }),
    )];
    let mut model = model_hash(seed, 0);
    let mut glucose_alarm = false;
    while events.len() + 1 < n {
        let d = f64::from(day);
        let s = state(d);
        let mut values: BTreeMap<String, Option<f64>> = Species::ALL
            .iter()
            .zip(s)
            .map(|(sp, v)| (sp.name().to_string(), Some(rng.noisy(v, 0.03))))
            .collect();
        if rng.unit() < 0.1 {
            values.insert("Pyr".into(), None);
        }
        events.push((
            day,
            Actor::System,
            Event::SampleRead(SampleRead {
                source: "virtual-R1".into(),
                values,
            }),
        ));
        if day % 5 == 3 {
            events.push((
                day,
                Actor::System,
                Event::SampleRejected(SampleRejected {
                    species: "Lac".into(),
                    raw: "-0.4".into(),
                    reason: "below_bound".into(),
                    detail: "Lac = -0.4 mmol/L is below the lower bound 0".into(),
                    origin: Some(format!("ns=2;s=R1/Lac (day {day})")),
                }),
            ));
        }
        if day > 0 && day % 7 == 4 {
            events.push((
                day,
                Actor::System,
                Event::ConnectorError(ConnectorError {
                    connector: "opcua://127.0.0.1:4840".into(),
                    operation: "read_raw".into(),
                    message: "BadConnectionClosed; retrying in 0.4 s".into(),
                    retryable: true,
                }),
            ));
        }
        if day > 0 {
            model = model_hash(seed, day);
            let converged = !day.is_multiple_of(5);
            let calibrated = if day.is_multiple_of(7) {
                BTreeMap::from([
                    (
                        "mu_max".to_string(),
                        CalibratedParameter {
                            value: rng.noisy(0.042, 0.02),
                            std_error: Some(rng.noisy(0.001, 0.1)),
                        },
                    ),
                    (
                        "q_glc_max".to_string(),
                        CalibratedParameter {
                            value: rng.noisy(5.2e-11, 0.02),
                            std_error: None,
                        },
                    ),
                ])
            } else {
                BTreeMap::new()
            };
            events.push((
                day,
                Actor::System,
                Event::ModelRetrained(ModelRetrained {
                    model_sha256: model.clone(),
                    rows: u64::from(day) * 9,
                    transitions: u64::from(day),
                    nlml: rng.noisy(120.0 - 3.0 * d, 0.05),
                    iterations: 40 + u64::from(day % 13),
                    evaluations: 52 + u64::from(day % 17),
                    converged,
                    termination: if converged {
                        "gradient_tolerance"
                    } else {
                        "iteration_cap"
                    }
                    .into(),
                    warm_start: day > 1,
                    duration_s: rng.noisy(0.008 + 0.0005 * d, 0.3),
                    calibrated,
                    pathways: BTreeMap::new(),
                }),
            ));
        }
        let horizon = 28u32;
        let mut bands = BTreeMap::new();
        for sp in Species::ALL {
            let k = sp.index();
            let (mean, sd): (Vec<f64>, Vec<f64>) = DAYS_AHEAD
                .iter()
                .map(|h| {
                    let m = rng.noisy(state(d + f64::from(*h))[k], 0.01);
                    (m, 0.05 * m.abs() * f64::from(*h).sqrt())
                })
                .unzip();
            bands.insert(
                sp.name().to_string(),
                SpeciesBands::from_normal(&mean, &sd, 0.0),
            );
        }
        events.push((
            day,
            Actor::System,
            Event::Forecast(Forecast {
                from_day: day,
                horizon_days: horizon,
                method: ForecastMethod::MonteCarlo,
                paths: 256,
                model_sha256: model.clone(),
                forecast_sha256: sha256_hex(format!("demo forecast {seed} {day}").as_bytes()),
                days_ahead: DAYS_AHEAD.to_vec(),
                bands,
            }),
        ));
        let c = controls(d, &mut rng);
        let hold = rng.noisy(1.4 + 0.1 * d, 0.1);
        events.push((
            day,
            Actor::System,
            Event::Decision(Decision {
                controls: control_map(&c),
                acquisition: Acquisition::LogEI,
                acquisition_value: rng.noisy(-2.5, 0.5),
                objective: "track:VCV=30".into(),
                recommended: ObjectiveEstimate {
                    mean: rng.noisy(1.5 + 0.1 * d, 0.1),
                    sd: rng.noisy(0.3, 0.2),
                },
                hold: ObjectiveEstimate {
                    mean: hold,
                    sd: rng.noisy(0.35, 0.2),
                },
                probability_feasible: rng.noisy(0.95, 0.04).min(1.0),
                reason: format!("raise perfusion to {:.3} vvd: VCV below target", c[0].1),
                elapsed_s: rng.noisy(0.05, 0.3),
                horizon_days: Some(3),
                objectives: Vec::new(),
                next_sample: Default::default(),
            }),
        ));
        if day % 6 == 5 {
            events.push((
                day,
                Actor::operator("alice").unwrap_or(Actor::System),
                Event::SetpointWithheld(SetpointWithheld {
                    setpoints: control_map(&c),
                    reason: "write gate closed by operator for sampling".into(),
                }),
            ));
        } else {
            let at = START + Duration::days(i64::from(day)) + Duration::milliseconds(1500);
            events.push((
                day,
                Actor::System,
                Event::SetpointWritten(SetpointWritten::new("virtual-R1", receipt(day, &c, at))),
            ));
        }
        if s[2] < 2.5 && !glucose_alarm {
            glucose_alarm = true;
            events.push((
                day,
                Actor::System,
                Event::Alarm(Alarm {
                    severity: Severity::Warning,
                    state: AlarmState::Raised,
                    species: Some("Glc".into()),
                    value: Some((s[2] * 1e3).round() / 1e3),
                    threshold: Some(2.5),
                    predicted_day: Some(day + 2),
                    message: "glucose predicted below 2.5 g/L within 2 days".into(),
                }),
            ));
        }
        if day % 10 == 6 || day % 10 == 8 {
            let raised = day % 10 == 6;
            events.push((
                day,
                Actor::System,
                Event::Alarm(Alarm {
                    severity: Severity::Critical,
                    state: if raised {
                        AlarmState::Raised
                    } else {
                        AlarmState::Cleared
                    },
                    species: Some("Amm".into()),
                    value: Some(if raised { 10.5 } else { 8.25 }),
                    threshold: Some(10.0),
                    predicted_day: raised.then_some(day + 3),
                    message: if raised {
                        "ammonium above 10 mmol/L by day +3 with probability 0.9".into()
                    } else {
                        "ammonium back below 10 mmol/L".into()
                    },
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
    let last_day = events.last().map_or(0, |e| e.0);
    events.push((
        last_day,
        Actor::System,
        Event::RunFinished(RunFinished {
            completed: true,
            reason: "completed".into(),
            last_day,
        }),
    ));
    for (i, (d, actor, event)) in events.into_iter().enumerate() {
        // Day `d` starts `d` days after START; records within a day are one second apart.
        let secs = i64::try_from(i).unwrap_or(0);
        let at = START
            + Duration::days(i64::from(d))
            + Duration::seconds(secs)
            + Duration::microseconds(250);
        out.push(Entry::new(d, event).by(actor).at(at));
    }
    out
}
