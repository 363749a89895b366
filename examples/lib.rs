//! Shared pieces of the perfusio-rs examples: the mechanistic prior mean of the GP and the
//! builder of the GP's indexed multi-task training set (one row per species per one-day
//! transition, `[species(9) at t, controls(6) over t→t+1, day t, task id]`).

use std::collections::HashMap;
use std::sync::Mutex;

use perfusio_core::{ControlArray, N_CONTROLS, N_SPECIES, SpeciesArray};
use perfusio_gp::PriorMean;
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

/// The GP's prior mean: the mechanistic model's one-day prediction of each species, so the
/// GP learns only what the mechanism gets wrong. One integration serves all nine tasks of
/// a base row (cached by the row's bits).
#[derive(Debug)]
pub struct MechanisticMean {
    model: PlantModel,
    cache: Mutex<HashMap<[u64; N_BASE], SpeciesArray<f64>>>,
}

impl MechanisticMean {
    /// A prior mean over `model`.
    pub fn new(model: PlantModel) -> Self {
        Self {
            model,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The mechanistic one-day prediction from a base row. If the model cannot integrate
    /// (it never happens inside the design space), the state itself is the prediction.
    pub fn predict(&self, x: &[f64]) -> SpeciesArray<f64> {
        let mut key = [0u64; N_BASE];
        for (k, v) in key.iter_mut().zip(x) {
            *k = v.to_bits();
        }
        if let Ok(cache) = self.cache.lock()
            && let Some(hit) = cache.get(&key)
        {
            return *hit;
        }
        let mut state = [0.0; N_SPECIES];
        let mut controls = [0.0; N_CONTROLS];
        state.copy_from_slice(&x[..N_SPECIES]);
        controls.copy_from_slice(&x[N_SPECIES..N_SPECIES + N_CONTROLS]);
        let next = self.model.step(&state, &controls, 24.0).unwrap_or(state);
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(key, next);
        }
        next
    }
}

impl PriorMean for MechanisticMean {
    fn mean(&self, x: &[f64], task: usize) -> f64 {
        self.predict(x).get(task).copied().unwrap_or(0.0)
    }

    fn label(&self) -> String {
        "mechanistic one-day step".to_owned()
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
