//! Objectives over forecast scenarios, and outcome constraints.
//!
//! A **scenario** is one forecast path over the decision horizon of `H` days:
//! `states[0]` is today's state (day `t`), `states[d]` the state on day `t + d`
//! (`d = 1..=H`), in original units and canonical species order
//! (VCD, Via, Glc, Gln, Glu, Lac, Amm, Pyr, Titer), and `schedule[d]` are the controls
//! acting from day `t + d` to `t + d + 1` (`H` entries). An [`Objective`] maps a scenario to
//! one number to **maximise**; evaluated on every scenario of a Monte-Carlo forecast it gives
//! the objective samples of [`mc`](crate::mc), and its mean and sd the predictive
//! distribution of [`analytic`](crate::analytic).
//!
//! Built-ins: [`Harvest`], [`Track`], [`FinalTiter`], and [`FnObjective`] for a user closure.
//! [`parse_objective`] reads the command-line forms.
//!
//! [`OutcomeConstraint`]s bound a forecast variable on days `1..=H`; the default set is
//! viability ≥ the design space's floor (95 %).

use std::fmt;
use std::sync::Arc;

use perfusio_core::{Control, ControlArray, Derived, DesignSpace, Species, SpeciesArray, Variable};
use serde::{Deserialize, Serialize};

use crate::error::{BedError, Result};

/// An objective of one forecast scenario, to be **maximised**.
///
/// Implementations must be pure functions of their inputs (the optimiser relies on
/// determinism). They may assume `states.len() == schedule.len() + 1 ≥ 2` with finite
/// values; [`evaluate`] checks that before calling.
///
/// ```
/// use perfusio_bed::objective::{Objective, FinalTiter};
/// use perfusio_core::{Control, Species};
/// let mut today = [0.0; 9];
/// today[Species::Titer.index()] = 400.0;
/// let mut tomorrow = today;
/// tomorrow[Species::Titer.index()] = 450.0;
/// let v = FinalTiter.value(&[today, tomorrow], &[Control::defaults()]);
/// assert!((v - 450.0).abs() < 1e-12);
/// ```
pub trait Objective: Send + Sync + fmt::Debug {
    /// The objective value of one scenario (larger is better).
    fn value(&self, states: &[SpeciesArray<f64>], schedule: &[ControlArray<f64>]) -> f64;

    /// A short name for logs and decisions; for the built-ins, the form that
    /// [`parse_objective`] reads back.
    fn name(&self) -> String;

    /// The species [`value`](Self::value) reads, or `None` (the default) when it may read
    /// any. A policy that knows them converts only those species of its Monte-Carlo
    /// scenarios from the model's coordinates and passes the others at their mean path, so
    /// an implementation that lists species must list every one it reads.
    fn species_read(&self) -> Option<Vec<Species>> {
        None
    }
}

/// The species the value of `variable` depends on (a derived variable's inputs).
///
/// ```
/// use perfusio_bed::objective::variable_species;
/// use perfusio_core::{Derived, Species, Variable};
/// assert_eq!(variable_species(Variable::Derived(Derived::VCV)), [Species::VCD, Species::Via]);
/// ```
pub fn variable_species(variable: Variable) -> Vec<Species> {
    match variable {
        Variable::Species(s) => vec![s],
        Variable::Derived(Derived::VCV) => vec![Species::VCD, Species::Via],
        Variable::Derived(Derived::Diam) => vec![Species::Via],
    }
}

/// The horizon `H` of a scenario: `min(states.len() − 1, schedule.len())`.
fn horizon(states: &[SpeciesArray<f64>], schedule: &[ControlArray<f64>]) -> usize {
    states.len().saturating_sub(1).min(schedule.len())
}

/// Checks a scenario's shape (`states.len() == schedule.len() + 1`, `H ≥ 1`) and values
/// (finite); returns `H`.
pub fn check_scenario(
    states: &[SpeciesArray<f64>],
    schedule: &[ControlArray<f64>],
) -> Result<usize> {
    if schedule.is_empty() || states.len() != schedule.len() + 1 {
        return Err(BedError::ShapeMismatch(format!(
            "a scenario over H days needs H + 1 states (today first) and H control vectors, \
             H >= 1; got {} states and {} control vectors",
            states.len(),
            schedule.len()
        )));
    }
    if let Some(&v) = states.iter().flatten().find(|v| !v.is_finite()) {
        return Err(BedError::NonFinite {
            what: "forecast state",
            value: v,
        });
    }
    if let Some(&v) = schedule.iter().flatten().find(|v| !v.is_finite()) {
        return Err(BedError::NonFinite {
            what: "control schedule",
            value: v,
        });
    }
    Ok(schedule.len())
}

/// Checks the scenario and evaluates the objective; a non-finite value is an error.
pub fn evaluate(
    objective: &dyn Objective,
    states: &[SpeciesArray<f64>],
    schedule: &[ControlArray<f64>],
) -> Result<f64> {
    check_scenario(states, schedule)?;
    let v = objective.value(states, schedule);
    if !v.is_finite() {
        return Err(BedError::NonFinite {
            what: "objective value",
            value: v,
        });
    }
    Ok(v)
}

/// The value of a species or derived variable in one state (derived ones by
/// [`Derived::compute`]).
pub fn variable_value(variable: Variable, state: &SpeciesArray<f64>) -> f64 {
    match variable {
        Variable::Species(s) => state[s.index()],
        Variable::Derived(d) => d.compute(state),
    }
}

/// Cumulative harvested antibody minus the cost of medium, per litre of reactor.
///
/// `Harvest = Σ_{d=0}^{H−1} ½(Titer_d + Titer_{d+1})·(perfusion_d − bleed_d)
///            − medium_cost·Σ_{d=0}^{H−1} perfusion_d`
///
/// Units: titer in mg/L; perfusion and bleed in vvd (reactor volumes per day), so each
/// term is the harvest (permeate) flow over one day times the day's mean titer — mg of
/// antibody per litre of reactor (the trapezoidal rule over the day). The bleed stream
/// also carries antibody but is discarded. `Σ perfusion_d` is the medium used in reactor
/// volumes (L per L of reactor), and `medium_cost` converts it to mg-equivalents per
/// reactor volume of medium (default 0).
///
/// ```
/// use perfusio_bed::objective::{Harvest, Objective};
/// use perfusio_core::{Control, Species};
/// let mut s = [0.0; 9];
/// s[Species::Titer.index()] = 500.0;
/// let mut c = Control::defaults();
/// c[Control::PerfusionRate.index()] = 1.5;
/// c[Control::BleedRate.index()] = 0.2;
/// // three days at 500 mg/L and 1.3 vvd of permeate, medium at 10 per reactor volume
/// let v = Harvest::new(10.0).unwrap().value(&[s; 4], &[c; 3]);
/// assert!((v - (3.0 * 500.0 * 1.3 - 10.0 * 4.5)).abs() < 1e-9);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Harvest {
    /// Cost of one reactor volume of medium, in mg-equivalents per litre of reactor (≥ 0).
    pub medium_cost: f64,
}

impl Harvest {
    /// A harvest objective; `medium_cost` must be finite and `≥ 0`.
    pub fn new(medium_cost: f64) -> Result<Self> {
        check_medium_cost(medium_cost)?;
        Ok(Self { medium_cost })
    }
}

fn check_medium_cost(medium_cost: f64) -> Result<()> {
    if !(medium_cost.is_finite() && medium_cost >= 0.0) {
        return Err(BedError::InvalidParameter {
            name: "medium_cost",
            reason: format!("the medium cost must be a finite number >= 0, got {medium_cost}"),
        });
    }
    Ok(())
}

impl Objective for Harvest {
    fn value(&self, states: &[SpeciesArray<f64>], schedule: &[ControlArray<f64>]) -> f64 {
        let t = Species::Titer.index();
        let (p, b) = (Control::PerfusionRate.index(), Control::BleedRate.index());
        (0..horizon(states, schedule))
            .map(|d| {
                let c = &schedule[d];
                0.5 * (states[d][t] + states[d + 1][t]) * (c[p] - c[b]) - self.medium_cost * c[p]
            })
            .sum()
    }

    fn name(&self) -> String {
        if self.medium_cost > 0.0 {
            format!("harvest (medium cost {})", self.medium_cost)
        } else {
            "harvest".to_string()
        }
    }

    fn species_read(&self) -> Option<Vec<Species>> {
        Some(vec![Species::Titer])
    }
}

/// Titer on the last day of the horizon, `Titer_{t+H}` (mg/L).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FinalTiter;

impl Objective for FinalTiter {
    fn value(&self, states: &[SpeciesArray<f64>], schedule: &[ControlArray<f64>]) -> f64 {
        states
            .get(horizon(states, schedule))
            .map_or(f64::NAN, |s| s[Species::Titer.index()])
    }

    fn name(&self) -> String {
        "final-titer".to_string()
    }

    fn species_read(&self) -> Option<Vec<Species>> {
        Some(vec![Species::Titer])
    }
}

/// One target of a [`Track`] objective.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrackTarget {
    /// The tracked variable (a species, VCV or Diam).
    pub variable: Variable,
    /// Its target value (non-zero: deviations are relative).
    pub target: f64,
    /// Its weight (`≥ 0`).
    pub weight: f64,
}

/// Target tracking, Gadiyar et al. (2026), Eq. 7: minus the weighted squared relative
/// deviation from the targets over the horizon,
///
/// `Track = −Σ_{d=1}^{H} Σ_k w_k ((y_{k,d} − target_k)/target_k)²`,
///
/// with `y_{k,d}` a species or a derived variable (VCV, Diam via [`Derived::compute`]) on
/// day `t + d`. Maximal (0) on target.
///
/// Specification grammar (after `track:`, see [`parse_objective`]):
///
/// ```text
/// spec   := target ("," target)*
/// target := VAR "=" TARGET [":" WEIGHT]      (WEIGHT defaults to 1)
/// VAR    := VCD | Via | Glc | Gln | Glu | Lac | Amm | Pyr | Titer | VCV | Diam  (or an alias)
/// ```
///
/// ```
/// use perfusio_bed::objective::{Objective, Track};
/// let t = Track::parse("VCV=10,Titer=500:0.5").unwrap();
/// assert_eq!(t.targets().len(), 2);
/// assert_eq!(t.name(), "track:VCV=10,Titer=500:0.5");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Track {
    targets: Vec<TrackTarget>,
}

impl Track {
    /// A tracking objective; targets finite and non-zero, weights finite and `≥ 0` with at
    /// least one positive, each variable at most once.
    pub fn new(targets: Vec<TrackTarget>) -> Result<Self> {
        let spec = Self::format(&targets);
        let bad = |reason: String| BedError::InvalidObjective {
            spec: format!("track:{spec}"),
            reason,
            valid: OBJECTIVE_FORMS,
        };
        if targets.is_empty() {
            return Err(bad("no targets".to_string()));
        }
        for (i, t) in targets.iter().enumerate() {
            if !(t.target.is_finite() && t.target.abs() > 0.0) {
                return Err(bad(format!(
                    "the target of {} must be a finite non-zero number (deviations are relative)",
                    t.variable
                )));
            }
            if !(t.weight.is_finite() && t.weight >= 0.0) {
                return Err(bad(format!(
                    "the weight of {} must be a finite number >= 0",
                    t.variable
                )));
            }
            if targets[..i].iter().any(|u| u.variable == t.variable) {
                return Err(bad(format!("{} is targeted twice", t.variable)));
            }
        }
        if targets.iter().all(|t| t.weight <= 0.0) {
            return Err(bad("every weight is zero".to_string()));
        }
        Ok(Self { targets })
    }

    /// Tracking of the viable cell volume alone (weight 1), e.g. the design space's
    /// [`vcv_target`](DesignSpace::vcv_target).
    pub fn vcv(target: f64) -> Result<Self> {
        Self::new(vec![TrackTarget {
            variable: Variable::Derived(Derived::VCV),
            target,
            weight: 1.0,
        }])
    }

    /// Parses `VAR=TARGET[:WEIGHT][,…]` (the part after `track:`).
    pub fn parse(spec: &str) -> Result<Self> {
        let bad = |reason: String| BedError::InvalidObjective {
            spec: format!("track:{spec}"),
            reason,
            valid: OBJECTIVE_FORMS,
        };
        let mut targets = Vec::new();
        for item in spec.split(',') {
            let item = item.trim();
            let (var, rest) = item
                .split_once('=')
                .ok_or_else(|| bad(format!("'{item}' is not VAR=TARGET[:WEIGHT]")))?;
            let variable = Variable::lookup(var).ok_or_else(|| {
                bad(format!(
                    "unknown variable '{}'; use a species ({}) or VCV, Diam",
                    var.trim(),
                    Species::valid_names()
                ))
            })?;
            let (target, weight) = match rest.split_once(':') {
                Some((t, w)) => (t, Some(w)),
                None => (rest, None),
            };
            let number = |s: &str, what: &str| {
                s.trim()
                    .parse::<f64>()
                    .map_err(|_| bad(format!("{what} '{}' is not a number", s.trim())))
            };
            targets.push(TrackTarget {
                variable,
                target: number(target, "target")?,
                weight: weight
                    .map(|w| number(w, "weight"))
                    .transpose()?
                    .unwrap_or(1.0),
            });
        }
        Self::new(targets)
    }

    /// The targets.
    pub fn targets(&self) -> &[TrackTarget] {
        &self.targets
    }

    fn format(targets: &[TrackTarget]) -> String {
        targets
            .iter()
            .map(|t| {
                if (t.weight - 1.0).abs() > 0.0 {
                    format!("{}={}:{}", t.variable, t.target, t.weight)
                } else {
                    format!("{}={}", t.variable, t.target)
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Objective for Track {
    fn value(&self, states: &[SpeciesArray<f64>], schedule: &[ControlArray<f64>]) -> f64 {
        let h = horizon(states, schedule);
        -states
            .iter()
            .skip(1)
            .take(h)
            .map(|state| {
                self.targets
                    .iter()
                    .map(|t| {
                        let dev = (variable_value(t.variable, state) - t.target) / t.target;
                        t.weight * dev * dev
                    })
                    .sum::<f64>()
            })
            .sum::<f64>()
    }

    fn name(&self) -> String {
        format!("track:{}", Self::format(&self.targets))
    }

    fn species_read(&self) -> Option<Vec<Species>> {
        Some(
            self.targets
                .iter()
                .flat_map(|t| variable_species(t.variable))
                .collect(),
        )
    }
}

/// The signature of a user objective.
pub type ObjectiveFn = dyn Fn(&[SpeciesArray<f64>], &[ControlArray<f64>]) -> f64 + Send + Sync;

/// A user-supplied objective: a closure with a name.
///
/// ```
/// use perfusio_bed::objective::{FnObjective, Objective};
/// use perfusio_core::Species;
/// // maximise the mean viable cell density over the horizon
/// let obj = FnObjective::new("mean VCD", |states, _| {
///     let h = states.len() - 1;
///     states[1..].iter().map(|s| s[Species::VCD.index()]).sum::<f64>() / h as f64
/// });
/// assert_eq!(obj.name(), "mean VCD");
/// ```
#[derive(Clone)]
pub struct FnObjective {
    name: String,
    f: Arc<ObjectiveFn>,
}

impl FnObjective {
    /// Wraps a closure.
    pub fn new(
        name: impl Into<String>,
        f: impl Fn(&[SpeciesArray<f64>], &[ControlArray<f64>]) -> f64 + Send + Sync + 'static,
    ) -> Self {
        Self {
            name: name.into(),
            f: Arc::new(f),
        }
    }
}

impl fmt::Debug for FnObjective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnObjective")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Objective for FnObjective {
    fn value(&self, states: &[SpeciesArray<f64>], schedule: &[ControlArray<f64>]) -> f64 {
        (self.f)(states, schedule)
    }

    fn name(&self) -> String {
        self.name.clone()
    }
}

/// The objective forms [`parse_objective`] accepts.
pub const OBJECTIVE_FORMS: &str = "harvest, final-titer, \
     track:VAR=TARGET[:WEIGHT][,VAR=TARGET[:WEIGHT]...] \
     (VAR: VCD, Via, Glc, Gln, Glu, Lac, Amm, Pyr, Titer, VCV or Diam; WEIGHT defaults to 1)";

/// Parses an objective specification, as given to `--objective` (`--medium-cost C` is
/// `medium_cost`, default 0):
///
/// * `harvest` → [`Harvest`] with `medium_cost`;
/// * `final-titer` (or `final_titer`) → [`FinalTiter`];
/// * `track:VCV=10`, `track:VCV=10,Titer=500:0.5` → [`Track`] (grammar there).
///
/// Keywords are case-insensitive. A non-zero `medium_cost` with another objective than
/// `harvest` is an error (it would be silently ignored).
///
/// ```
/// use perfusio_bed::objective::parse_objective;
/// assert_eq!(parse_objective("harvest", 0.0).unwrap().name(), "harvest");
/// assert_eq!(parse_objective("Track:vcv=10", 0.0).unwrap().name(), "track:VCV=10");
/// let e = parse_objective("titer", 0.0).unwrap_err().to_string();
/// assert!(e.contains("valid forms: harvest, final-titer, track:"));
/// ```
pub fn parse_objective(spec: &str, medium_cost: f64) -> Result<Box<dyn Objective>> {
    check_medium_cost(medium_cost)?;
    let s = spec.trim();
    let lower = s.to_ascii_lowercase();
    let not_harvest = |name: &str| -> Result<()> {
        if medium_cost > 0.0 {
            return Err(BedError::InvalidObjective {
                spec: spec.to_string(),
                reason: format!(
                    "--medium-cost applies to the harvest objective only, not to {name}"
                ),
                valid: OBJECTIVE_FORMS,
            });
        }
        Ok(())
    };
    if lower == "harvest" {
        return Ok(Box::new(Harvest::new(medium_cost)?));
    }
    if lower == "final-titer" || lower == "final_titer" {
        not_harvest("final-titer")?;
        return Ok(Box::new(FinalTiter));
    }
    if lower.starts_with("track:") {
        not_harvest("track")?;
        return Ok(Box::new(Track::parse(&s["track:".len()..])?));
    }
    Err(BedError::InvalidObjective {
        spec: spec.to_string(),
        reason: "unknown objective".to_string(),
        valid: OBJECTIVE_FORMS,
    })
}

/// A bound on a forecast variable, checked on days `1..=H` of a scenario:
/// `lower ≤ y_d ≤ upper` for every day (either bound optional).
///
/// Two views of the same constraint:
/// * the hard check [`is_satisfied`](Self::is_satisfied) (every day inside) — the
///   fraction of scenarios that pass is the Monte-Carlo probability of feasibility;
/// * the **slack** [`slack`](Self::slack) `= min_d min(y_d − lower, upper − y_d)/scale`,
///   `≥ 0` exactly when satisfied, and its smooth version
///   [`smooth_slack`](Self::smooth_slack) (a soft minimum over days, never above the slack)
///   for the sigmoid-weighted Monte-Carlo acquisitions of [`mc`](crate::mc). The scale is
///   the width of the variable's plausible range (100 for viability), so one temperature
///   `η` suits every variable.
///
/// ```
/// use perfusio_bed::objective::OutcomeConstraint;
/// use perfusio_core::{DEFAULT_AMBR250_DESIGN_SPACE, Species};
/// let via = OutcomeConstraint::viability_floor(&DEFAULT_AMBR250_DESIGN_SPACE);
/// let mut s = [0.0; 9];
/// s[Species::Via.index()] = 97.0;
/// let mut low = s;
/// low[Species::Via.index()] = 94.0;
/// assert!(via.is_satisfied(&[low, s, s])); // day 0 (today) is not checked
/// assert!(!via.is_satisfied(&[s, s, low]));
/// assert!((via.slack(&[s, s, s]) - 0.02).abs() < 1e-12); // 2 points of 100
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OutcomeConstraint {
    /// The constrained variable.
    pub variable: Variable,
    /// Lower bound (inclusive), if any.
    pub lower: Option<f64>,
    /// Upper bound (inclusive), if any.
    pub upper: Option<f64>,
}

impl OutcomeConstraint {
    /// A checked constraint: at least one bound, finite, `lower ≤ upper`.
    pub fn new(variable: Variable, lower: Option<f64>, upper: Option<f64>) -> Result<Self> {
        let c = Self {
            variable,
            lower,
            upper,
        };
        c.check()?;
        Ok(c)
    }

    /// `variable ≥ lower`.
    pub fn at_least(variable: Variable, lower: f64) -> Result<Self> {
        Self::new(variable, Some(lower), None)
    }

    /// `variable ≤ upper`.
    pub fn at_most(variable: Variable, upper: f64) -> Result<Self> {
        Self::new(variable, None, Some(upper))
    }

    /// Viability ≥ the design space's [`viability_min`](DesignSpace::viability_min).
    pub fn viability_floor(design: &DesignSpace) -> Self {
        Self {
            variable: Variable::Species(Species::Via),
            lower: Some(design.viability_min()),
            upper: None,
        }
    }

    /// The default constraint set: the viability floor alone.
    pub fn defaults(design: &DesignSpace) -> Vec<Self> {
        vec![Self::viability_floor(design)]
    }

    /// Validates the bounds.
    pub fn check(&self) -> Result<()> {
        let bad = |reason: &str| BedError::InvalidParameter {
            name: "outcome constraint",
            reason: format!("{}: {reason}", self.variable),
        };
        if self.lower.is_none() && self.upper.is_none() {
            return Err(bad("needs a lower or an upper bound"));
        }
        if self.lower.is_some_and(|l| !l.is_finite()) || self.upper.is_some_and(|u| !u.is_finite())
        {
            return Err(bad("bounds must be finite"));
        }
        if let (Some(l), Some(u)) = (self.lower, self.upper)
            && l > u
        {
            return Err(bad("lower bound above upper bound"));
        }
        Ok(())
    }

    /// The normalisation of slacks: the width of the variable's plausible range.
    pub fn scale(&self) -> f64 {
        let w = self.variable.bounds().width();
        if w > 0.0 { w } else { 1.0 }
    }

    /// The species the constraint reads ([`variable_species`] of its variable).
    pub fn species_read(&self) -> Vec<Species> {
        variable_species(self.variable)
    }

    /// Margin of one state in variable units: `min(y − lower, upper − y)` (`+∞` without
    /// bounds); `≥ 0` when inside.
    pub fn margin(&self, state: &SpeciesArray<f64>) -> f64 {
        let y = variable_value(self.variable, state);
        let lo = self.lower.map_or(f64::INFINITY, |l| y - l);
        let hi = self.upper.map_or(f64::INFINITY, |u| u - y);
        lo.min(hi)
    }

    /// The slack of a scenario: the smallest normalised margin over days `1..=H`
    /// (`states[1..]`); `≥ 0` exactly when the constraint holds on every day, `+∞` for a
    /// scenario without forecast days.
    pub fn slack(&self, states: &[SpeciesArray<f64>]) -> f64 {
        let scale = self.scale();
        states
            .iter()
            .skip(1)
            .map(|s| self.margin(s) / scale)
            .fold(f64::INFINITY, f64::min)
    }

    /// A smooth slack: the soft minimum `−τ ln Σ_d exp(−m_d/τ)` of the normalised margins
    /// `m_d` over days `1..=H`. Never above [`slack`](Self::slack), and within `τ ln H` of it.
    pub fn smooth_slack(&self, states: &[SpeciesArray<f64>], tau: f64) -> f64 {
        let min = self.slack(states);
        if !min.is_finite() || tau.is_nan() || tau <= 0.0 {
            return min;
        }
        let scale = self.scale();
        let sum: f64 = states
            .iter()
            .skip(1)
            .map(|s| (-(self.margin(s) / scale - min) / tau).exp())
            .sum();
        min - tau * sum.ln()
    }

    /// `true` when the variable stays within the bounds on every day `1..=H`.
    pub fn is_satisfied(&self, states: &[SpeciesArray<f64>]) -> bool {
        self.slack(states) >= 0.0
    }
}

impl fmt::Display for OutcomeConstraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = self.variable.unit();
        match (self.lower, self.upper) {
            (Some(l), Some(u)) => write!(f, "{l} {unit} ≤ {} ≤ {u} {unit}", self.variable),
            (Some(l), None) => write!(f, "{} ≥ {l} {unit}", self.variable),
            (None, Some(u)) => write!(f, "{} ≤ {u} {unit}", self.variable),
            (None, None) => write!(f, "{} unconstrained", self.variable),
        }
    }
}

/// `true` when every constraint holds on every day `1..=H` of the scenario.
pub fn all_satisfied(constraints: &[OutcomeConstraint], states: &[SpeciesArray<f64>]) -> bool {
    constraints.iter().all(|c| c.is_satisfied(states))
}

#[cfg(test)]
mod tests {
    use super::*;
    use perfusio_core::DEFAULT_AMBR250_DESIGN_SPACE as DS;
    use perfusio_core::N_SPECIES;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 64,
            rng_seed: proptest::test_runner::RngSeed::Fixed(5),
            ..ProptestConfig::default()
        })]

        /// Every built-in objective and constraint lists all the species it reads: changing
        /// any other species of every state leaves its value (and slack) exactly as it was.
        #[test]
        fn species_read_lists_every_species_a_value_depends_on(
            base in proptest::collection::vec(0.5..100.0f64, 4 * N_SPECIES),
            noise in proptest::collection::vec(-0.4..0.4f64, 4 * N_SPECIES),
            perf in 0.5..2.0f64,
        ) {
            let states: Vec<SpeciesArray<f64>> = base
                .chunks_exact(N_SPECIES)
                .map(|c| std::array::from_fn(|k| if k == Species::Via.index() { c[k].min(99.0) } else { c[k] }))
                .collect();
            let schedule = vec![controls(perf, 0.1); 3];
            let objectives: Vec<Box<dyn Objective>> = vec![
                Box::new(Harvest::new(400.0).unwrap()),
                Box::new(FinalTiter),
                Box::new(Track::parse("VCV=10,Glc=2:0.5").unwrap()),
                Box::new(Track::parse("Diam=21").unwrap()),
            ];
            let constraints = [
                OutcomeConstraint::new(Variable::Species(Species::Via), Some(95.0), None).unwrap(),
                OutcomeConstraint::new(Variable::Derived(Derived::VCV), None, Some(30.0)).unwrap(),
            ];
            let perturb = |read: &[Species]| -> Vec<SpeciesArray<f64>> {
                states
                    .iter()
                    .enumerate()
                    .map(|(d, st)| {
                        std::array::from_fn(|k| {
                            if read.iter().any(|s| s.index() == k) {
                                st[k]
                            } else {
                                st[k] * (1.0 + noise[d * N_SPECIES + k])
                            }
                        })
                    })
                    .collect()
            };
            for o in &objectives {
                let read = o.species_read().unwrap();
                let v = o.value(&states, &schedule);
                prop_assert_eq!(v.to_bits(), o.value(&perturb(&read), &schedule).to_bits(), "{}", o.name());
                // and the listed species do matter
                let all: Vec<Species> = Vec::new();
                prop_assert!(o.value(&perturb(&all), &schedule).to_bits() != v.to_bits(), "{}", o.name());
            }
            for c in &constraints {
                let read = c.species_read();
                prop_assert_eq!(c.slack(&states).to_bits(), c.slack(&perturb(&read)).to_bits());
            }
        }
    }

    fn state(vcd: f64, via: f64, titer: f64) -> SpeciesArray<f64> {
        let mut s = [1.0; 9];
        s[Species::VCD.index()] = vcd;
        s[Species::Via.index()] = via;
        s[Species::Titer.index()] = titer;
        s
    }

    fn controls(perf: f64, bleed: f64) -> ControlArray<f64> {
        let mut c = Control::defaults();
        c[Control::PerfusionRate.index()] = perf;
        c[Control::BleedRate.index()] = bleed;
        c
    }

    #[test]
    fn harvest_is_the_trapezoidal_permeate_integral() {
        let states: Vec<_> = [100.0, 200.0, 300.0, 400.0]
            .iter()
            .map(|&t| state(20.0, 98.0, t))
            .collect();
        let sched = [controls(1.0, 0.0), controls(2.0, 0.5), controls(1.0, 0.25)];
        // 150·1 + 250·1.5 + 350·0.75
        let want = 150.0 + 375.0 + 262.5;
        assert!((Harvest::default().value(&states, &sched) - want).abs() < 1e-12);
        let cost = Harvest::new(3.0).unwrap();
        assert!((cost.value(&states, &sched) - (want - 3.0 * 4.0)).abs() < 1e-12);
        assert_eq!(cost.name(), "harvest (medium cost 3)");
        assert!(Harvest::new(-1.0).is_err() && Harvest::new(f64::NAN).is_err());
    }

    #[test]
    fn track_is_minus_weighted_squared_relative_deviation() {
        let states = [
            state(20.0, 98.0, 100.0),
            state(22.0, 97.0, 150.0),
            state(25.0, 96.0, 240.0),
        ];
        let sched = [controls(1.0, 0.1); 2];
        let t = Track::parse("VCV=10, Titer=200:0.5").unwrap();
        let vcv = |s: &SpeciesArray<f64>| Derived::VCV.compute(s);
        let want = -(((vcv(&states[1]) - 10.0) / 10.0).powi(2)
            + 0.5 * ((150.0f64 - 200.0) / 200.0).powi(2)
            + ((vcv(&states[2]) - 10.0) / 10.0).powi(2)
            + 0.5 * ((240.0f64 - 200.0) / 200.0).powi(2));
        assert!((t.value(&states, &sched) - want).abs() < 1e-12);
        // on target: 0
        let on = Track::parse("titer=150").unwrap();
        assert!(on.value(&states[..2], &sched[..1]).abs() < 1e-15);
        // aliases and round trip through the name
        let t2 = parse_objective(&t.name(), 0.0).unwrap();
        assert_eq!(t2.name(), "track:VCV=10,Titer=200:0.5");
        assert_eq!(Track::vcv(DS.vcv_target()).unwrap().name(), "track:VCV=30");
        assert_eq!(
            Track::parse("viability=96:2").unwrap().name(),
            "track:Via=96:2"
        );
    }

    #[test]
    fn track_spec_errors_say_what_is_wrong() {
        let err = |s: &str| Track::parse(s).unwrap_err().to_string();
        assert_eq!(
            err("VCV"),
            format!(
                "invalid objective 'track:VCV': 'VCV' is not VAR=TARGET[:WEIGHT]; valid forms: {OBJECTIVE_FORMS}"
            )
        );
        assert!(err("speed=3").contains("unknown variable 'speed'; use a species (VCD, Via, Glc, Gln, Glu, Lac, Amm, Pyr, Titer) or VCV, Diam"));
        assert!(err("VCV=ten").contains("target 'ten' is not a number"));
        assert!(err("VCV=10:x").contains("weight 'x' is not a number"));
        assert!(err("VCV=0").contains("must be a finite non-zero number"));
        assert!(err("VCV=10:-1").contains("must be a finite number >= 0"));
        assert!(err("VCV=10,vcv=12").contains("VCV is targeted twice"));
        assert!(err("VCV=10:0").contains("every weight is zero"));
    }

    #[test]
    fn final_titer_and_closures() {
        let states = [
            state(20.0, 98.0, 100.0),
            state(22.0, 97.0, 150.0),
            state(25.0, 96.0, 240.0),
        ];
        let sched = [controls(1.0, 0.1); 2];
        assert!((FinalTiter.value(&states, &sched) - 240.0).abs() < 1e-15);
        let f = FnObjective::new("neg bleed", |_, sched: &[ControlArray<f64>]| {
            -sched
                .iter()
                .map(|c| c[Control::BleedRate.index()])
                .sum::<f64>()
        });
        assert!((f.value(&states, &sched) + 0.2).abs() < 1e-15);
        assert_eq!(format!("{f:?}"), "FnObjective { name: \"neg bleed\", .. }");
        let nan = FnObjective::new("nan", |_, _| f64::NAN);
        assert!(evaluate(&nan, &states, &sched).is_err());
        assert!((evaluate(&FinalTiter, &states, &sched).unwrap() - 240.0).abs() < 1e-15);
        assert!(evaluate(&FinalTiter, &states, &sched[..1]).is_err());
        assert!(evaluate(&FinalTiter, &states[..1], &[]).is_err());
    }

    #[test]
    fn parse_objective_forms_and_errors() {
        assert_eq!(
            parse_objective(" Harvest ", 2.5).unwrap().name(),
            "harvest (medium cost 2.5)"
        );
        assert_eq!(
            parse_objective("final-titer", 0.0).unwrap().name(),
            "final-titer"
        );
        assert_eq!(
            parse_objective("FINAL_TITER", 0.0).unwrap().name(),
            "final-titer"
        );
        assert_eq!(
            parse_objective("track:VCV=10", 0.0).unwrap().name(),
            "track:VCV=10"
        );
        assert_eq!(
            parse_objective("yield", 0.0).unwrap_err().to_string(),
            format!("invalid objective 'yield': unknown objective; valid forms: {OBJECTIVE_FORMS}")
        );
        assert!(
            parse_objective("final-titer", 1.0)
                .unwrap_err()
                .to_string()
                .contains(
                    "--medium-cost applies to the harvest objective only, not to final-titer"
                )
        );
        assert!(parse_objective("harvest", -1.0).is_err());
    }

    #[test]
    fn outcome_constraints() {
        let via = OutcomeConstraint::viability_floor(&DS);
        assert_eq!(OutcomeConstraint::defaults(&DS), vec![via]);
        assert_eq!(via.to_string(), "Via ≥ 95 %");
        let states = [
            state(20.0, 90.0, 0.0),
            state(20.0, 97.0, 0.0),
            state(20.0, 95.5, 0.0),
            state(20.0, 99.0, 0.0),
        ];
        assert!(via.is_satisfied(&states));
        assert!((via.slack(&states) - 0.005).abs() < 1e-12);
        let smooth = via.smooth_slack(&states, 1e-3);
        assert!(smooth <= via.slack(&states) && smooth >= via.slack(&states) - 1e-3 * 3f64.ln());
        let fail = [state(20.0, 97.0, 0.0), state(20.0, 94.0, 0.0)];
        assert!(!via.is_satisfied(&fail) && via.slack(&fail) < 0.0);
        assert!(!all_satisfied(&[via], &fail) && all_satisfied(&[], &fail));
        // two-sided on a derived variable
        let vcv =
            OutcomeConstraint::new(Variable::Derived(Derived::VCV), Some(5.0), Some(15.0)).unwrap();
        let inside = [state(20.0, 97.0, 0.0), state(20.0, 97.0, 0.0)];
        let v = Derived::VCV.compute(&inside[1]);
        assert!((vcv.slack(&inside) - (v - 5.0).min(15.0 - v) / 60.0).abs() < 1e-12);
        assert!(OutcomeConstraint::new(Variable::Species(Species::Glc), None, None).is_err());
        assert!(
            OutcomeConstraint::new(Variable::Species(Species::Glc), Some(3.0), Some(2.0)).is_err()
        );
        assert!(
            OutcomeConstraint::at_most(Variable::Species(Species::Lac), f64::INFINITY).is_err()
        );
        assert!(via.slack(&states[..1]).is_infinite());
        // degenerate scenarios do not panic
        assert!(FinalTiter.value(&[], &[]).is_nan());
        assert!(Track::vcv(10.0).unwrap().value(&[], &[]).abs() < 1e-300);
        assert!(Harvest::default().value(&[], &[]).abs() < 1e-300);
    }

    #[test]
    fn auto_traits() {
        fn send_sync<T: Send + Sync>() {}
        fn clone<T: Clone>() {}
        send_sync::<Box<dyn Objective>>();
        send_sync::<Harvest>();
        send_sync::<Track>();
        send_sync::<FnObjective>();
        clone::<FnObjective>();
        clone::<Track>();
        send_sync::<OutcomeConstraint>();
    }
}
