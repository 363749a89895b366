//! The species registry: the nine modelled species in canonical order, the two derived
//! variables (VCV and mean cell diameter), their units, bounds and CSV aliases.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::CoreError;

/// Number of modelled species (the state dimension of the plant model).
pub const N_SPECIES: usize = 9;

/// Number of derived variables ([`Derived::VCV`] and [`Derived::Diam`]).
pub const N_DERIVED: usize = 2;

/// A value per modelled species, in canonical order (see [`Species::ALL`]).
pub type SpeciesArray<T> = [T; N_SPECIES];

/// Closed interval `[lower, upper]` of physically plausible values of a variable.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bounds {
    /// Smallest plausible value (inclusive).
    pub lower: f64,
    /// Largest plausible value (inclusive).
    pub upper: f64,
}

impl Bounds {
    /// Creates bounds; `lower` must not exceed `upper` (checked by [`Bounds::check`]).
    pub const fn new(lower: f64, upper: f64) -> Self {
        Self { lower, upper }
    }

    /// `true` when `value` is finite and inside the closed interval.
    pub fn contains(&self, value: f64) -> bool {
        value.is_finite() && value >= self.lower && value <= self.upper
    }

    /// Width `upper - lower`.
    pub fn width(&self) -> f64 {
        self.upper - self.lower
    }

    /// Checks that both ends are finite and ordered.
    pub fn check(&self, what: &str) -> Result<(), CoreError> {
        if !(self.lower.is_finite() && self.upper.is_finite()) || self.lower > self.upper {
            return Err(CoreError::InvalidBounds {
                what: what.to_string(),
                lower: self.lower,
                upper: self.upper,
            });
        }
        Ok(())
    }
}

/// One of the nine modelled species, in the canonical order of the plant model.
///
/// ```
/// use perfusio_core::Species;
/// let s: Species = "viability".parse().unwrap();
/// assert_eq!(s, Species::Via);
/// assert_eq!(s.index(), 1);
/// assert_eq!(s.unit(), "%");
/// assert_eq!("Titre".parse::<Species>().unwrap(), Species::Titer);
/// assert!("sugar".parse::<Species>().unwrap_err().to_string().contains("VCD"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Species {
    /// Viable cell density, 1e6 cells/mL.
    VCD,
    /// Viability, %.
    Via,
    /// Glucose, g/L.
    Glc,
    /// Glutamine, mmol/L.
    Gln,
    /// Glutamate, mmol/L.
    Glu,
    /// Lactate, mmol/L.
    Lac,
    /// Ammonium, mmol/L.
    Amm,
    /// Pyruvate, mmol/L.
    Pyr,
    /// Monoclonal-antibody titer, mg/L.
    Titer,
}

struct SpeciesInfo {
    name: &'static str,
    unit: &'static str,
    description: &'static str,
    bounds: Bounds,
    aliases: &'static [&'static str],
}

const SPECIES_INFO: [SpeciesInfo; N_SPECIES] = [
    SpeciesInfo {
        name: "VCD",
        unit: "1e6 cells/mL",
        description: "viable cell density",
        bounds: Bounds::new(0.0, 120.0),
        aliases: &["vcd", "viable_cell_density", "xv"],
    },
    SpeciesInfo {
        name: "Via",
        unit: "%",
        description: "viability",
        bounds: Bounds::new(0.0, 100.0),
        aliases: &["viability", "via"],
    },
    SpeciesInfo {
        name: "Glc",
        unit: "g/L",
        description: "glucose",
        bounds: Bounds::new(0.0, 20.0),
        aliases: &["glucose", "glc"],
    },
    SpeciesInfo {
        name: "Gln",
        unit: "mmol/L",
        description: "glutamine",
        bounds: Bounds::new(0.0, 10.0),
        aliases: &["glutamine", "gln"],
    },
    SpeciesInfo {
        name: "Glu",
        unit: "mmol/L",
        description: "glutamate",
        bounds: Bounds::new(0.0, 8.0),
        aliases: &["glutamate", "glu"],
    },
    SpeciesInfo {
        name: "Lac",
        unit: "mmol/L",
        description: "lactate",
        // 100, not 40: a cell line that never switches to lactate consumption (clone Y of
        // docs/plant-model.md) settles at 50–55 mmol/L at ordinary operating points, so a
        // 40 mmol/L bound would reject real readings and blind the twin to lactate.
        bounds: Bounds::new(0.0, 100.0),
        aliases: &["lactate", "lac"],
    },
    SpeciesInfo {
        name: "Amm",
        unit: "mmol/L",
        description: "ammonium",
        bounds: Bounds::new(0.0, 25.0),
        aliases: &["ammonium", "ammonia", "amm", "nh4"],
    },
    SpeciesInfo {
        name: "Pyr",
        unit: "mmol/L",
        description: "pyruvate",
        bounds: Bounds::new(0.0, 10.0),
        aliases: &["pyruvate", "pyr"],
    },
    SpeciesInfo {
        name: "Titer",
        unit: "mg/L",
        description: "monoclonal-antibody titer",
        bounds: Bounds::new(0.0, 5000.0),
        aliases: &["titer", "titre", "mab", "product"],
    },
];

impl Species {
    /// All species in canonical order; `Species::ALL[s.index()] == s`.
    pub const ALL: [Species; N_SPECIES] = [
        Species::VCD,
        Species::Via,
        Species::Glc,
        Species::Gln,
        Species::Glu,
        Species::Lac,
        Species::Amm,
        Species::Pyr,
        Species::Titer,
    ];

    /// Position in the canonical order (0..9).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The species at canonical position `index`, if any.
    pub fn from_index(index: usize) -> Option<Species> {
        Self::ALL.get(index).copied()
    }

    fn info(self) -> &'static SpeciesInfo {
        &SPECIES_INFO[self.index()]
    }

    /// The plausible range of every species, in canonical order: the registry's table, which
    /// is also what [`DEFAULT_AMBR250_DESIGN_SPACE`](crate::DEFAULT_AMBR250_DESIGN_SPACE)
    /// validates against.
    pub const fn all_bounds() -> SpeciesArray<Bounds> {
        let mut out = [Bounds::new(0.0, 0.0); N_SPECIES];
        let mut i = 0;
        while i < N_SPECIES {
            out[i] = SPECIES_INFO[i].bounds;
            i += 1;
        }
        out
    }

    /// Canonical short name (`"VCD"`, `"Via"`, …), as used in CSV headers and OPC UA browse names.
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// Unit of measurement.
    pub fn unit(self) -> &'static str {
        self.info().unit
    }

    /// Human-readable description.
    pub fn description(self) -> &'static str {
        self.info().description
    }

    /// Physically plausible range used to validate measurements.
    pub const fn bounds(self) -> Bounds {
        SPECIES_INFO[self.index()].bounds
    }

    /// Accepted lower-case aliases (in addition to the canonical name).
    pub fn aliases(self) -> &'static [&'static str] {
        self.info().aliases
    }

    /// Canonical names of all species, for error messages.
    pub fn valid_names() -> String {
        Self::ALL
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Case-insensitive lookup by canonical name or alias; `None` when unknown.
    pub fn lookup(name: &str) -> Option<Species> {
        let key = normalise_name(name);
        Self::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(&key) || s.aliases().iter().any(|a| *a == key))
    }
}

/// The key every name lookup of the registry compares: trimmed, lower-cased, with spaces
/// and dashes replaced by underscores (`" Bleed-Rate "` → `"bleed_rate"`). Connectors use
/// it for their own names (day columns, timestamps) so that they match the same way.
///
/// ```
/// assert_eq!(perfusio_core::normalise_name(" Culture Day "), "culture_day");
/// assert_eq!(perfusio_core::normalise_name("Bleed-Rate"), "bleed_rate");
/// ```
pub fn normalise_name(name: &str) -> String {
    name.trim()
        .chars()
        .map(|c| match c {
            ' ' | '-' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

impl fmt::Display for Species {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Species {
    type Err = CoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Species::lookup(s).ok_or_else(|| CoreError::UnknownSpecies {
            name: s.to_string(),
            valid: Species::valid_names(),
        })
    }
}

/// Variables derived from the species state (not states of the ODE themselves).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Derived {
    /// Viable cell volume, % of culture volume.
    VCV,
    /// Mean cell diameter, µm.
    Diam,
}

impl Derived {
    /// Both derived variables, in reporting order; `Derived::ALL[d.index()] == d`.
    pub const ALL: [Derived; N_DERIVED] = [Derived::VCV, Derived::Diam];

    /// Position in the reporting order (0 for VCV, 1 for Diam): the index into
    /// [`Sample::derived`](crate::Sample::derived) and every `[T; N_DERIVED]`.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The derived variable at position `index`, if any.
    pub fn from_index(index: usize) -> Option<Derived> {
        Self::ALL.get(index).copied()
    }

    /// The plausible range of both derived variables, in reporting order.
    pub const fn all_bounds() -> [Bounds; N_DERIVED] {
        [Derived::VCV.bounds(), Derived::Diam.bounds()]
    }

    /// Canonical name.
    pub fn name(self) -> &'static str {
        match self {
            Derived::VCV => "VCV",
            Derived::Diam => "Diam",
        }
    }

    /// Unit of measurement.
    pub fn unit(self) -> &'static str {
        match self {
            Derived::VCV => "%",
            Derived::Diam => "µm",
        }
    }

    /// Human-readable description.
    pub fn description(self) -> &'static str {
        match self {
            Derived::VCV => "viable cell volume",
            Derived::Diam => "mean cell diameter",
        }
    }

    /// Physically plausible range used to validate measurements.
    pub const fn bounds(self) -> Bounds {
        match self {
            Derived::VCV => Bounds::new(0.0, 60.0),
            Derived::Diam => Bounds::new(14.0, 26.0),
        }
    }

    /// Case-insensitive lookup by name or alias.
    pub fn lookup(name: &str) -> Option<Derived> {
        match normalise_name(name).as_str() {
            "vcv" | "viable_cell_volume" => Some(Derived::VCV),
            "diam" | "diameter" | "cell_diameter" | "mean_cell_diameter" => Some(Derived::Diam),
            _ => None,
        }
    }

    /// Computes the derived value from a species state.
    pub fn compute(self, state: &SpeciesArray<f64>) -> f64 {
        let via = state[Species::Via.index()];
        match self {
            Derived::VCV => viable_cell_volume_percent(state[Species::VCD.index()], via),
            Derived::Diam => mean_cell_diameter_um(via),
        }
    }
}

impl fmt::Display for Derived {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Mean cell diameter in µm: `20.5 + 4.0 * (1 - Via/100)`, with viability in %.
///
/// ```
/// # use perfusio_core::mean_cell_diameter_um;
/// assert!((mean_cell_diameter_um(100.0) - 20.5).abs() < 1e-12);
/// assert!((mean_cell_diameter_um(90.0) - 20.9).abs() < 1e-12);
/// ```
pub fn mean_cell_diameter_um(viability_percent: f64) -> f64 {
    20.5 + 4.0 * (1.0 - viability_percent / 100.0)
}

/// Viable cell volume in % of culture volume:
/// `VCD[1e6/mL] * 1e6 * (π/6) * Diam[µm]^3 * 1e-12 * 100`.
///
/// ```
/// # use perfusio_core::viable_cell_volume_percent;
/// // about 0.45 % per 1e6 cells/mL at 20.5 µm (100 % viability)
/// let v = viable_cell_volume_percent(1.0, 100.0);
/// assert!((v - 0.4511).abs() < 1e-3);
/// ```
pub fn viable_cell_volume_percent(vcd: f64, viability_percent: f64) -> f64 {
    let d = mean_cell_diameter_um(viability_percent);
    vcd * 1e6 * (std::f64::consts::PI / 6.0) * d.powi(3) * 1e-12 * 100.0
}

/// Any measured variable: one of the nine species or a derived variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Variable {
    /// A modelled species.
    Species(Species),
    /// A derived variable (VCV, Diam).
    Derived(Derived),
}

impl Variable {
    /// Canonical name.
    pub fn name(self) -> &'static str {
        match self {
            Variable::Species(s) => s.name(),
            Variable::Derived(d) => d.name(),
        }
    }

    /// Unit of measurement.
    pub fn unit(self) -> &'static str {
        match self {
            Variable::Species(s) => s.unit(),
            Variable::Derived(d) => d.unit(),
        }
    }

    /// Physically plausible range.
    pub fn bounds(self) -> Bounds {
        match self {
            Variable::Species(s) => s.bounds(),
            Variable::Derived(d) => d.bounds(),
        }
    }

    /// Case-insensitive lookup of species or derived names and aliases.
    pub fn lookup(name: &str) -> Option<Variable> {
        Species::lookup(name)
            .map(Variable::Species)
            .or_else(|| Derived::lookup(name).map(Variable::Derived))
    }
}

impl fmt::Display for Variable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Variable {
    type Err = CoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Variable::lookup(s).ok_or_else(|| CoreError::UnknownSpecies {
            name: s.to_string(),
            valid: format!("{}, VCV, Diam", Species::valid_names()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn canonical_order_and_index_round_trip() {
        let names: Vec<_> = Species::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(
            names,
            [
                "VCD", "Via", "Glc", "Gln", "Glu", "Lac", "Amm", "Pyr", "Titer"
            ]
        );
        for (i, s) in Species::ALL.iter().enumerate() {
            assert_eq!(s.index(), i);
            assert_eq!(Species::from_index(i), Some(*s));
        }
        assert_eq!(Species::from_index(9), None);
    }

    #[test]
    fn aliases_are_case_insensitive() {
        let cases = [
            ("viability", Species::Via),
            ("VIABILITY", Species::Via),
            ("glucose", Species::Glc),
            ("Glutamine", Species::Gln),
            ("glutamate", Species::Glu),
            ("Lactate", Species::Lac),
            ("ammonium", Species::Amm),
            ("ammonia", Species::Amm),
            ("pyruvate", Species::Pyr),
            ("titer", Species::Titer),
            ("titre", Species::Titer),
            ("vcd", Species::VCD),
            ("VCD", Species::VCD),
            (" glc ", Species::Glc),
        ];
        for (name, expected) in cases {
            assert_eq!(name.parse::<Species>().unwrap(), expected, "{name}");
        }
    }

    #[test]
    fn unknown_name_lists_valid_names() {
        let err = "sugar".parse::<Species>().unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown species 'sugar'; valid names: VCD, Via, Glc, Gln, Glu, Lac, Amm, Pyr, Titer \
             (common aliases such as 'viability' or 'glucose' are accepted too)"
        );
    }

    #[test]
    fn derived_index_round_trips() {
        for (i, d) in Derived::ALL.iter().enumerate() {
            assert_eq!(d.index(), i);
            assert_eq!(Derived::from_index(i), Some(*d));
        }
        assert_eq!(Derived::from_index(N_DERIVED), None);
    }

    #[test]
    fn derived_variables_match_formulas() {
        let mut state = [0.0; N_SPECIES];
        state[Species::VCD.index()] = 10.0;
        state[Species::Via.index()] = 90.0;
        let d = 20.5 + 4.0 * 0.1;
        assert_relative_eq!(Derived::Diam.compute(&state), d, max_relative = 1e-14);
        let vcv = 10.0 * 1e6 * std::f64::consts::PI / 6.0 * d * d * d * 1e-12 * 100.0;
        assert_relative_eq!(Derived::VCV.compute(&state), vcv, max_relative = 1e-14);
        // 30 % VCV target is about 66e6 cells/mL at full viability
        assert_relative_eq!(
            viable_cell_volume_percent(66.5, 100.0),
            30.0,
            max_relative = 0.01
        );
        assert_eq!(
            "diameter".parse::<Variable>().unwrap(),
            Variable::Derived(Derived::Diam)
        );
        assert_eq!(
            "vcv".parse::<Variable>().unwrap(),
            Variable::Derived(Derived::VCV)
        );
    }

    #[test]
    fn bounds_match_plant_model() {
        let expected = [120.0, 100.0, 20.0, 10.0, 8.0, 100.0, 25.0, 10.0, 5000.0];
        for (s, hi) in Species::ALL.iter().zip(expected) {
            assert_relative_eq!(s.bounds().upper, hi);
            assert_relative_eq!(s.bounds().lower, 0.0);
        }
        assert_relative_eq!(Derived::Diam.bounds().lower, 14.0);
        assert_eq!(
            Species::all_bounds().map(|b| b.upper.to_bits()),
            expected.map(f64::to_bits)
        );
        assert_eq!(Derived::all_bounds(), Derived::ALL.map(Derived::bounds));
        assert!(Bounds::new(1.0, 0.0).check("x").is_err());
        assert!(Bounds::new(0.0, f64::NAN).check("x").is_err());
    }
}
