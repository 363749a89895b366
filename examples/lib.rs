//! Shared pieces of the perfusio-rs examples: the mechanistic prior mean of the GP, the
//! GP's input bounds, and the builder of the GP's indexed multi-task training set (one row
//! per species per one-day transition,
//! `[species(9) at t, controls(6) over t→t+1, day t, task id]`).

use perfusio_core::{Control, ControlArray, DesignSpace, N_CONTROLS, N_SPECIES, SpeciesArray};
use perfusio_gp::{MeanError, PriorMean};
use perfusio_mechanistic::PlantModel;

/// Base input columns of a transition: 9 species, 6 controls, culture day.
pub const N_BASE: usize = N_SPECIES + N_CONTROLS + 1;
/// Columns of a training row: the base inputs and the task (species) id.
pub const N_COLS: usize = N_BASE + 1;

/// Builds the base input row of a transition from day `day`.
pub fn base_row(
    state: &SpeciesArray<f64>,
    controls: &ControlArray<f64>,
    day: u32,
) -> [f64; N_BASE] {
    let mut row = [0.0; N_BASE];
    row[..N_SPECIES].copy_from_slice(state);
    row[N_SPECIES..N_SPECIES + N_CONTROLS].copy_from_slice(controls);
    row[N_BASE - 1] = f64::from(day);
    row
}

/// The GP's fixed unit-cube map: the design space's plausible range of each species, the
/// design range of each control (its hard limits when the range is a single point), and
/// days `0..=culture_days`.
pub fn input_bounds(ds: &DesignSpace, culture_days: u32) -> Vec<(f64, f64)> {
    let mut b: Vec<(f64, f64)> = ds
        .species_bounds()
        .iter()
        .map(|s| (s.lower, s.upper))
        .collect();
    for c in Control::ALL {
        let r = ds.control(c).design_range();
        let (lo, hi) = if r.upper > r.lower {
            (r.lower, r.upper)
        } else {
            (
                r.lower - 0.5 * r.lower.abs().max(1.0),
                r.upper + 0.5 * r.upper.abs().max(1.0),
            )
        };
        b.push((lo, hi));
    }
    b.push((0.0, f64::from(culture_days.max(1))));
    b
}

/// The GP's prior mean: the mechanistic model's one-day prediction of every species from a
/// base row, so the GP learns only what the mechanism gets wrong. The GP calls it once per
/// distinct base row and integration failures are reported, not hidden.
#[derive(Debug)]
pub struct MechanisticMean {
    model: PlantModel,
    fingerprint: String,
}

impl MechanisticMean {
    /// A prior mean over `model`.
    pub fn new(model: PlantModel) -> Self {
        let params = serde_json::to_string(model.params()).unwrap_or_default();
        let fingerprint = format!(
            "mechanistic one-day step (24 h); ode {:?}; params {params}",
            model.options()
        );
        Self { model, fingerprint }
    }

    /// The mechanistic one-day prediction from a base row.
    pub fn predict(&self, x: &[f64]) -> Result<SpeciesArray<f64>, MeanError> {
        if x.len() < N_SPECIES + N_CONTROLS {
            return Err(MeanError(format!(
                "a base row has {N_BASE} values, got {}",
                x.len()
            )));
        }
        let mut state = [0.0; N_SPECIES];
        let mut controls = [0.0; N_CONTROLS];
        state.copy_from_slice(&x[..N_SPECIES]);
        controls.copy_from_slice(&x[N_SPECIES..N_SPECIES + N_CONTROLS]);
        self.model
            .step(&state, &controls, 24.0)
            .map_err(|e| MeanError(format!("the mechanistic one-day step failed: {e}")))
    }
}

impl PriorMean for MechanisticMean {
    fn n_tasks(&self) -> usize {
        N_SPECIES
    }

    fn eval(&self, x: &[f64], out: &mut [f64]) -> Result<(), MeanError> {
        out.copy_from_slice(&self.predict(x)?);
        Ok(())
    }

    fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }
}

/// The indexed multi-task training set of one-day transitions.
#[derive(Debug, Clone, Default)]
pub struct TrainingSet {
    /// Row-major `(rows, N_COLS)` inputs.
    pub x: Vec<f64>,
    /// Targets: the value of species `task` on day `t + 1`.
    pub y: Vec<f64>,
}

impl TrainingSet {
    /// Adds one row per species measured on day `t + 1`.
    pub fn push_transition(&mut self, input: &[f64; N_BASE], next: &SpeciesArray<Option<f64>>) {
        for (task, value) in next.iter().enumerate() {
            if let Some(v) = value {
                self.x.extend_from_slice(input);
                self.x.push(task as f64);
                self.y.push(*v);
            }
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// `true` when there is no row.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// The nine query rows (one per task) for a base input.
    pub fn query(input: &[f64; N_BASE]) -> Vec<f64> {
        let mut x = Vec::with_capacity(N_SPECIES * N_COLS);
        for task in 0..N_SPECIES {
            x.extend_from_slice(input);
            x.push(task as f64);
        }
        x
    }
}
