//! What a run did: one [`DayRecord`] per culture day (built from the very events written
//! to the audit log, so a resumed run reports exactly what an uninterrupted one would),
//! the [`RunReport`] with its table, and the [`RunSummary`] of `perfusio run
//! --summary-json`.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use perfusio_audit::Event;
use perfusio_audit::event::{
    Alarm, AlarmState, ConnectorError as ConnectorErrorEvent, Decision, Forecast as ForecastEvent,
    ModelRetrained, SampleRead, SampleRejected, SetpointWithheld, SetpointWritten,
};
use perfusio_bed::objective::{Harvest, Objective};
use perfusio_core::{Control, ControlArray, CultureDay, N_SPECIES, Species, SpeciesArray};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Everything recorded for one culture day, in the order of the loop.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct DayRecord {
    /// The culture day.
    pub day: CultureDay,
    /// The sample as recorded (accepted values by canonical name, `None` = not measured or
    /// rejected; controls the source reported as applied, by control name); `None` when the
    /// day could not be read.
    pub sample: Option<SampleRead>,
    /// Every rejected value, with its reason and origin.
    pub rejected: Vec<SampleRejected>,
    /// The retraining of this day, if any.
    pub retrained: Option<ModelRetrained>,
    /// The forecast record (bands at a few days ahead, hashes).
    pub forecast: Option<ForecastEvent>,
    /// Alarms raised or cleared.
    pub alarms: Vec<Alarm>,
    /// The design policy's recommendation and its reason.
    pub decision: Option<Decision>,
    /// The write and the connector's receipt, when writing is on.
    pub written: Option<SetpointWritten>,
    /// The withheld recommendation and why, when it was not written.
    pub withheld: Option<SetpointWithheld>,
    /// Connector failures of the day (reads and writes, retried or not).
    pub errors: Vec<ConnectorErrorEvent>,
    /// Seconds spent waiting for the day's sample.
    pub waited_s: f64,
    /// Controls applied over `day → day + 1` (confirmed writes, else those in force).
    pub applied: Option<ControlArray<f64>>,
}

impl DayRecord {
    /// An empty record of `day`.
    pub fn new(day: CultureDay) -> Self {
        Self {
            day,
            ..Self::default()
        }
    }

    /// Adds one recorded event of the day.
    pub(crate) fn push(&mut self, event: &Event) {
        match event {
            Event::SampleRead(s) => self.sample = Some(s.clone()),
            Event::SampleRejected(r) => self.rejected.push(r.clone()),
            Event::ModelRetrained(m) => self.retrained = Some(m.clone()),
            Event::Forecast(f) => self.forecast = Some(f.clone()),
            Event::Alarm(a) => self.alarms.push(a.clone()),
            Event::Decision(d) => self.decision = Some(d.clone()),
            Event::SetpointWritten(w) => self.written = Some(w.clone()),
            Event::SetpointWithheld(w) => self.withheld = Some(w.clone()),
            Event::ConnectorError(e) => self.errors.push(e.clone()),
            Event::Custom(c) if c.name == crate::twin::WAIT_EVENT => {
                self.waited_s += c
                    .data
                    .get("waited_s")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0);
            }
            _ => {}
        }
    }

    /// Whether the day's terminal record (written or withheld) is there.
    pub fn is_complete(&self) -> bool {
        self.written.is_some() || self.withheld.is_some()
    }

    /// The accepted value of species `s`, if measured.
    pub fn species(&self, s: Species) -> Option<f64> {
        self.sample
            .as_ref()
            .and_then(|r| r.values.get(s.name()).copied().flatten())
    }

    /// The forecast band of species `s` at `days_ahead` (q10, q50, q90), if recorded.
    pub fn forecast_band(&self, s: Species, days_ahead: u32) -> Option<(f64, f64, f64)> {
        let f = self.forecast.as_ref()?;
        let i = f.days_ahead.iter().position(|d| *d == days_ahead)?;
        let b = f.bands.get(s.name())?;
        Some((*b.q10.get(i)?, *b.q50.get(i)?, *b.q90.get(i)?))
    }

    /// Number of alarms raised this day.
    pub fn alarms_raised(&self) -> usize {
        self.alarms
            .iter()
            .filter(|a| a.state == AlarmState::Raised)
            .count()
    }
}

/// One-day-ahead accuracy of one species: each decision's expected next sample (the
/// measured value's bands under the recommended setpoints, `Decision::next_sample` in the
/// audit) against the next day's sample, over the days whose recommendation was written as
/// it stands. There is no noise-free truth here, so the RMSE is taken against the
/// measurements and includes their noise.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpeciesAccuracy {
    /// Species name.
    pub species: String,
    /// Forecast/measurement pairs.
    pub n: usize,
    /// RMSE of the median against the measurements, over the mean measurement.
    pub rrmse: f64,
    /// Share of measurements inside the 90 % band (q05–q95).
    pub coverage90: f64,
}

/// One-day-ahead pairs of each species, `(q05, q50, q95, next sample)`.
pub(crate) type OneDayPairs = [Vec<(f64, f64, f64, f64)>; N_SPECIES];

/// Whether every control of `written` was requested at the decision's recommended value
/// (to a relative 10⁻⁹), and nothing else was written.
fn written_as_recommended(dec: &Decision, written: &SetpointWritten) -> bool {
    let controls = &written.receipt.controls;
    controls.len() == dec.controls.len()
        && controls.iter().all(|c| {
            dec.controls
                .get(c.control.name())
                .is_some_and(|r| (c.requested - r).abs() <= 1e-9 * r.abs().max(1.0))
        })
}

/// Adds the one-day-ahead pairs of one reactor's days (in day order): the decision's
/// expected next sample against the next day's sample, when the recommendation was written
/// as it stands (an edit, a rejection or a withheld write would score the model under
/// setpoints it did not assume) and the next day follows directly.
pub(crate) fn push_one_day_pairs(days: &[DayRecord], pairs: &mut OneDayPairs) {
    for w in days.windows(2) {
        let (d, next) = (&w[0], &w[1]);
        let (Some(dec), Some(written)) = (&d.decision, &d.written) else {
            continue;
        };
        if next.day != d.day + 1 || !written_as_recommended(dec, written) {
            continue;
        }
        for s in Species::ALL {
            let (Some(b), Some(y)) = (dec.next_sample.get(s.name()), next.species(s)) else {
                continue;
            };
            if let (Some(q05), Some(q50), Some(q95)) = (b.q05.first(), b.q50.first(), b.q95.first())
            {
                pairs[s.index()].push((*q05, *q50, *q95, y));
            }
        }
    }
}

/// The accuracy of every species with at least one pair, in species order.
pub(crate) fn accuracy_of(pairs: &OneDayPairs) -> Vec<SpeciesAccuracy> {
    Species::ALL
        .iter()
        .filter_map(|s| {
            let p = &pairs[s.index()];
            if p.is_empty() {
                return None;
            }
            let n = p.len() as f64;
            let mean_y = p.iter().map(|x| x.3.abs()).sum::<f64>() / n;
            let mse = p.iter().map(|x| (x.1 - x.3).powi(2)).sum::<f64>() / n;
            let inside = p.iter().filter(|x| x.0 <= x.3 && x.3 <= x.2).count() as f64;
            Some(SpeciesAccuracy {
                species: s.name().to_string(),
                n: p.len(),
                rrmse: if mean_y > 0.0 {
                    mse.sqrt() / mean_y
                } else {
                    f64::NAN
                },
                coverage90: inside / n,
            })
        })
        .collect()
}

/// The outcome of a run: every day's record and how it ended.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// Run id.
    pub run_id: String,
    /// The run's seed.
    pub seed: u64,
    /// Every culture day from day 0 (a resumed run includes the days before the restart,
    /// rebuilt from the audit log).
    pub days: Vec<DayRecord>,
    /// Whether the run reached its planned end.
    pub completed: bool,
    /// Why it ended ("completed", "cancelled", "data ended on day N").
    pub reason: String,
    /// Last culture day reached.
    pub last_day: CultureDay,
    /// The audit log.
    pub audit_path: PathBuf,
    /// Hash of the log's last record (`run_finished`): keep it to prove the log complete.
    pub audit_head: String,
    /// Wall-clock seconds from the `run_started` record to the end (downtime before a
    /// resume included).
    pub seconds: f64,
    /// The first day of this process when the run was resumed.
    pub resumed_at: Option<CultureDay>,
    /// The last forecast made (all days, all paths), for charts.
    pub last_forecast: Option<perfusio_hybrid::Forecast>,
    pub(crate) objective: Arc<dyn Objective>,
}

impl RunReport {
    /// The record of `day`.
    pub fn day(&self, day: CultureDay) -> Option<&DayRecord> {
        self.days.iter().find(|d| d.day == day)
    }

    /// Name of the objective the policy optimised.
    pub fn objective_name(&self) -> String {
        self.objective.name()
    }

    /// Decisions made.
    pub fn decisions(&self) -> usize {
        self.days.iter().filter(|d| d.decision.is_some()).count()
    }

    /// Setpoints written to the connector.
    pub fn written(&self) -> usize {
        self.days.iter().filter(|d| d.written.is_some()).count()
    }

    /// Recommendations (or holds) not written.
    pub fn withheld(&self) -> usize {
        self.days.iter().filter(|d| d.withheld.is_some()).count()
    }

    /// Alarms raised.
    pub fn alarms_raised(&self) -> usize {
        self.days.iter().map(DayRecord::alarms_raised).sum()
    }

    /// Retrainings of the model.
    pub fn retrains(&self) -> usize {
        self.days.iter().filter(|d| d.retrained.is_some()).count()
    }

    /// The model's one-day-ahead accuracy on this run's own data, per species: each
    /// decision's expected next sample (the measured value's bands under the recommended
    /// setpoints) against the next day's sample, over the days whose recommendation was
    /// written as it stands (empty when writing was off: the model then never assumed the
    /// setpoints in force). The same measure as the campaign report's.
    pub fn accuracy(&self) -> Vec<SpeciesAccuracy> {
        let mut pairs = OneDayPairs::default();
        push_one_day_pairs(&self.days, &mut pairs);
        accuracy_of(&pairs)
    }

    /// Controls applied over each completed day, `(day, controls)` in day order.
    pub fn applied(&self) -> Vec<(CultureDay, ControlArray<f64>)> {
        self.days
            .iter()
            .filter_map(|d| d.applied.map(|a| (d.day, a)))
            .collect()
    }

    /// The measured state of every day `0..=last_day`: a species' accepted measurement
    /// where present, else linear interpolation between the nearest measured days (the
    /// nearest one at the ends); `NaN` for a species never measured.
    pub fn measured_states(&self) -> Vec<SpeciesArray<f64>> {
        let n = self.last_day as usize + 1;
        let mut out = vec![[f64::NAN; N_SPECIES]; n];
        for s in Species::ALL {
            let pts: Vec<(f64, f64)> = self
                .days
                .iter()
                .filter_map(|d| d.species(s).map(|v| (f64::from(d.day), v)))
                .collect();
            for (day, row) in out.iter_mut().enumerate() {
                row[s.index()] = interpolate(&pts, day as f64);
            }
        }
        out
    }

    /// The summary of `perfusio run --summary-json`. With `true_states` (the noise-free
    /// daily states of a simulated plant, day 0 first) the objective, harvest and minimum
    /// viability come from them, otherwise from [`RunReport::measured_states`]. The
    /// objective is applied to the whole run from day 0: for `harvest`,
    /// `Σ_d ½(Titer_d + Titer_{d+1})·(perfusion_d − bleed_d) − medium_cost·Σ_d perfusion_d`.
    pub fn summary(&self, true_states: Option<&[SpeciesArray<f64>]>) -> RunSummary {
        let applied = self.applied();
        let measured;
        let states: &[SpeciesArray<f64>] = match true_states {
            Some(t) => t,
            None => {
                measured = self.measured_states();
                &measured
            }
        };
        // the schedule: applied controls of days 0..n, each day's own (a gap takes the
        // controls of the day before)
        let n = states.len().saturating_sub(1).min(applied.len());
        let mut schedule: Vec<ControlArray<f64>> = Vec::with_capacity(n);
        let mut last = applied.first().map_or(Control::defaults(), |a| a.1);
        for day in 0..n as CultureDay {
            if let Some((_, a)) = applied.iter().find(|(d, _)| *d == day) {
                last = *a;
            }
            schedule.push(last);
        }
        let finite = |v: f64| v.is_finite().then_some(v);
        let (objective_value, harvest) = if n == 0 {
            (None, None)
        } else {
            let st = &states[..=n];
            (
                finite(self.objective.value(st, &schedule)),
                finite(Harvest::default().value(st, &schedule)),
            )
        };
        let min_viability = states
            .iter()
            .map(|s| s[Species::Via.index()])
            .filter(|v| v.is_finite())
            .min_by(f64::total_cmp);
        let setpoints = applied
            .iter()
            .map(|(day, a)| {
                let mut m = Map::new();
                m.insert("day".into(), Value::from(*day));
                for c in Control::ALL {
                    m.insert(c.name().into(), Value::from(a[c.index()]));
                }
                Value::Object(m)
            })
            .collect();
        let true_states = true_states.map(|t| {
            t.iter()
                .enumerate()
                .map(|(day, s)| {
                    let mut m = Map::new();
                    m.insert("day".into(), Value::from(day as u64));
                    for sp in Species::ALL {
                        m.insert(sp.name().into(), Value::from(s[sp.index()]));
                    }
                    Value::Object(m)
                })
                .collect()
        });
        RunSummary {
            run_id: self.run_id.clone(),
            days_completed: applied.len() as u32,
            objective: self.objective.name(),
            objective_value,
            harvest_mg_per_l: harvest,
            medium_l_per_l: schedule
                .iter()
                .map(|c| c[Control::PerfusionRate.index()])
                .sum(),
            setpoints,
            min_viability,
            decisions: self.decisions() as u32,
            written: self.written() as u32,
            withheld: self.withheld() as u32,
            alarms: self.alarms_raised() as u32,
            retrains: self.retrains() as u32,
            audit_head: self.audit_head.clone(),
            seconds: self.seconds,
            true_states,
        }
    }
}

/// Linear interpolation of `(x, y)` points sorted by `x` at `x0` (the nearest end outside
/// them; NaN when there are none).
fn interpolate(pts: &[(f64, f64)], x0: f64) -> f64 {
    let Some(&(xf, yf)) = pts.first() else {
        return f64::NAN;
    };
    if x0 <= xf {
        return yf;
    }
    for w in pts.windows(2) {
        let ((xa, ya), (xb, yb)) = (w[0], w[1]);
        if x0 <= xb {
            return ya + (yb - ya) * (x0 - xa) / (xb - xa);
        }
    }
    pts.last().map_or(f64::NAN, |p| p.1)
}

/// The summary of a run, as `perfusio run --summary-json` writes it (exactly these keys;
/// `true_states` only for a simulated plant).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Run id.
    pub run_id: String,
    /// Days whose step completed (each with applied controls).
    pub days_completed: u32,
    /// The objective's name.
    pub objective: String,
    /// The objective over the whole run from day 0 (`null` when it cannot be computed).
    pub objective_value: Option<f64>,
    /// Harvest over the whole run, `Σ_d ½(Titer_d + Titer_{d+1})·(perfusion_d − bleed_d)`,
    /// mg per L of reactor.
    pub harvest_mg_per_l: Option<f64>,
    /// Medium used, `Σ_d perfusion_d`, L per L of reactor.
    pub medium_l_per_l: f64,
    /// Controls applied each day: `{"day": d, "<control>": value, …}`.
    pub setpoints: Vec<Value>,
    /// Lowest viability of the run, %.
    pub min_viability: Option<f64>,
    /// Decisions made.
    pub decisions: u32,
    /// Setpoints written.
    pub written: u32,
    /// Recommendations withheld.
    pub withheld: u32,
    /// Alarms raised.
    pub alarms: u32,
    /// Model retrainings.
    pub retrains: u32,
    /// Hash of the audit log's last record.
    pub audit_head: String,
    /// Wall-clock seconds of the run.
    pub seconds: f64,
    /// Noise-free daily states `{"day": d, "<species>": value, …}` of a simulated plant.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub true_states: Option<Vec<Value>>,
}

fn cell(v: Option<f64>, digits: usize) -> String {
    v.filter(|x| x.is_finite())
        .map_or_else(|| "-".to_string(), |x| format!("{x:.digits$}"))
}

impl fmt::Display for RunReport {
    /// A short table: one line per day (key species, the titer forecast 7 days ahead,
    /// the decision's perfusion and bleed, written or withheld, retraining), then totals.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:>4} {:>7} {:>6} {:>6} {:>7} {:>19} {:>11} {:>9} {:>7}",
            "day",
            "VCD",
            "Via",
            "Glc",
            "Titer",
            "Titer +7 d (80 %)",
            "perf/bleed",
            "setpoint",
            "retrain"
        )?;
        for d in &self.days {
            let band = d
                .forecast_band(Species::Titer, 7)
                .map_or_else(|| "-".to_string(), |(lo, _, hi)| format!("{lo:.0}–{hi:.0}"));
            let decided = d.decision.as_ref().map_or_else(
                || "-".to_string(),
                |x| {
                    let g = |c: Control| x.controls.get(c.name()).copied().unwrap_or(f64::NAN);
                    format!(
                        "{:.2}/{:.2}",
                        g(Control::PerfusionRate),
                        g(Control::BleedRate)
                    )
                },
            );
            let outcome = if d.written.is_some() {
                "written"
            } else if d.withheld.is_some() {
                "withheld"
            } else if d.sample.is_some() {
                "read"
            } else {
                "-"
            };
            let retrain = if d.retrained.is_some() { "yes" } else { "" };
            writeln!(
                f,
                "{:>4} {:>7} {:>6} {:>6} {:>7} {:>19} {:>11} {:>9} {:>7}",
                d.day,
                cell(d.species(Species::VCD), 2),
                cell(d.species(Species::Via), 1),
                cell(d.species(Species::Glc), 2),
                cell(d.species(Species::Titer), 0),
                band,
                decided,
                outcome,
                retrain
            )?;
        }
        writeln!(
            f,
            "run {} ({}): {} on day {}; {} decisions, {} written, {} withheld, {} retrains, \
             {} alarms; seed {}; {:.2} s",
            self.run_id,
            self.objective.name(),
            self.reason,
            self.last_day,
            self.decisions(),
            self.written(),
            self.withheld(),
            self.retrains(),
            self.alarms_raised(),
            self.seed,
            self.seconds
        )?;
        let accuracy = self.accuracy();
        if accuracy.is_empty() {
            writeln!(
                f,
                "one day ahead: no pairs (no recommendation was written as it stands)"
            )?;
        } else {
            write!(
                f,
                "one day ahead (expected next sample vs the next sample: rRMSE, 90 % coverage):"
            )?;
            for a in &accuracy {
                write!(f, " {} {:.3}/{:.2}", a.species, a.rrmse, a.coverage90)?;
            }
            writeln!(
                f,
                " ({} days)",
                accuracy.iter().map(|a| a.n).max().unwrap_or(0)
            )?;
        }
        write!(
            f,
            "audit log {} (head {})",
            self.audit_path.display(),
            self.audit_head
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation_fills_gaps_and_ends() {
        let pts = [(1.0, 10.0), (3.0, 30.0)];
        assert!((interpolate(&pts, 0.0) - 10.0).abs() < 1e-12);
        assert!((interpolate(&pts, 2.0) - 20.0).abs() < 1e-12);
        assert!((interpolate(&pts, 5.0) - 30.0).abs() < 1e-12);
        assert!(interpolate(&[], 1.0).is_nan());
    }
}
