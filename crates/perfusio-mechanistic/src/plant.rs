//! Plant files: a cell line named by a preset clone plus kinetic-parameter overrides.
//!
//! Wherever the command line takes `--truth`, `--prior` or `--params`, a plant is named either
//! by a clone (`CloneX`, `CloneY`) or by a TOML file with the clone as base and any numeric
//! [`KineticParams`] field (or `consumes_lactate`) as an override:
//!
//! ```toml
//! clone = "CloneY"        # the base preset (required)
//! mu_max = 0.046          # 1/h, overrides the preset
//! beta_p = 2.0e-9         # mg/cell/h
//! ```
//!
//! Unknown fields and values outside a parameter's plausible range
//! ([`KineticParams::range`]) are errors that name them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{MechError, Result};
use crate::params::{CloneKind, KineticParams};

/// A named plant: the base clone, its overrides and the resulting parameters.
///
/// ```
/// use perfusio_mechanistic::{CloneKind, PlantSpec};
/// let p = PlantSpec::from_toml_str("clone = \"CloneY\"\nmu_max = 0.046").unwrap();
/// assert_eq!(p.clone, CloneKind::CloneY);
/// assert!((p.params.mu_max - 0.046).abs() < 1e-15);
/// assert!(!p.params.consumes_lactate);
///
/// let e = PlantSpec::from_toml_str("clone = \"CloneX\"\nmumax = 1").unwrap_err();
/// assert!(e.to_string().contains("mumax"), "{e}");
/// let e = PlantSpec::from_toml_str("clone = \"CloneX\"\nk_glc = -1").unwrap_err();
/// assert!(e.to_string().contains("k_glc"), "{e}");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlantSpec {
    /// Base preset.
    pub clone: CloneKind,
    /// Overridden numeric parameters by name (in the file's order of names, sorted).
    pub overrides: BTreeMap<String, f64>,
    /// `consumes_lactate` when the file overrides it.
    pub consumes_lactate: Option<bool>,
    /// The resulting parameters.
    pub params: KineticParams,
    /// Where the plant came from (`"CloneX"` or the file path), for reports.
    pub source: String,
}

impl PlantSpec {
    /// The unmodified preset of `clone`.
    pub fn preset(clone: CloneKind) -> Self {
        Self {
            clone,
            overrides: BTreeMap::new(),
            consumes_lactate: None,
            params: KineticParams::for_clone(clone),
            source: clone.name().to_string(),
        }
    }

    /// Parses a plant file's TOML text.
    pub fn from_toml_str(text: &str) -> Result<Self> {
        Self::parse(text, "plant file")
    }

    fn parse(text: &str, source: &str) -> Result<Self> {
        let bad = |message: String| MechError::PlantFile {
            origin: source.to_string(),
            message,
        };
        let table: toml::Table = toml::from_str(text).map_err(|e| bad(e.message().to_string()))?;
        let clone = match table.get("clone") {
            Some(toml::Value::String(s)) => {
                s.parse::<CloneKind>().map_err(|e| bad(e.to_string()))?
            }
            Some(other) => return Err(bad(format!("clone must be a string, got {other}"))),
            None => {
                return Err(bad(
                    "missing `clone = \"CloneX\"` or `clone = \"CloneY\"` (the base preset)".into(),
                ));
            }
        };
        let mut spec = Self::preset(clone);
        spec.source = source.to_string();
        for (key, value) in &table {
            match key.as_str() {
                "clone" => {}
                "consumes_lactate" => {
                    let b = value.as_bool().ok_or_else(|| {
                        bad(format!(
                            "consumes_lactate must be true or false, got {value}"
                        ))
                    })?;
                    spec.params.consumes_lactate = b;
                    spec.consumes_lactate = Some(b);
                }
                name => {
                    let v = match value {
                        toml::Value::Float(f) => *f,
                        toml::Value::Integer(i) => *i as f64,
                        other => {
                            return Err(bad(format!("{name} must be a number, got {other}")));
                        }
                    };
                    spec.params.set(name, v).map_err(|e| bad(e.to_string()))?;
                    spec.overrides.insert(name.to_string(), v);
                }
            }
        }
        spec.params.check().map_err(|e| bad(e.to_string()))?;
        Ok(spec)
    }

    /// Resolves a command-line plant argument: a clone name (`CloneX`, `y`, …) or the path
    /// of a plant file.
    pub fn from_arg(arg: &str) -> Result<Self> {
        if let Ok(clone) = arg.parse::<CloneKind>() {
            return Ok(Self::preset(clone));
        }
        let path = Path::new(arg);
        let text = std::fs::read_to_string(path).map_err(|e| MechError::PlantFile {
            origin: arg.to_string(),
            message: format!(
                "not a clone name (CloneX, CloneY) and not a readable plant file: {e}"
            ),
        })?;
        Self::parse(&text, arg)
    }

    /// TOML text of this plant (the base clone and every override).
    pub fn to_toml_string(&self) -> String {
        let mut out = format!("clone = \"{}\"\n", self.clone.name());
        if let Some(b) = self.consumes_lactate {
            out.push_str(&format!("consumes_lactate = {b}\n"));
        }
        for (k, v) in &self.overrides {
            out.push_str(&format!("{k} = {v:e}\n"));
        }
        out
    }
}

impl fmt::Display for PlantSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.overrides.is_empty() && self.consumes_lactate.is_none() {
            write!(f, "{}", self.clone)
        } else {
            write!(f, "{} ({}", self.clone, self.source)?;
            for (k, v) in &self.overrides {
                write!(f, ", {k} = {v}")?;
            }
            write!(f, ")")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply_and_round_trip() {
        let p = PlantSpec::from_toml_str(
            "clone = \"x\"\nmu_max = 0.05\nbeta_p = 2e-9\nconsumes_lactate = false\nt_ref = 36",
        )
        .unwrap();
        assert_eq!(p.clone, CloneKind::CloneX);
        assert!(!p.params.consumes_lactate);
        assert!((p.params.beta_p - 2e-9).abs() < 1e-24);
        assert!((p.params.t_ref - 36.0).abs() < 1e-12);
        let back = PlantSpec::from_toml_str(&p.to_toml_string()).unwrap();
        assert_eq!(back.params, p.params);
        assert_eq!(back.overrides, p.overrides);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("mu_max = 0.1", "missing `clone"),
            ("clone = \"CloneZ\"", "valid clones"),
            ("clone = \"CloneX\"\nspeed = 3", "speed"),
            ("clone = \"CloneX\"\nmu_max = 9.0", "mu_max"),
            ("clone = \"CloneX\"\nk_glc = 0", "k_glc"),
            ("clone = \"CloneX\"\nt_ref = 50", "t_ref"),
            (
                "clone = \"CloneX\"\nmu_max = \"fast\"",
                "mu_max must be a number",
            ),
            (
                "clone = \"CloneX\"\nconsumes_lactate = 1",
                "consumes_lactate",
            ),
            ("clone = ", "plant file"),
        ];
        for (text, want) in cases {
            let e = PlantSpec::from_toml_str(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn arg_resolves_clone_names_and_files() {
        assert_eq!(
            PlantSpec::from_arg("CloneY").unwrap().clone,
            CloneKind::CloneY
        );
        let dir = std::env::temp_dir().join(format!("perfusio-plant-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("fast.toml");
        std::fs::write(&f, "clone = \"CloneY\"\nmu_max = 0.046\n").unwrap();
        let p = PlantSpec::from_arg(f.to_str().unwrap()).unwrap();
        assert!((p.params.mu_max - 0.046).abs() < 1e-15);
        assert!(p.to_string().contains("mu_max = 0.046"), "{p}");
        let e = PlantSpec::from_arg(dir.join("missing.toml").to_str().unwrap()).unwrap_err();
        assert!(e.to_string().contains("not a clone name"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
