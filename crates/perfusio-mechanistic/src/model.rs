//! The plant model: right-hand side of the nine mass balances and the one-day step.

use perfusio_core::{
    Control, ControlArray, N_SPECIES, Species, SpeciesArray, Violation, ViolationKind,
    bleed_violation,
};
use serde::{Deserialize, Serialize};

use crate::error::{MechError, Result};
use crate::ode::{Dopri5Options, Dopri5Stats, PLANT_ODE_OPTIONS, integrate_switched_with_atol};
use crate::params::KineticParams;

/// Hours per culture day.
pub const HOURS_PER_DAY: f64 = 24.0;

/// Cells per litre per unit of VCD (1e6 cells/mL = 1e9 cells/L).
pub const CELLS_PER_L_PER_VCD: f64 = 1e9;

/// Molar mass of glucose, g/mol (turns g/L of glucose into mmol/L for the lactate yield).
pub const GLUCOSE_MOLAR_MASS: f64 = 180.0;

/// The day-0 state of `docs/plant-model.md`: VCD 1.0, Via 99 %, Glc 5 g/L, Gln 4, Glu 0.5,
/// Lac 2, Amm 0.5, Pyr 0 mmol/L, Titer 0 mg/L.
///
/// ```
/// use perfusio_core::Species;
/// let y0 = perfusio_mechanistic::initial_state();
/// assert!((y0[Species::Via.index()] - 99.0).abs() < 1e-12);
/// ```
pub fn initial_state() -> SpeciesArray<f64> {
    [1.0, 99.0, 5.0, 4.0, 0.5, 2.0, 0.5, 0.0, 0.0]
}

/// Volumetric and specific rates at one state and control vector (all per hour), for
/// inspection and tests. Produced by [`PlantModel::rates`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    /// Specific growth rate μ, 1/h.
    pub mu: f64,
    /// Specific death rate k_d (temperature + shear), 1/h.
    pub k_d: f64,
    /// Perfusion dilution rate D_p, 1/h.
    pub d_perfusion: f64,
    /// Bleed dilution rate D_b, 1/h.
    pub d_bleed: f64,
    /// Glucose uptake Q_glc, g/L/h.
    pub q_glc: f64,
    /// Glutamine uptake Q_gln, mmol/L/h.
    pub q_gln: f64,
    /// Glutamate release Q_glu, mmol/L/h.
    pub q_glu: f64,
    /// Lactate production (negative: consumption) Q_lac, mmol/L/h.
    pub q_lac: f64,
    /// Net ammonium production Q_amm, mmol/L/h.
    pub q_amm: f64,
    /// Product formation Q_mab, mg/L/h.
    pub q_mab: f64,
    /// Whether the lactate-consumption branch is active.
    pub consuming_lactate: bool,
}

/// The terms of the rates that depend on the controls and parameters only (temperature
/// and agitation effects, dilution rates): constant over an integration step.
#[derive(Debug, Clone, Copy)]
struct ControlTerms {
    /// `mu_max_t · f_o2`: the growth rate's control factor.
    mu_scale: f64,
    /// `mu_max_t · f_o2 / mu_max`: the growth-coupled uptake's control factor.
    growth_scale: f64,
    /// `y_lac_glc · 1000 / M_glc`: lactate (mmol) per glucose (g).
    lac_per_glc: f64,
    beta_t: f64,
    k_d: f64,
    d_perfusion: f64,
    d_bleed: f64,
}

impl ControlTerms {
    fn new(p: &KineticParams, controls: &ControlArray<f64>) -> Self {
        let temp = controls[Control::Temperature.index()];
        let rpm = controls[Control::Agitation.index()].max(0.0);
        // (E) temperature and agitation effects; the max(.,0) guards are inactive inside
        // the design-space limits.
        let mu_max_t = (p.mu_max * (1.0 - p.mu_temp_coeff * (p.t_ref - temp))).max(0.0);
        let beta_t = (p.beta_p * (1.0 + p.beta_temp_coeff * (p.t_ref - temp))).max(0.0);
        let f_o2 = (rpm / p.o2_limit_rpm).min(1.0);
        let k_shear = p.shear_death_per_100rpm * (rpm - p.shear_limit_rpm).max(0.0) / 100.0;
        Self {
            mu_scale: mu_max_t * f_o2,
            growth_scale: mu_max_t * f_o2 / p.mu_max,
            lac_per_glc: p.y_lac_glc * 1000.0 / GLUCOSE_MOLAR_MASS,
            beta_t,
            k_d: (p.k_d + p.k_t * (temp - p.t_ref)).max(0.0) + k_shear,
            d_perfusion: controls[Control::PerfusionRate.index()] / HOURS_PER_DAY,
            d_bleed: controls[Control::BleedRate.index()] / HOURS_PER_DAY,
        }
    }
}

/// The CHO perfusion plant model of `docs/plant-model.md`: kinetics, mass balances and an
/// adaptive Dormand–Prince integrator. Immutable and cheap to clone; every method takes
/// `&self` and allocates nothing except [`PlantModel::simulate`]'s output vector.
///
/// ```
/// use perfusio_core::{Control, Species};
/// use perfusio_mechanistic::{initial_state, KineticParams, PlantModel};
/// let model = PlantModel::new(KineticParams::clone_x());
/// let day1 = model.step(&initial_state(), &Control::defaults(), 24.0).unwrap();
/// assert!(day1[Species::VCD.index()] > 1.5);      // cells grow
/// assert!(day1[Species::Glc.index()] < 5.0);      // glucose is consumed
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct PlantModel {
    params: KineticParams,
    options: Dopri5Options,
    /// Per-species absolute tolerances replacing `options.atol`.
    abs_tol: Option<SpeciesArray<f64>>,
}

impl PlantModel {
    /// A model with the given parameters and the integrator settings of `docs/plant-model.md`
    /// (rtol 1e-6, atol 1e-9, at most 1 h per step).
    pub fn new(params: KineticParams) -> Self {
        Self {
            params,
            options: PLANT_ODE_OPTIONS,
            abs_tol: None,
        }
    }

    /// Replaces the integrator settings (e.g. tighter tolerances for a reference solution).
    #[must_use]
    pub fn with_options(mut self, options: Dopri5Options) -> Self {
        self.options = options;
        self
    }

    /// Replaces the integrator's absolute tolerance by one per species (canonical order,
    /// species units): a species is then resolved to its own meaningful scale instead of
    /// the global `atol` (see [`crate::ode::integrate_switched_with_atol`]).
    #[must_use]
    pub fn with_abs_tolerances(mut self, atol: SpeciesArray<f64>) -> Self {
        self.abs_tol = Some(atol);
        self
    }

    /// The per-species absolute tolerances, if set ([`PlantModel::with_abs_tolerances`]).
    pub fn abs_tolerances(&self) -> Option<&SpeciesArray<f64>> {
        self.abs_tol.as_ref()
    }

    /// The kinetic parameters.
    pub fn params(&self) -> &KineticParams {
        &self.params
    }

    /// The integrator settings.
    pub fn options(&self) -> &Dopri5Options {
        &self.options
    }

    /// Rates at `state` under `controls`, after clipping every state at 0.
    ///
    /// The growth-coupled uptake terms use `mu / mu_max` with the parameter `mu_max` (the
    /// 37 °C value), so that hypothermia lowers uptake together with growth.
    pub fn rates(&self, state: &SpeciesArray<f64>, controls: &ControlArray<f64>) -> Rates {
        let below = state[Species::Glc.index()].max(0.0) < self.params.glc_switch;
        self.rates_on_branch(state, controls, below)
    }

    /// Rates with the lactate branch chosen by `glc_below_switch` instead of by the state
    /// (the integrator freezes the branch within a step; see [`crate::ode::integrate_switched`]).
    pub fn rates_on_branch(
        &self,
        state: &SpeciesArray<f64>,
        controls: &ControlArray<f64>,
        glc_below_switch: bool,
    ) -> Rates {
        self.rates_with(
            &ControlTerms::new(&self.params, controls),
            state,
            glc_below_switch,
        )
    }

    /// [`PlantModel::rates_on_branch`] with the control-only terms computed once (they are
    /// constant over an integration step): the same operations in the same order, so the
    /// result is bit-identical.
    fn rates_with(
        &self,
        c: &ControlTerms,
        state: &SpeciesArray<f64>,
        glc_below_switch: bool,
    ) -> Rates {
        let p = &self.params;
        let vcd = state[Species::VCD.index()].max(0.0);
        let glc = state[Species::Glc.index()].max(0.0);
        let gln = state[Species::Gln.index()].max(0.0);
        let lac = state[Species::Lac.index()].max(0.0);
        let amm = state[Species::Amm.index()].max(0.0);
        let pyr = state[Species::Pyr.index()].max(0.0);
        let x = vcd * CELLS_PER_L_PER_VCD;

        // one division for both Monod terms
        let monod = (glc * gln) / ((p.k_glc + glc) * (p.k_gln + gln));
        let mu = c.mu_scale * monod;
        let growth = c.growth_scale * monod;
        let q_glc = (p.q_glc_max * (growth + p.glc_uptake_offset) + p.m_glc) * x;
        let q_gln = p.q_gln_max * (growth + p.gln_uptake_offset) * x;
        let consuming_lactate = p.consumes_lactate && glc_below_switch;
        let q_lac = if consuming_lactate {
            -p.lac_consump_rate * x * lac / (p.k_lac + lac)
        } else {
            c.lac_per_glc * q_glc
        };
        let q_amm = p.alpha_amm * q_gln - p.k_pyr * pyr * amm;
        let q_glu = p.glu_yield_gln * q_gln;
        let q_mab = (p.alpha_p * mu + c.beta_t) * x;
        Rates {
            mu,
            k_d: c.k_d,
            d_perfusion: c.d_perfusion,
            d_bleed: c.d_bleed,
            q_glc,
            q_gln,
            q_glu,
            q_lac,
            q_amm,
            q_mab,
            consuming_lactate,
        }
    }

    /// Right-hand side `dy/dt` (per hour) at `state` under `controls`; every state is
    /// clipped at 0 before the rates are evaluated.
    pub fn rhs(
        &self,
        state: &SpeciesArray<f64>,
        controls: &ControlArray<f64>,
        out: &mut SpeciesArray<f64>,
    ) {
        let below = state[Species::Glc.index()].max(0.0) < self.params.glc_switch;
        self.rhs_on_branch(state, controls, below, out);
    }

    /// [`PlantModel::rhs`] with the lactate branch given explicitly.
    pub fn rhs_on_branch(
        &self,
        state: &SpeciesArray<f64>,
        controls: &ControlArray<f64>,
        glc_below_switch: bool,
        out: &mut SpeciesArray<f64>,
    ) {
        let terms = ControlTerms::new(&self.params, controls);
        self.rhs_with(&terms, state, controls, glc_below_switch, out);
    }

    /// [`PlantModel::rhs_on_branch`] with the control-only terms computed once.
    fn rhs_with(
        &self,
        terms: &ControlTerms,
        state: &SpeciesArray<f64>,
        controls: &ControlArray<f64>,
        glc_below_switch: bool,
        out: &mut SpeciesArray<f64>,
    ) {
        let r = self.rates_with(terms, state, glc_below_switch);
        let s = state.map(|v| v.max(0.0));
        let dp = r.d_perfusion;
        let glc_feed = controls[Control::GlucoseSetpoint.index()];
        let pyr_feed = controls[Control::PyruvateFeed.index()];
        let pyr_amm = self.params.k_pyr * s[Species::Pyr.index()] * s[Species::Amm.index()];
        out[Species::VCD.index()] = (r.mu - r.k_d - r.d_bleed) * s[Species::VCD.index()];
        out[Species::Via.index()] =
            -self.params.via_loss_coeff * r.k_d * (100.0 - s[Species::Via.index()]).max(0.0);
        out[Species::Glc.index()] = dp * (glc_feed - s[Species::Glc.index()]) - r.q_glc;
        out[Species::Gln.index()] = dp * (self.params.gln_feed - s[Species::Gln.index()]) - r.q_gln;
        out[Species::Glu.index()] = r.q_glu - dp * s[Species::Glu.index()];
        out[Species::Lac.index()] = r.q_lac - dp * s[Species::Lac.index()];
        out[Species::Amm.index()] = r.q_amm - dp * s[Species::Amm.index()];
        out[Species::Pyr.index()] = dp * (pyr_feed - s[Species::Pyr.index()]) - pyr_amm;
        out[Species::Titer.index()] = r.q_mab - dp * s[Species::Titer.index()];
    }

    /// Integrates `hours` hours from `state` under constant `controls` (canonical order,
    /// physical units) and returns the end state clipped at 0. Allocates nothing.
    ///
    /// Errors: [`MechError::InvalidSetpoints`] for non-finite or negative controls or bleed
    /// above perfusion; [`MechError::InvalidState`] for a non-finite state;
    /// [`MechError::Integration`] if the integrator fails.
    pub fn step(
        &self,
        state: &SpeciesArray<f64>,
        controls: &ControlArray<f64>,
        hours: f64,
    ) -> Result<SpeciesArray<f64>> {
        self.step_with_stats(state, controls, hours).map(|(y, _)| y)
    }

    /// [`PlantModel::step`] that also returns the integrator's work statistics.
    pub fn step_with_stats(
        &self,
        state: &SpeciesArray<f64>,
        controls: &ControlArray<f64>,
        hours: f64,
    ) -> Result<(SpeciesArray<f64>, Dopri5Stats)> {
        check_controls(controls)?;
        check_state(state)?;
        if !(hours.is_finite() && hours >= 0.0) {
            return Err(MechError::arg("hours", hours, "must be finite and >= 0"));
        }
        let glc_switch = self.params.glc_switch;
        let switches = self.params.consumes_lactate;
        let terms = ControlTerms::new(&self.params, controls);
        let atol = self.abs_tol.unwrap_or([self.options.atol; N_SPECIES]);
        let (mut y, stats) = integrate_switched_with_atol(
            |_t, y: &[f64; N_SPECIES], below: bool, dy: &mut [f64; N_SPECIES]| {
                self.rhs_with(&terms, y, controls, below, dy);
            },
            // the lactate switch: glucose crossing glc_switch (clone X only)
            |y: &[f64; N_SPECIES]| {
                if switches {
                    y[Species::Glc.index()].max(0.0) - glc_switch
                } else {
                    1.0
                }
            },
            0.0,
            *state,
            hours,
            &self.options,
            &atol,
        )?;
        for v in &mut y {
            *v = v.max(0.0);
        }
        Ok((y, stats))
    }

    /// Daily states of an `n`-day run (days `0..=n`, `n = controls.len()`) with
    /// piecewise-constant controls: `controls[d]` acts over day `d → d+1`.
    ///
    /// ```
    /// use perfusio_core::Control;
    /// use perfusio_mechanistic::{initial_state, PlantModel, KineticParams};
    /// let m = PlantModel::new(KineticParams::clone_x());
    /// let days = m.simulate(&initial_state(), &vec![Control::defaults(); 3]).unwrap();
    /// assert_eq!(days.len(), 4);
    /// ```
    pub fn simulate(
        &self,
        y0: &SpeciesArray<f64>,
        controls: &[ControlArray<f64>],
    ) -> Result<Vec<SpeciesArray<f64>>> {
        check_state(y0)?;
        let mut out = Vec::with_capacity(controls.len() + 1);
        let mut y = *y0;
        out.push(y);
        for c in controls {
            y = self.step(&y, c, HOURS_PER_DAY)?;
            out.push(y);
        }
        Ok(out)
    }
}

impl Default for PlantModel {
    fn default() -> Self {
        Self::new(KineticParams::default())
    }
}

/// Checks a control vector for what the physics cannot accept: non-finite values, negative
/// flows, feeds or agitation, and bleed above perfusion (the rule of
/// [`perfusio_core::bleed_violation`]).
pub fn check_controls(controls: &ControlArray<f64>) -> Result<()> {
    let mut bad = Vec::new();
    for c in Control::ALL {
        let v = controls[c.index()];
        if !v.is_finite() {
            bad.push(Violation {
                control: c,
                value: v,
                kind: ViolationKind::NonFinite,
                hard: true,
            });
        } else if c != Control::Temperature && v < 0.0 {
            bad.push(Violation {
                control: c,
                value: v,
                kind: ViolationKind::BelowLower { bound: 0.0 },
                hard: true,
            });
        }
    }
    bad.extend(bleed_violation(controls));
    if bad.is_empty() {
        Ok(())
    } else {
        Err(MechError::InvalidSetpoints(bad))
    }
}

/// Checks that every state value is finite (negative values are clipped, not rejected).
pub fn check_state(state: &SpeciesArray<f64>) -> Result<()> {
    for s in Species::ALL {
        let v = state[s.index()];
        if !v.is_finite() {
            return Err(MechError::InvalidState {
                species: s,
                value: v,
                reason: "every state value must be finite",
            });
        }
    }
    Ok(())
}
