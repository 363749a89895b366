//! Alarms from forecast quantiles: [`AlarmRule`]s per variable and the raise-once,
//! clear-when-gone bookkeeping ([`AlarmTracker`]).

use std::collections::BTreeMap;
use std::fmt;

use perfusio_audit::event::{Alarm, AlarmState, Severity};
use perfusio_core::{CultureDay, DesignSpace, Species, SpeciesArray, Variable};
use perfusio_hybrid::Forecast;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TwinError};

/// Draws per forecast day behind the alarm probabilities of a moment-matched forecast.
pub(crate) const ALARM_DRAWS: usize = 256;

/// Seed of those draws (with the forecast's start day mixed in), so that the same
/// forecast always raises the same alarms.
const ALARM_SEED: u64 = 0x616c_6172_6d73;

/// A rule on the forecast of one variable: raise an alarm when, on some day within
/// `lead_days` of the forecast, the variable is below `lower` (or above `upper`) with at
/// least `probability`. Equivalently: the `probability` quantile of that day's forecast is
/// below `lower` (the `1 − probability` quantile above `upper`).
///
/// ```
/// use perfusio_core::{Species, Variable};
/// use perfusio_twin::AlarmRule;
/// let rule = AlarmRule::below(Variable::Species(Species::Glc), 0.5)
///     .within_days(2)
///     .with_probability(0.8)
///     .critical();
/// rule.check().unwrap();
/// assert_eq!(rule.to_string(), "Glc < 0.5 g/L within 2 days (p ≥ 0.80, critical)");
/// assert!(AlarmRule::below(Variable::Species(Species::Glc), 0.5).with_probability(0.0).check().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AlarmRule {
    /// The variable watched (a species, VCV or Diam).
    pub variable: Variable,
    /// Alarm when the forecast falls below this.
    pub lower: Option<f64>,
    /// Alarm when the forecast rises above this.
    pub upper: Option<f64>,
    /// Days of the forecast looked at (1 = tomorrow only).
    pub lead_days: u32,
    /// Smallest probability that raises the alarm, in (0, 1].
    pub probability: f64,
    /// Severity of the alarm.
    pub severity: Severity,
}

impl AlarmRule {
    /// Alarm when `variable` is forecast below `limit`: within 3 days, probability 0.5,
    /// warning.
    pub fn below(variable: Variable, limit: f64) -> Self {
        Self {
            variable,
            lower: Some(limit),
            upper: None,
            lead_days: 3,
            probability: 0.5,
            severity: Severity::Warning,
        }
    }

    /// Alarm when `variable` is forecast above `limit` (defaults as [`AlarmRule::below`]).
    pub fn above(variable: Variable, limit: f64) -> Self {
        Self {
            lower: None,
            upper: Some(limit),
            ..Self::below(variable, limit)
        }
    }

    /// Looks `days` days ahead.
    #[must_use]
    pub fn within_days(mut self, days: u32) -> Self {
        self.lead_days = days;
        self
    }

    /// Raises at probability `p` or more.
    #[must_use]
    pub fn with_probability(mut self, p: f64) -> Self {
        self.probability = p;
        self
    }

    /// Severity critical.
    #[must_use]
    pub fn critical(mut self) -> Self {
        self.severity = Severity::Critical;
        self
    }

    /// Severity warning.
    #[must_use]
    pub fn warning(mut self) -> Self {
        self.severity = Severity::Warning;
        self
    }

    /// The default rule set of a design space: viability forecast below its floor (95 % for
    /// the ambr250) within 3 days with probability ≥ 0.5, a warning.
    pub fn defaults(design_space: &DesignSpace) -> Vec<Self> {
        vec![Self::below(
            Variable::Species(Species::Via),
            design_space.viability_min(),
        )]
    }

    /// Checks the rule; the error names what to change.
    pub fn check(&self) -> Result<()> {
        let bad = |reason: String| Err(TwinError::config("alarm rule", reason));
        if self.lower.is_none() && self.upper.is_none() {
            return bad(format!("{self}: give a lower or an upper limit"));
        }
        if [self.lower, self.upper]
            .iter()
            .flatten()
            .any(|v| !v.is_finite())
        {
            return bad(format!("{self}: limits must be finite numbers"));
        }
        if let (Some(l), Some(u)) = (self.lower, self.upper)
            && l >= u
        {
            return bad(format!("{self}: the lower limit must be below the upper"));
        }
        if self.lead_days == 0 {
            return bad(format!("{self}: lead_days must be at least 1"));
        }
        if !(self.probability > 0.0 && self.probability <= 1.0) {
            return bad(format!(
                "{self}: probability {} must be in (0, 1]",
                self.probability
            ));
        }
        Ok(())
    }
}

fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Warning => "warning",
        _ => "critical",
    }
}

impl fmt::Display for AlarmRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.variable;
        match (self.lower, self.upper) {
            (Some(l), Some(u)) => write!(f, "{v} outside [{l}, {u}] {}", v.unit())?,
            (Some(l), None) => write!(f, "{v} < {l} {}", v.unit())?,
            (None, Some(u)) => write!(f, "{v} > {u} {}", v.unit())?,
            (None, None) => write!(f, "{v} (no limit)")?,
        }
        write!(
            f,
            " within {} day{} (p ≥ {:.2}, {})",
            self.lead_days,
            if self.lead_days == 1 { "" } else { "s" },
            self.probability,
            severity_name(self.severity)
        )
    }
}

/// Which limit of a rule an alarm concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Side {
    /// Below the lower limit.
    Below,
    /// Above the upper limit.
    Above,
}

/// The active alarms and the rules: each (rule, side) is raised once when its condition
/// appears and cleared once when it goes.
#[derive(Debug, Clone, Default)]
pub struct AlarmTracker {
    rules: Vec<AlarmRule>,
    /// Active alarms by (rule index, side), with the message they were raised with.
    active: BTreeMap<(usize, Side), String>,
}

/// The value of `variable` in a state.
fn value_of(variable: Variable, s: &SpeciesArray<f64>) -> f64 {
    match variable {
        Variable::Species(sp) => s[sp.index()],
        Variable::Derived(d) => d.compute(s),
    }
}

impl AlarmTracker {
    /// A tracker over `rules` with nothing active.
    pub fn new(rules: Vec<AlarmRule>) -> Self {
        Self {
            rules,
            active: BTreeMap::new(),
        }
    }

    /// The rules.
    pub fn rules(&self) -> &[AlarmRule] {
        &self.rules
    }

    /// Number of active alarms.
    pub fn active(&self) -> usize {
        self.active.len()
    }

    /// Evaluates every rule on a forecast and returns the alarm records to write: one
    /// `raised` for each condition that appeared, one `cleared` for each that went. The
    /// probabilities come from the latent state paths of a Monte-Carlo forecast, or from
    /// 256 seeded draws of each day of a moment-matched one
    /// ([`Forecast::latent_draws`]). A forecast with neither changes nothing.
    pub fn evaluate(&mut self, forecast: &Forecast) -> Vec<Alarm> {
        let paths = forecast.latent_draws(ALARM_DRAWS, ALARM_SEED ^ u64::from(forecast.start_day));
        if paths.is_empty() {
            return Vec::new();
        }
        let n = paths.len() as f64;
        let mut out = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let lead = (rule.lead_days as usize).min(forecast.horizon());
            for (side, limit) in [(Side::Below, rule.lower), (Side::Above, rule.upper)] {
                let Some(limit) = limit else { continue };
                // first forecast day on which the limit is crossed with enough probability
                let hit = (0..lead).find_map(|h| {
                    let mut values: Vec<f64> = paths
                        .iter()
                        .filter_map(|p| p.get(h).map(|s| value_of(rule.variable, s)))
                        .collect();
                    let crossing = values
                        .iter()
                        .filter(|&&v| match side {
                            Side::Below => v < limit,
                            Side::Above => v > limit,
                        })
                        .count() as f64
                        / n;
                    (crossing >= rule.probability).then(|| {
                        values.sort_by(f64::total_cmp);
                        let median = values.get(values.len() / 2).copied().unwrap_or(limit);
                        (forecast.start_day + 1 + h as CultureDay, crossing, median)
                    })
                });
                let key = (i, side);
                match (hit, self.active.contains_key(&key)) {
                    (Some((day, p, median)), false) => {
                        let message = format!(
                            "{} forecast {} {limit} {} on day {day} with probability {p:.2} \
                             (rule: {rule})",
                            rule.variable,
                            if side == Side::Below {
                                "below"
                            } else {
                                "above"
                            },
                            rule.variable.unit()
                        );
                        self.active.insert(key, message.clone());
                        out.push(Alarm {
                            severity: rule.severity,
                            state: AlarmState::Raised,
                            species: Some(rule.variable.name().to_string()),
                            value: Some(median),
                            threshold: Some(limit),
                            predicted_day: Some(day),
                            message,
                        });
                    }
                    (None, true) => {
                        self.active.remove(&key);
                        out.push(Alarm {
                            severity: rule.severity,
                            state: AlarmState::Cleared,
                            species: Some(rule.variable.name().to_string()),
                            value: None,
                            threshold: Some(limit),
                            predicted_day: None,
                            message: format!(
                                "{} no longer forecast {} {limit} {} within {} days (rule: {rule})",
                                rule.variable,
                                if side == Side::Below {
                                    "below"
                                } else {
                                    "above"
                                },
                                rule.variable.unit(),
                                rule.lead_days
                            ),
                        });
                    }
                    _ => {}
                }
            }
        }
        out
    }

    /// Replays an alarm record read back from the audit log (resume): a raised alarm of a
    /// rule becomes active again, a cleared one inactive.
    pub(crate) fn replay(&mut self, alarm: &Alarm) {
        let key = self.rules.iter().enumerate().find_map(|(i, r)| {
            let name_ok = alarm.species.as_deref() == Some(r.variable.name());
            let bits = |v: Option<f64>| v.map(f64::to_bits);
            let side = if alarm.threshold.is_some() && bits(alarm.threshold) == bits(r.lower) {
                Some(Side::Below)
            } else if alarm.threshold.is_some() && bits(alarm.threshold) == bits(r.upper) {
                Some(Side::Above)
            } else {
                None
            };
            side.filter(|_| name_ok).map(|s| (i, s))
        });
        if let Some(key) = key {
            match alarm.state {
                AlarmState::Raised => {
                    self.active.insert(key, alarm.message.clone());
                }
                _ => {
                    self.active.remove(&key);
                }
            }
        }
    }
}
