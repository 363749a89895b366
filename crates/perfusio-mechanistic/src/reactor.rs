//! The virtual ambr250 reactor: a stateful, noisy, day-by-day simulation of the plant.

use perfusio_core::{
    Control, ControlArray, DEFAULT_AMBR250_DESIGN_SPACE, DesignSpace, MAX_DURATION_DAYS, Sample,
    Species, SpeciesArray,
};

use crate::error::{MechError, Result};
use crate::model::{HOURS_PER_DAY, PlantModel, check_state};
use crate::noise::NoiseModel;
use crate::params::{CloneKind, KineticParams};

/// Everything a [`VirtualReactor`] starts from.
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualReactorConfig {
    /// Cell line.
    pub clone: CloneKind,
    /// Day-0 state.
    pub initial_state: SpeciesArray<f64>,
    /// Setpoints applied from day 0.
    pub setpoints: ControlArray<f64>,
    /// Measurement noise.
    pub noise: NoiseModel,
    /// Seed of the noise stream.
    pub seed: u64,
    /// Design space whose hard limits setpoints must respect.
    pub design_space: DesignSpace,
    /// Reactor identifier reported in samples.
    pub reactor_id: String,
    /// True kinetics when they differ from the preset of `clone` (a plant file's
    /// parameters); `None` runs the preset.
    pub params: Option<KineticParams>,
}

impl Default for VirtualReactorConfig {
    /// Clone X, the day-0 state of `docs/plant-model.md`, default controls, default noise,
    /// seed 42, the ambr250 design space, id `"R01"`.
    fn default() -> Self {
        Self {
            clone: CloneKind::CloneX,
            initial_state: crate::model::initial_state(),
            setpoints: Control::defaults(),
            noise: NoiseModel::default(),
            seed: 42,
            design_space: DEFAULT_AMBR250_DESIGN_SPACE,
            reactor_id: "R01".to_string(),
            params: None,
        }
    }
}

/// A simulated ambr250 perfusion reactor that advances one culture day at a time.
///
/// Controls are piecewise constant per day: setpoints written on day `t` act over
/// `t → t+1` and later, and never rewrite the simulated past. Samples are noisy and may
/// have missing values, deterministic for `(seed, day)`.
///
/// ```
/// use perfusio_core::{Control, Species};
/// use perfusio_mechanistic::{VirtualReactor, VirtualReactorConfig};
/// let mut r = VirtualReactor::new(VirtualReactorConfig::default()).unwrap();
/// r.advance_to(3).unwrap();
/// let mut sp = r.setpoints();
/// sp[Control::PerfusionRate.index()] = 1.5;
/// r.set_setpoints(&sp).unwrap();
/// r.advance_day().unwrap();
/// assert_eq!(r.day(), 4);
/// let s = r.sample(2).unwrap();
/// assert_eq!(s, r.sample(2).unwrap());                     // same day, same values
/// assert_eq!(s.control(Control::PerfusionRate), Some(1.0)); // day 2 ran at the old rate
/// assert!(r.clean_state()[Species::VCD.index()] > 1.0);
/// sp[Control::Agitation.index()] = 1200.0;                  // above the hard limit
/// assert!(r.set_setpoints(&sp).is_err());
/// ```
#[derive(Debug, Clone)]
pub struct VirtualReactor {
    config: VirtualReactorConfig,
    model: PlantModel,
    setpoints: ControlArray<f64>,
    /// Clean states of days `0..=day`.
    history: Vec<SpeciesArray<f64>>,
    /// Controls applied over `d → d+1` for `d < day`.
    applied: Vec<ControlArray<f64>>,
}

impl VirtualReactor {
    /// A reactor on day 0. Validates the initial state (finite, non-negative, viability
    /// ≤ 100 %), the noise model and the setpoints (design-space hard limits).
    pub fn new(config: VirtualReactorConfig) -> Result<Self> {
        check_state(&config.initial_state)?;
        for s in Species::ALL {
            let v = config.initial_state[s.index()];
            if v < 0.0 || (s == Species::Via && v > 100.0) {
                return Err(MechError::InvalidState {
                    species: s,
                    value: v,
                    reason: "initial values must be >= 0 (viability at most 100 %)",
                });
            }
        }
        config.noise.check()?;
        config
            .design_space
            .validate(&config.setpoints)
            .map_err(MechError::from_core_validation)?;
        let params = match config.params {
            Some(p) => {
                p.check()?;
                p
            }
            None => KineticParams::for_clone(config.clone),
        };
        let model = PlantModel::new(params);
        Ok(Self {
            setpoints: config.setpoints,
            history: vec![config.initial_state],
            applied: Vec::new(),
            model,
            config,
        })
    }

    /// A reactor whose true kinetics are `params` instead of the preset of `config.clone`:
    /// a virtual cell line that differs from the textbook model, for testing how a hybrid
    /// model learns the mismatch.
    ///
    /// ```
    /// # use perfusio_mechanistic::{KineticParams, VirtualReactor, VirtualReactorConfig};
    /// let mut fast = KineticParams::clone_x();
    /// fast.mu_max *= 1.2;
    /// let mut a = VirtualReactor::new(VirtualReactorConfig::default()).unwrap();
    /// let mut b = VirtualReactor::with_params(VirtualReactorConfig::default(), fast).unwrap();
    /// a.advance_to(3).unwrap();
    /// b.advance_to(3).unwrap();
    /// assert!(b.clean_state()[0] > a.clean_state()[0]);
    /// ```
    pub fn with_params(config: VirtualReactorConfig, params: KineticParams) -> Result<Self> {
        Self::new(VirtualReactorConfig {
            params: Some(params),
            ..config
        })
    }

    /// `n` reactors from one configuration with distinct seeds (`base.seed + i`) and ids
    /// `R01`, `R02`, … (zero-padded to at least two digits).
    pub fn ensemble(n: usize, base: VirtualReactorConfig) -> Result<Vec<VirtualReactor>> {
        let width = n.to_string().len().max(2);
        (0..n)
            .map(|i| {
                let mut c = base.clone();
                c.seed = base.seed.wrapping_add(i as u64);
                c.reactor_id = format!("R{:0width$}", i + 1);
                VirtualReactor::new(c)
            })
            .collect()
    }

    /// Current culture day (starts at 0).
    pub fn day(&self) -> u32 {
        // history has day + 1 entries and at most MAX_DURATION_DAYS + 1
        u32::try_from(self.history.len() - 1).unwrap_or(u32::MAX)
    }

    /// The configuration the reactor was built from.
    pub fn config(&self) -> &VirtualReactorConfig {
        &self.config
    }

    /// The plant model it runs.
    pub fn model(&self) -> &PlantModel {
        &self.model
    }

    /// Integrates the current day to the next with the current setpoints.
    pub fn advance_day(&mut self) -> Result<()> {
        if self.day() >= MAX_DURATION_DAYS {
            return Err(MechError::arg(
                "day",
                self.day() + 1,
                format!("a run lasts at most {MAX_DURATION_DAYS} days"),
            ));
        }
        let y = *self.history.last().unwrap_or(&self.config.initial_state);
        let next = self.model.step(&y, &self.setpoints, HOURS_PER_DAY)?;
        self.history.push(next);
        self.applied.push(self.setpoints);
        Ok(())
    }

    /// Advances day by day until `day` (no-op if the reactor is already there or later: the
    /// past is never re-simulated).
    pub fn advance_to(&mut self, day: u32) -> Result<()> {
        if day > MAX_DURATION_DAYS {
            return Err(MechError::arg(
                "day",
                day,
                format!("a run lasts at most {MAX_DURATION_DAYS} days"),
            ));
        }
        while self.day() < day {
            self.advance_day()?;
        }
        Ok(())
    }

    /// Noisy sample of an already simulated day, with VCV and Diam in `Sample::derived`, the
    /// controls applied over that day in `Sample::controls` (for the current day: the
    /// current setpoints) and the reactor id. Deterministic for `(seed, day)`.
    pub fn sample(&self, day: u32) -> Result<Sample> {
        let clean = self.clean_state_on(day)?;
        let mut s = self.config.noise.sample(day, &clean, self.config.seed);
        let controls = self.applied.get(day as usize).unwrap_or(&self.setpoints);
        s.controls = controls.map(Some);
        s.reactor_id = Some(self.config.reactor_id.clone());
        Ok(s)
    }

    /// Noise-free state of an already simulated day.
    pub fn clean_state_on(&self, day: u32) -> Result<SpeciesArray<f64>> {
        self.history
            .get(day as usize)
            .copied()
            .ok_or(MechError::DayNotSimulated {
                requested: day,
                current: self.day(),
            })
    }

    /// Noise-free state of the current day.
    pub fn clean_state(&self) -> SpeciesArray<f64> {
        *self.history.last().unwrap_or(&self.config.initial_state)
    }

    /// Replaces the noise-free state of the current day (a manual addition after the day's
    /// sample: a bolus, a media exchange); the next day is integrated from it. The state
    /// must be finite and non-negative, viability at most 100 %.
    pub fn replace_current_state(&mut self, state: SpeciesArray<f64>) -> Result<()> {
        check_state(&state)?;
        for s in Species::ALL {
            let v = state[s.index()];
            if v < 0.0 || (s == Species::Via && v > 100.0) {
                return Err(MechError::InvalidState {
                    species: s,
                    value: v,
                    reason: "values must be >= 0 (viability at most 100 %)",
                });
            }
        }
        match self.history.last_mut() {
            Some(last) => *last = state,
            None => self.history.push(state),
        }
        Ok(())
    }

    /// Noise-free states of days `0..=day()`.
    pub fn clean_history(&self) -> &[SpeciesArray<f64>] {
        &self.history
    }

    /// Controls applied over each simulated day `d → d+1`, `d < day()`.
    pub fn applied_controls(&self) -> &[ControlArray<f64>] {
        &self.applied
    }

    /// The setpoints that will act from the current day on.
    pub fn setpoints(&self) -> ControlArray<f64> {
        self.setpoints
    }

    /// Replaces the setpoints from the current day on. Rejected with
    /// [`MechError::InvalidSetpoints`] (naming each control) when a value is non-finite,
    /// outside the design space's hard limits, or bleed exceeds perfusion; values outside a
    /// soft control's design range but inside its limits are accepted with a warning.
    pub fn set_setpoints(&mut self, values: &ControlArray<f64>) -> Result<()> {
        let soft = self
            .config
            .design_space
            .validate(values)
            .map_err(MechError::from_core_validation)?;
        for v in soft {
            tracing::warn!(reactor = %self.config.reactor_id, "setpoint accepted outside the design range: {v}");
        }
        self.setpoints = *values;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync_clone_debug<T: Send + Sync + Clone + std::fmt::Debug>() {}

    #[test]
    fn auto_traits() {
        send_sync_clone_debug::<VirtualReactor>();
        send_sync_clone_debug::<VirtualReactorConfig>();
        send_sync_clone_debug::<PlantModel>();
        send_sync_clone_debug::<NoiseModel>();
        send_sync_clone_debug::<KineticParams>();
        send_sync_clone_debug::<MechError>();
    }

    #[test]
    fn ensemble_ids_and_seeds() {
        let rs = VirtualReactor::ensemble(3, VirtualReactorConfig::default()).unwrap();
        let ids: Vec<_> = rs.iter().map(|r| r.config().reactor_id.as_str()).collect();
        assert_eq!(ids, ["R01", "R02", "R03"]);
        let seeds: Vec<_> = rs.iter().map(|r| r.config().seed).collect();
        assert_eq!(seeds, [42, 43, 44]);
        assert_ne!(
            rs[0].sample(0).unwrap().species,
            rs[1].sample(0).unwrap().species
        );
        let big = VirtualReactor::ensemble(100, VirtualReactorConfig::default()).unwrap();
        assert_eq!(big[99].config().reactor_id, "R100");
        assert_eq!(big[0].config().reactor_id, "R001");
    }

    #[test]
    fn future_days_are_an_error() {
        let r = VirtualReactor::new(VirtualReactorConfig::default()).unwrap();
        let e = r.sample(1).unwrap_err();
        assert_eq!(
            e.to_string(),
            "day 1 has not been simulated yet (the reactor is on day 0); call advance_to(1) first"
        );
    }

    #[test]
    fn invalid_config_is_rejected() {
        let mut c = VirtualReactorConfig::default();
        c.initial_state[0] = f64::NAN;
        assert!(matches!(
            VirtualReactor::new(c).unwrap_err(),
            MechError::InvalidState { .. }
        ));
        let mut c = VirtualReactorConfig::default();
        c.setpoints[Control::BleedRate.index()] = 1.0; // > perfusion 1.0? equal is fine, so use 1.5 perf
        c.setpoints[Control::PerfusionRate.index()] = 0.5;
        let e = VirtualReactor::new(c).unwrap_err();
        assert!(
            matches!(&e, MechError::InvalidSetpoints(v) if v[0].control == Control::BleedRate),
            "{e}"
        );
    }
}
