//! The training data: runs of daily measurements and the controls that were **applied**,
//! and the indexed multi-task layout the GP trains on.
//!
//! Rules (each one tested):
//! * only consecutive-day pairs `(t, t+1)` make a transition;
//! * a row whose target (species `k` on day `t+1`) is missing is dropped, never imputed;
//! * an input species that was not measured on day `t` is filled from the state estimate of
//!   day `t` (the filter's), and the row says so ([`TrainingRows::filled`]); 0 is never used;
//! * recording the same (run, day) twice is a no-op; recording it with different values is an
//!   error ([`HybridError::Conflict`]);
//! * only controls that were applied enter the inputs: the API takes them as `applied`, and a
//!   day without applied controls makes no transition.

use std::collections::BTreeMap;

use perfusio_core::{ControlArray, N_CONTROLS, N_SPECIES, SpeciesArray, Trajectory};
use serde::{Deserialize, Serialize};

use crate::error::{HybridError, Result};

/// Base input columns of a transition: 9 species at `t`, 6 controls over `t → t+1`, day `t`.
pub const N_BASE: usize = N_SPECIES + N_CONTROLS + 1;
/// Columns of a training row: the base inputs and the task (species) id.
pub const N_COLS: usize = N_BASE + 1;
/// Column of the culture day in a base row.
pub const DAY_COL: usize = N_SPECIES + N_CONTROLS;

/// What is known of one culture day of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DayRecord {
    /// Accepted (validated) measurements of the day; `None` = not measured or rejected.
    pub measured: SpeciesArray<Option<f64>>,
    /// State estimate of the day (original units), the filter's posterior mean; used for
    /// every input species that was not measured (and for all of them when the model trains
    /// on filtered inputs).
    pub estimate: Option<SpeciesArray<f64>>,
    /// Controls applied over `day → day + 1`, once known.
    pub applied: Option<ControlArray<f64>>,
    /// What was added to the culture after the day's sample and before `day → day + 1`
    /// (e.g. a glucose bolus), per species in original units: the day's transition starts
    /// from the sampled state plus this. `None` = nothing added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added: Option<SpeciesArray<f64>>,
}

/// One run: an id, an optional cell-line label and its days.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Run identifier (unique in a dataset).
    pub id: String,
    /// Cell-line label, if known.
    pub line: Option<String>,
    /// Days by culture day.
    pub days: BTreeMap<u32, DayRecord>,
}

/// Where the species inputs of a training row come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputSource {
    /// The measured value where present, the state estimate where not.
    Measured,
    /// The state estimate for every species (the filter's posterior mean, which is also what
    /// a forecast starts from, so training and prediction see inputs of the same quality).
    #[default]
    Filtered,
}

/// Rows in the indexed multi-task layout of the architecture:
/// `x` is `(n, N_COLS)` row-major, `[species(9) at t, controls(6) over t→t+1, day t, task]`,
/// `y[i]` is species `task` on day `t + 1`, all in original units.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrainingRows {
    /// Inputs, row-major with [`N_COLS`] columns.
    pub x: Vec<f64>,
    /// Targets.
    pub y: Vec<f64>,
    /// Per row: `(run index, day t, task)`.
    pub origin: Vec<(usize, u32, usize)>,
    /// Per row: which input species were filled from the state estimate (not measured).
    pub filled: Vec<[bool; N_SPECIES]>,
    /// Number of distinct transitions (base inputs).
    pub transitions: usize,
}

impl TrainingRows {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// `true` when there is no row.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
}

/// A transition's base input before it is split into rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// Run index in the dataset.
    pub run: usize,
    /// Day `t`.
    pub day: u32,
    /// Input state (original units).
    pub state: SpeciesArray<f64>,
    /// Which input species were filled from the estimate.
    pub filled: [bool; N_SPECIES],
    /// Controls applied over `t → t+1`.
    pub controls: ControlArray<f64>,
    /// Measured state on `t + 1` (targets; `None` rows are dropped).
    pub next: SpeciesArray<Option<f64>>,
}

/// Runs of daily data, deduplicated by (run, day).
///
/// ```
/// use perfusio_core::Control;
/// use perfusio_hybrid::{Dataset, InputSource};
/// let mut d = Dataset::default();
/// let s0 = [Some(1.0), Some(99.0), Some(5.0), Some(4.0), Some(0.5), Some(2.0), Some(0.5), Some(0.0), Some(0.0)];
/// let mut s1 = s0; s1[0] = Some(1.8);
/// assert!(d.record_day("run-1", None, 0, s0).unwrap());
/// assert!(d.record_applied("run-1", 0, Control::defaults()).unwrap());
/// assert!(d.record_day("run-1", None, 1, s1).unwrap());
/// assert!(!d.record_day("run-1", None, 1, s1).unwrap()); // same (run, day): no-op
/// let rows = d.rows(InputSource::Measured).unwrap();
/// assert_eq!((rows.transitions, rows.len()), (1, 9));
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Dataset {
    runs: Vec<RunRecord>,
}

fn check_values(what: &str, values: &[Option<f64>]) -> Result<()> {
    if let Some(v) = values.iter().flatten().find(|v| !v.is_finite()) {
        return Err(HybridError::Data(format!(
            "{what}: non-finite value {v}; validate samples before recording them"
        )));
    }
    Ok(())
}

fn same_bits(a: &[Option<f64>], b: &[Option<f64>]) -> bool {
    a.iter()
        .zip(b)
        .all(|(x, y)| x.map(f64::to_bits) == y.map(f64::to_bits))
}

impl Dataset {
    /// The runs, in the order they were first seen.
    pub fn runs(&self) -> &[RunRecord] {
        &self.runs
    }

    /// The runs whose cell-line label is `line` (`None`: the unlabelled runs), estimates
    /// included, in their order here.
    ///
    /// ```
    /// use perfusio_hybrid::Dataset;
    /// let mut d = Dataset::default();
    /// let s = [Some(1.0); 9];
    /// d.record_day("a", Some("X"), 0, s).unwrap();
    /// d.record_day("b", Some("Y"), 0, s).unwrap();
    /// d.record_day("c", None, 0, s).unwrap();
    /// assert_eq!(d.of_line(Some("Y")).runs().len(), 1);
    /// assert_eq!(d.of_line(None).runs()[0].id, "c");
    /// ```
    pub fn of_line(&self, line: Option<&str>) -> Self {
        Self {
            runs: self
                .runs
                .iter()
                .filter(|r| r.line.as_deref() == line)
                .cloned()
                .collect(),
        }
    }

    /// Index of a run by id.
    pub fn run_index(&self, id: &str) -> Option<usize> {
        self.runs.iter().position(|r| r.id == id)
    }

    fn run_mut(&mut self, id: &str, line: Option<&str>) -> Result<&mut RunRecord> {
        let i = match self.run_index(id) {
            Some(i) => {
                if let (Some(have), Some(new)) = (&self.runs[i].line, line)
                    && have != new
                {
                    return Err(HybridError::Data(format!(
                        "run {id} is recorded as cell line {have}, not {new}"
                    )));
                }
                if self.runs[i].line.is_none() {
                    self.runs[i].line = line.map(str::to_string);
                }
                i
            }
            None => {
                if id.trim().is_empty() {
                    return Err(HybridError::Data("a run needs a non-empty id".into()));
                }
                self.runs.push(RunRecord {
                    id: id.to_string(),
                    line: line.map(str::to_string),
                    days: BTreeMap::new(),
                });
                self.runs.len() - 1
            }
        };
        Ok(&mut self.runs[i])
    }

    /// Records the accepted measurements of `day`. Returns `false` (and changes nothing)
    /// when the same values are already recorded for that (run, day).
    pub fn record_day(
        &mut self,
        run: &str,
        line: Option<&str>,
        day: u32,
        measured: SpeciesArray<Option<f64>>,
    ) -> Result<bool> {
        check_values(&format!("run {run}, day {day}"), &measured)?;
        let r = self.run_mut(run, line)?;
        match r.days.get_mut(&day) {
            Some(d) if same_bits(&d.measured, &measured) => Ok(false),
            Some(_) => Err(HybridError::Conflict {
                run: run.to_string(),
                day,
                what: "measurements",
            }),
            None => {
                r.days.insert(
                    day,
                    DayRecord {
                        measured,
                        estimate: None,
                        applied: None,
                        added: None,
                    },
                );
                Ok(true)
            }
        }
    }

    /// Records the controls **applied** over `day → day + 1` (those the reactor confirmed,
    /// or the ones in force when nothing was written). Recommendations that were not applied
    /// must never be recorded here. Returns `false` when already recorded identically.
    pub fn record_applied(
        &mut self,
        run: &str,
        day: u32,
        applied: ControlArray<f64>,
    ) -> Result<bool> {
        if applied.iter().any(|v| !v.is_finite()) {
            return Err(HybridError::Data(format!(
                "run {run}, day {day}: applied controls must be finite"
            )));
        }
        let r = self.run_mut(run, None)?;
        let d = r.days.get_mut(&day).ok_or_else(|| {
            HybridError::Data(format!(
                "run {run}, day {day}: record the day's sample before its applied controls"
            ))
        })?;
        match d.applied {
            Some(a) if a.map(f64::to_bits) == applied.map(f64::to_bits) => Ok(false),
            Some(_) => Err(HybridError::Conflict {
                run: run.to_string(),
                day,
                what: "applied controls",
            }),
            None => {
                d.applied = Some(applied);
                Ok(true)
            }
        }
    }

    /// Stores the state estimate of a recorded day (overwrites: an estimate is derived data).
    pub fn set_estimate(&mut self, run: &str, day: u32, estimate: SpeciesArray<f64>) -> Result<()> {
        if estimate.iter().any(|v| !v.is_finite()) {
            return Err(HybridError::Data(format!(
                "run {run}, day {day}: the state estimate must be finite"
            )));
        }
        let i = self
            .run_index(run)
            .ok_or_else(|| HybridError::Data(format!("unknown run {run}")))?;
        let d = self.runs[i]
            .days
            .get_mut(&day)
            .ok_or_else(|| HybridError::Data(format!("run {run}: day {day} is not recorded")))?;
        d.estimate = Some(estimate);
        Ok(())
    }

    /// Records an addition to the culture of a recorded day, after its sample (a glucose
    /// bolus, a media exchange expressed as the change of each species): the day's
    /// transition starts from the sampled (or estimated) state plus `delta`. Additions of
    /// the same day accumulate. A non-finite change, or a day that is not recorded, is an
    /// error.
    pub fn record_addition(&mut self, run: &str, day: u32, delta: SpeciesArray<f64>) -> Result<()> {
        if delta.iter().any(|v| !v.is_finite()) {
            return Err(HybridError::Data(format!(
                "run {run}, day {day}: an addition must be finite"
            )));
        }
        let i = self
            .run_index(run)
            .ok_or_else(|| HybridError::Data(format!("unknown run {run}")))?;
        let d = self.runs[i].days.get_mut(&day).ok_or_else(|| {
            HybridError::Data(format!(
                "run {run}: day {day} is not recorded; record its sample before an addition"
            ))
        })?;
        let mut total = d.added.unwrap_or([0.0; N_SPECIES]);
        for (t, v) in total.iter_mut().zip(delta) {
            *t += v;
        }
        d.added = Some(total);
        Ok(())
    }

    /// Removes every stored state estimate (they are derived data: the offline fit
    /// re-estimates the states once the mechanism is calibrated).
    pub(crate) fn clear_estimates(&mut self) {
        for r in &mut self.runs {
            for d in r.days.values_mut() {
                d.estimate = None;
            }
        }
    }

    /// Adds a whole trajectory (each row's controls are those applied that day). Days
    /// already recorded identically are skipped. Returns the number of new days.
    pub fn add_trajectory(&mut self, t: &Trajectory, line: Option<&str>) -> Result<usize> {
        let line = line.or(t.clone.as_deref());
        let mut added = 0;
        for row in t.rows() {
            if self.record_day(&t.run_id, line, row.day, row.species)? {
                added += 1;
            }
            self.record_applied(&t.run_id, row.day, row.controls)?;
        }
        Ok(added)
    }

    /// Number of recorded days over all runs.
    pub fn n_days(&self) -> usize {
        self.runs.iter().map(|r| r.days.len()).sum()
    }

    /// The one-day transitions that can be trained on: day `t` and `t + 1` recorded, the
    /// controls applied on `t` known, and an input for every species (measured or
    /// estimated, per `source`). A transition whose input lacks an estimate where one is
    /// needed is an error (estimate the states first).
    pub fn transitions(&self, source: InputSource) -> Result<Vec<Transition>> {
        let mut out = Vec::new();
        for (ri, run) in self.runs.iter().enumerate() {
            for (&day, rec) in &run.days {
                let (Some(next), Some(controls)) = (run.days.get(&(day + 1)), rec.applied) else {
                    continue;
                };
                let mut state = [0.0; N_SPECIES];
                let mut filled = [false; N_SPECIES];
                for k in 0..N_SPECIES {
                    let use_measured = source == InputSource::Measured;
                    state[k] = match (rec.measured[k], rec.estimate) {
                        (Some(m), _) if use_measured => m,
                        (m, Some(e)) => {
                            filled[k] = m.is_none();
                            e[k]
                        }
                        (_, None) => {
                            return Err(HybridError::Data(format!(
                                "run {}, day {day}: no state estimate to fill unmeasured \
                                 inputs; estimate the states before building training rows",
                                run.id
                            )));
                        }
                    };
                }
                if let Some(added) = rec.added {
                    for (x, a) in state.iter_mut().zip(added) {
                        *x = (*x + a).max(0.0);
                    }
                }
                out.push(Transition {
                    run: ri,
                    day,
                    state,
                    filled,
                    controls,
                    next: next.measured,
                });
            }
        }
        Ok(out)
    }

    /// The training rows of every transition (see [`TrainingRows`]); rows whose target is
    /// missing are dropped.
    pub fn rows(&self, source: InputSource) -> Result<TrainingRows> {
        let transitions = self.transitions(source)?;
        let mut rows = TrainingRows {
            transitions: transitions.len(),
            ..TrainingRows::default()
        };
        for tr in &transitions {
            let base = base_row(&tr.state, &tr.controls, tr.day);
            for (task, target) in tr.next.iter().enumerate() {
                if let Some(v) = target {
                    rows.x.extend_from_slice(&base);
                    rows.x.push(task as f64);
                    rows.y.push(*v);
                    rows.origin.push((tr.run, tr.day, task));
                    rows.filled.push(tr.filled);
                }
            }
        }
        Ok(rows)
    }
}

/// The base input row of a transition from day `day` (original units).
pub fn base_row(
    state: &SpeciesArray<f64>,
    controls: &ControlArray<f64>,
    day: u32,
) -> [f64; N_BASE] {
    let mut row = [0.0; N_BASE];
    row[..N_SPECIES].copy_from_slice(state);
    row[N_SPECIES..DAY_COL].copy_from_slice(controls);
    row[DAY_COL] = f64::from(day);
    row
}

#[cfg(test)]
mod tests {
    use super::*;
    use perfusio_core::Control;

    fn full(v: f64) -> SpeciesArray<Option<f64>> {
        [Some(v); N_SPECIES]
    }

    #[test]
    fn consecutive_pairs_only_and_missing_targets_dropped() {
        let mut d = Dataset::default();
        for day in [0, 1, 2, 4, 5] {
            let mut m = full(f64::from(day) + 1.0);
            if day == 2 {
                m[3] = None; // target of 1→2 for task 3 is missing
            }
            d.record_day("r", None, day, m).unwrap();
            d.set_estimate("r", day, [f64::from(day) + 1.0; N_SPECIES])
                .unwrap();
            if day != 5 {
                d.record_applied("r", day, Control::defaults()).unwrap();
            }
        }
        let rows = d.rows(InputSource::Measured).unwrap();
        // transitions 0→1, 1→2, 4→5 (2→4 is not consecutive)
        assert_eq!(rows.transitions, 3);
        assert_eq!(rows.len(), 3 * 9 - 1);
        let days: Vec<u32> = rows.origin.iter().map(|o| o.1).collect();
        assert!(!days.contains(&2));
        assert!(
            rows.origin
                .iter()
                .all(|&(_, day, task)| !(day == 1 && task == 3))
        );
        // every target is the next day's measurement, never 0 or imputed
        for (i, &(_, day, _)) in rows.origin.iter().enumerate() {
            assert!((rows.y[i] - (f64::from(day) + 2.0)).abs() < 1e-12);
        }
    }

    #[test]
    fn an_addition_moves_the_transitions_input_not_its_target() {
        let mut d = Dataset::default();
        for day in 0..3 {
            d.record_day("r", None, day, full(f64::from(day) + 1.0))
                .unwrap();
            d.set_estimate("r", day, [f64::from(day) + 1.0; N_SPECIES])
                .unwrap();
            d.record_applied("r", day, Control::defaults()).unwrap();
        }
        let mut bolus = [0.0; N_SPECIES];
        bolus[2] = 0.9;
        d.record_addition("r", 1, bolus).unwrap();
        d.record_addition("r", 1, bolus).unwrap();
        assert!(d.record_addition("r", 7, bolus).is_err());
        bolus[0] = f64::NAN;
        assert!(d.record_addition("r", 1, bolus).is_err());
        for source in [InputSource::Measured, InputSource::Filtered] {
            let t = d.transitions(source).unwrap();
            let t1 = t.iter().find(|t| t.day == 1).unwrap();
            assert!((t1.state[2] - (2.0 + 1.8)).abs() < 1e-12);
            assert!((t1.state[0] - 2.0).abs() < 1e-12);
            assert_eq!(t1.next[2], Some(3.0));
            let t0 = t.iter().find(|t| t.day == 0).unwrap();
            assert!((t0.state[2] - 1.0).abs() < 1e-12);
        }
        // a dataset without additions serialises as before (no `added` member)
        let mut plain = Dataset::default();
        plain.record_day("r", None, 0, full(1.0)).unwrap();
        assert!(!serde_json::to_string(&plain).unwrap().contains("added"));
    }

    #[test]
    fn missing_inputs_come_from_the_estimate_and_are_flagged() {
        let mut d = Dataset::default();
        let mut m0 = full(1.0);
        m0[5] = None;
        d.record_day("r", None, 0, m0).unwrap();
        d.record_day("r", None, 1, full(2.0)).unwrap();
        d.record_applied("r", 0, Control::defaults()).unwrap();
        // without an estimate the missing input cannot be filled: error, not 0
        assert!(d.rows(InputSource::Measured).is_err());
        d.set_estimate("r", 0, [0.9; N_SPECIES]).unwrap();
        let rows = d.rows(InputSource::Measured).unwrap();
        assert_eq!(rows.len(), 9);
        assert!((rows.x[5] - 0.9).abs() < 1e-12);
        assert!((rows.x[4] - 1.0).abs() < 1e-12); // measured inputs kept
        assert!(rows.filled.iter().all(|f| f[5] && !f[4]));
        let filt = d.rows(InputSource::Filtered).unwrap();
        assert!((filt.x[4] - 0.9).abs() < 1e-12);
    }

    #[test]
    fn duplicates_are_no_ops_and_conflicts_errors() {
        let mut d = Dataset::default();
        assert!(d.record_day("r", Some("A"), 0, full(1.0)).unwrap());
        assert!(!d.record_day("r", Some("A"), 0, full(1.0)).unwrap());
        assert!(matches!(
            d.record_day("r", None, 0, full(1.5)),
            Err(HybridError::Conflict { day: 0, .. })
        ));
        assert!(d.record_applied("r", 0, Control::defaults()).unwrap());
        assert!(!d.record_applied("r", 0, Control::defaults()).unwrap());
        let mut other = Control::defaults();
        other[0] = 1.5;
        assert!(d.record_applied("r", 0, other).is_err());
        assert!(d.record_day("r", Some("B"), 1, full(1.0)).is_err());
        assert!(
            d.record_day("r", None, 1, [Some(f64::NAN); N_SPECIES])
                .is_err()
        );
        assert_eq!(d.n_days(), 1);
    }

    #[test]
    fn unapplied_controls_never_enter_x() {
        let mut d = Dataset::default();
        d.record_day("r", None, 0, full(1.0)).unwrap();
        d.record_day("r", None, 1, full(2.0)).unwrap();
        d.record_day("r", None, 2, full(3.0)).unwrap();
        // only day 0's controls were applied (day 1's recommendation was withheld)
        let mut applied = Control::defaults();
        applied[Control::Temperature.index()] = 36.5;
        d.record_applied("r", 0, applied).unwrap();
        let rows = d.rows(InputSource::Measured).unwrap();
        assert_eq!(rows.transitions, 1);
        for r in rows.x.chunks_exact(N_COLS) {
            assert!((r[N_SPECIES + Control::Temperature.index()] - 36.5).abs() < 1e-12);
        }
    }
}
