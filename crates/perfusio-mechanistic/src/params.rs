//! Kinetic parameters and cell-line presets of the plant model (`docs/plant-model.md`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::MechError;

/// The two synthetic cell lines of the plant model. Clone Y is identical to clone X except
/// that it never consumes lactate.
///
/// ```
/// use perfusio_mechanistic::CloneKind;
/// assert_eq!("clonex".parse::<CloneKind>().unwrap(), CloneKind::CloneX);
/// assert_eq!("Y".parse::<CloneKind>().unwrap(), CloneKind::CloneY);
/// assert_eq!(CloneKind::CloneY.to_string(), "CloneY");
/// assert!("Z".parse::<CloneKind>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum CloneKind {
    /// Switches to lactate consumption when glucose falls below `glc_switch`.
    #[default]
    CloneX,
    /// Never consumes lactate.
    CloneY,
}

impl CloneKind {
    /// Canonical name (`"CloneX"` / `"CloneY"`).
    pub fn name(self) -> &'static str {
        match self {
            CloneKind::CloneX => "CloneX",
            CloneKind::CloneY => "CloneY",
        }
    }
}

impl fmt::Display for CloneKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CloneKind {
    type Err = MechError;

    /// Case-insensitive: `CloneX`, `clone_x`, `clone-x`, `x` (and the same for Y).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let key: String = s
            .trim()
            .chars()
            .filter(|c| !matches!(c, '_' | '-' | ' '))
            .map(|c| c.to_ascii_lowercase())
            .collect();
        match key.as_str() {
            "clonex" | "x" => Ok(CloneKind::CloneX),
            "cloney" | "y" => Ok(CloneKind::CloneY),
            _ => Err(MechError::arg(
                "clone",
                s,
                "valid clones: CloneX, CloneY (case-insensitive; 'x' and 'y' also work)",
            )),
        }
    }
}

/// Kinetic parameters of the plant model. Rates are per hour, cell-specific rates per cell;
/// `X = VCD · 1e9` cells/L turns them into volumetric rates.
///
/// The defaults are the synthetic values of `docs/plant-model.md`; the control-effect constants
/// (temperature, agitation) and the fixed medium glutamine are parameters too, so that the
/// skeleton can be recalibrated without code changes.
///
/// ```
/// use perfusio_mechanistic::{CloneKind, KineticParams};
/// let x = KineticParams::clone_x();
/// assert!(x.consumes_lactate);
/// assert!((x.mu_max - 0.040).abs() < 1e-15);
/// let y = KineticParams::for_clone(CloneKind::CloneY);
/// assert!(!y.consumes_lactate);
/// assert!(x.check().is_ok());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KineticParams {
    /// Maximum specific growth rate at 37 °C, 1/h.
    pub mu_max: f64,
    /// Monod constant of glucose, g/L.
    pub k_glc: f64,
    /// Monod constant of glutamine, mmol/L.
    pub k_gln: f64,
    /// Maximum specific glucose uptake, g/cell/h.
    pub q_glc_max: f64,
    /// Glucose maintenance uptake, g/cell/h.
    pub m_glc: f64,
    /// Growth-independent fraction of glucose uptake (Pirt offset), dimensionless.
    pub glc_uptake_offset: f64,
    /// Lactate yield on glucose, mmol/mmol.
    pub y_lac_glc: f64,
    /// Glucose concentration below which clone X consumes lactate, g/L.
    pub glc_switch: f64,
    /// Specific lactate consumption rate, mmol/cell/h.
    pub lac_consump_rate: f64,
    /// Half-saturation lactate concentration of consumption, mmol/L (correction (C)).
    pub k_lac: f64,
    /// Whether the cell line consumes lactate below `glc_switch` (clone X: yes).
    pub consumes_lactate: bool,
    /// Maximum specific glutamine uptake, mmol/cell/h.
    pub q_gln_max: f64,
    /// Growth-independent fraction of glutamine uptake, dimensionless.
    pub gln_uptake_offset: f64,
    /// Glutamate released per glutamine consumed, mmol/mmol.
    pub glu_yield_gln: f64,
    /// Base death rate at 37 °C, 1/h.
    pub k_d: f64,
    /// Temperature coefficient of the death rate, 1/h/K.
    pub k_t: f64,
    /// Reference temperature, °C.
    pub t_ref: f64,
    /// Loss of viability per unit death rate and % non-viable, dimensionless.
    pub via_loss_coeff: f64,
    /// Growth-associated product yield (Luedeking–Piret α), mg/cell.
    pub alpha_p: f64,
    /// Non-growth-associated specific productivity at `t_ref` (β), mg/cell/h.
    pub beta_p: f64,
    /// Ammonium released per glutamine consumed, mmol/mmol.
    pub alpha_amm: f64,
    /// Rate constant of ammonium removal by pyruvate, L/mmol/h.
    pub k_pyr: f64,
    /// Glutamine concentration of the perfusion medium, mmol/L.
    pub gln_feed: f64,
    /// Fractional loss of `mu_max` per K below `t_ref` (control effect (E)).
    pub mu_temp_coeff: f64,
    /// Fractional gain of `beta_p` per K below `t_ref` (control effect (E)).
    pub beta_temp_coeff: f64,
    /// Agitation below which oxygen transfer limits growth, rpm (E).
    pub o2_limit_rpm: f64,
    /// Agitation above which shear kills cells, rpm (E).
    pub shear_limit_rpm: f64,
    /// Shear death rate per 100 rpm above `shear_limit_rpm`, 1/h (E).
    pub shear_death_per_100rpm: f64,
}

impl KineticParams {
    /// Clone X: the parameter table of `docs/plant-model.md`.
    pub const fn clone_x() -> Self {
        Self {
            mu_max: 0.040,
            k_glc: 0.08,
            k_gln: 0.50,
            q_glc_max: 5.5e-11,
            m_glc: 2.0e-12,
            glc_uptake_offset: 0.1,
            y_lac_glc: 1.8,
            glc_switch: 2.0,
            lac_consump_rate: 3.0e-10,
            k_lac: 0.5,
            consumes_lactate: true,
            q_gln_max: 5.0e-11,
            gln_uptake_offset: 0.05,
            glu_yield_gln: 0.05,
            k_d: 0.003,
            k_t: 0.001,
            t_ref: 37.0,
            via_loss_coeff: 0.5,
            alpha_p: 2.0e-9,
            beta_p: 1.8e-9,
            alpha_amm: 0.85,
            k_pyr: 0.05,
            gln_feed: 4.0,
            mu_temp_coeff: 0.10,
            beta_temp_coeff: 0.15,
            o2_limit_rpm: 700.0,
            shear_limit_rpm: 1050.0,
            shear_death_per_100rpm: 0.002,
        }
    }

    /// Clone Y: clone X without lactate consumption.
    pub const fn clone_y() -> Self {
        let mut p = Self::clone_x();
        p.consumes_lactate = false;
        p
    }

    /// The preset of a clone.
    pub const fn for_clone(clone: CloneKind) -> Self {
        match clone {
            CloneKind::CloneX => Self::clone_x(),
            CloneKind::CloneY => Self::clone_y(),
        }
    }

    /// Checks that every parameter is finite and non-negative and that the Monod,
    /// saturation and agitation constants are positive.
    pub fn check(&self) -> Result<(), MechError> {
        for f in &PARAM_FIELDS {
            let v = (f.get)(self);
            if !(v.is_finite() && v >= 0.0) {
                return Err(MechError::arg(f.name, v, "must be finite and non-negative"));
            }
            if f.positive && v <= 0.0 {
                return Err(MechError::arg(f.name, v, "must be positive"));
            }
        }
        Ok(())
    }

    /// Names of every numeric parameter, in declaration order (the names a plant file or a
    /// calibration accepts).
    pub fn field_names() -> impl Iterator<Item = &'static str> {
        PARAM_FIELDS.iter().map(|f| f.name)
    }

    /// The value of the numeric parameter `name` (`None` for an unknown name).
    ///
    /// ```
    /// # use perfusio_mechanistic::KineticParams;
    /// let p = KineticParams::clone_x();
    /// assert_eq!(p.get("mu_max"), Some(0.040));
    /// assert_eq!(p.get("mumax"), None);
    /// ```
    pub fn get(&self, name: &str) -> Option<f64> {
        field(name).map(|f| (f.get)(self))
    }

    /// Sets the numeric parameter `name`, checking it against its plausible range
    /// ([`KineticParams::range`]). Unknown names and values outside the range are errors
    /// that name the parameter.
    pub fn set(&mut self, name: &str, value: f64) -> Result<(), MechError> {
        let f = field(name).ok_or_else(|| MechError::InvalidArgument {
            name: "parameter",
            value: name.to_string(),
            reason: format!(
                "unknown kinetic parameter; valid names: {}",
                Self::field_names().collect::<Vec<_>>().join(", ")
            ),
        })?;
        let (lo, hi) = f.range;
        let ok = value.is_finite() && value >= lo && value <= hi && !(f.positive && value <= 0.0);
        if !ok {
            return Err(MechError::arg(
                f.name,
                value,
                format!(
                    "outside the plausible range {}[{lo:e}, {hi:e}]",
                    if f.positive { "(0 excluded) " } else { "" }
                ),
            ));
        }
        (f.set)(self, value);
        Ok(())
    }

    /// Plausible range `(lo, hi)` of the numeric parameter `name`: what a plant file or a
    /// calibration may set it to. Rate constants may range from 0 to 100× the clone-X
    /// value; temperatures, agitation thresholds and feed concentrations have physical ranges.
    pub fn range(name: &str) -> Option<(f64, f64)> {
        field(name).map(|f| f.range)
    }

    /// Whether the numeric parameter `name` may be zero: its plausible range starts at 0 and
    /// it need not be positive. These are rates and yields of a pathway that a cell line can
    /// lack (a clone that never consumes lactate has `lac_consump_rate` 0), unlike the Monod
    /// and saturation constants, `mu_max` and the agitation threshold, which must stay
    /// positive. `None` for an unknown name.
    ///
    /// ```
    /// use perfusio_mechanistic::KineticParams;
    /// assert_eq!(KineticParams::may_vanish("lac_consump_rate"), Some(true));
    /// assert_eq!(KineticParams::may_vanish("k_glc"), Some(false));   // Monod constant
    /// assert_eq!(KineticParams::may_vanish("t_ref"), Some(false));   // 30 to 40 °C
    /// assert_eq!(KineticParams::may_vanish("kglc"), None);
    /// ```
    pub fn may_vanish(name: &str) -> Option<bool> {
        field(name).map(|f| !f.positive && f.range.0 <= 0.0)
    }

    /// Names of the pathway switches: the boolean fields that turn a pathway of the model
    /// on or off (today `consumes_lactate`, the uptake of lactate below `glc_switch`).
    ///
    /// ```
    /// use perfusio_mechanistic::KineticParams;
    /// assert_eq!(KineticParams::switch_names(), ["consumes_lactate"]);
    /// ```
    pub const fn switch_names() -> &'static [&'static str] {
        &SWITCHES
    }

    /// The value of the pathway switch `name` (`None` for an unknown name).
    ///
    /// ```
    /// use perfusio_mechanistic::KineticParams;
    /// assert_eq!(KineticParams::clone_y().switch("consumes_lactate"), Some(false));
    /// assert_eq!(KineticParams::clone_y().switch("mu_max"), None);
    /// ```
    pub fn switch(&self, name: &str) -> Option<bool> {
        match name {
            "consumes_lactate" => Some(self.consumes_lactate),
            _ => None,
        }
    }

    /// Sets the pathway switch `name`; `false` (and no change) for an unknown name.
    ///
    /// ```
    /// use perfusio_mechanistic::KineticParams;
    /// let mut p = KineticParams::clone_x();
    /// assert!(p.set_switch("consumes_lactate", false));
    /// assert_eq!(p, KineticParams::clone_y());
    /// assert!(!p.set_switch("mu_max", false));
    /// ```
    pub fn set_switch(&mut self, name: &str, on: bool) -> bool {
        match name {
            "consumes_lactate" => {
                self.consumes_lactate = on;
                true
            }
            _ => false,
        }
    }
}

/// The pathway switches ([`KineticParams::switch_names`]).
const SWITCHES: [&str; 1] = ["consumes_lactate"];

/// One numeric kinetic parameter: name, accessors and plausible range.
struct ParamField {
    name: &'static str,
    get: fn(&KineticParams) -> f64,
    set: fn(&mut KineticParams, f64),
    /// Must be strictly positive (Monod and saturation constants, `mu_max`, agitation).
    positive: bool,
    range: (f64, f64),
}

fn field(name: &str) -> Option<&'static ParamField> {
    let key = name.trim();
    PARAM_FIELDS
        .iter()
        .find(|f| f.name.eq_ignore_ascii_case(key))
}

/// Declares [`PARAM_FIELDS`]: `name positive? (lo, hi)` per numeric field.
macro_rules! param_fields {
    ($($name:ident $pos:literal ($lo:expr, $hi:expr)),* $(,)?) => {
        /// Every numeric field of [`KineticParams`], with its plausible range.
        const PARAM_FIELDS: [ParamField; 27] = [$(ParamField {
            name: stringify!($name),
            get: |p| p.$name,
            set: |p, v| p.$name = v,
            positive: $pos,
            range: ($lo, $hi),
        }),*];
    };
}

// Ranges: rate constants and yields from 0 to 100× their clone-X value; physical quantities
// within what a CHO perfusion culture can show.
const X: KineticParams = KineticParams::clone_x();
param_fields! {
    mu_max true (0.0, 100.0 * X.mu_max),
    k_glc true (0.0, 100.0 * X.k_glc),
    k_gln true (0.0, 100.0 * X.k_gln),
    q_glc_max false (0.0, 100.0 * X.q_glc_max),
    m_glc false (0.0, 100.0 * X.m_glc),
    glc_uptake_offset false (0.0, 10.0),
    y_lac_glc false (0.0, 100.0 * X.y_lac_glc),
    glc_switch false (0.0, 20.0),
    lac_consump_rate false (0.0, 100.0 * X.lac_consump_rate),
    k_lac true (0.0, 100.0 * X.k_lac),
    q_gln_max false (0.0, 100.0 * X.q_gln_max),
    gln_uptake_offset false (0.0, 10.0),
    glu_yield_gln false (0.0, 10.0),
    k_d false (0.0, 100.0 * X.k_d),
    k_t false (0.0, 100.0 * X.k_t),
    t_ref false (30.0, 40.0),
    via_loss_coeff false (0.0, 100.0 * X.via_loss_coeff),
    alpha_p false (0.0, 100.0 * X.alpha_p),
    beta_p false (0.0, 100.0 * X.beta_p),
    alpha_amm false (0.0, 10.0),
    k_pyr false (0.0, 100.0 * X.k_pyr),
    gln_feed false (0.0, 20.0),
    mu_temp_coeff false (0.0, 1.0),
    beta_temp_coeff false (0.0, 1.0),
    o2_limit_rpm true (0.0, 3000.0),
    shear_limit_rpm false (0.0, 3000.0),
    shear_death_per_100rpm false (0.0, 100.0 * X.shear_death_per_100rpm),
}

impl Default for KineticParams {
    fn default() -> Self {
        Self::clone_x()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_differ_only_in_lactate_consumption() {
        let mut y = KineticParams::clone_y();
        assert!(!y.consumes_lactate);
        y.consumes_lactate = true;
        assert_eq!(y, KineticParams::clone_x());
    }

    #[test]
    fn serde_round_trip_and_check() {
        let p = KineticParams::clone_x();
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<KineticParams>(&json).unwrap(), p);
        let mut bad = p;
        bad.k_glc = 0.0;
        assert_eq!(
            bad.check().unwrap_err().to_string(),
            "invalid argument k_glc = 0: must be positive"
        );
        bad.k_glc = f64::NAN;
        assert!(bad.check().is_err());
    }

    #[test]
    fn clone_names_parse() {
        for s in ["CloneX", "clonex", "clone_x", "Clone-X", "x", "X"] {
            assert_eq!(s.parse::<CloneKind>().unwrap(), CloneKind::CloneX, "{s}");
        }
        for s in ["CloneY", "cloney", "y"] {
            assert_eq!(s.parse::<CloneKind>().unwrap(), CloneKind::CloneY, "{s}");
        }
        let e = "CHO-K1".parse::<CloneKind>().unwrap_err().to_string();
        assert!(e.contains("valid clones: CloneX, CloneY"), "{e}");
    }
}
