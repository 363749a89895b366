//! [`RunConfig`]: every knob of a self-driving run, with defaults, validation and
//! TOML/JSON serialisation.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::CoreError;

/// Acquisition functions the design policy supports (names as in BoTorch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Acquisition {
    /// Probability of improvement.
    PI,
    /// Expected improvement.
    EI,
    /// Log expected improvement (numerically stable EI); the default.
    #[default]
    LogEI,
    /// Upper confidence bound.
    UCB,
    /// Monte-Carlo (batch) expected improvement.
    QEI,
    /// Monte-Carlo log expected improvement.
    QLogEI,
    /// Monte-Carlo upper confidence bound.
    QUCB,
    /// Expected hypervolume improvement (multi-objective).
    QEHVI,
    /// Noisy expected hypervolume improvement (multi-objective).
    QNEHVI,
    /// ParEGO with random Chebyshev scalarisations (multi-objective).
    QNParEGO,
}

impl Acquisition {
    /// Every supported acquisition.
    pub const ALL: [Acquisition; 10] = [
        Acquisition::PI,
        Acquisition::EI,
        Acquisition::LogEI,
        Acquisition::UCB,
        Acquisition::QEI,
        Acquisition::QLogEI,
        Acquisition::QUCB,
        Acquisition::QEHVI,
        Acquisition::QNEHVI,
        Acquisition::QNParEGO,
    ];

    /// Canonical name (`"LogEI"`, `"qNEHVI"`, …).
    pub fn name(self) -> &'static str {
        match self {
            Acquisition::PI => "PI",
            Acquisition::EI => "EI",
            Acquisition::LogEI => "LogEI",
            Acquisition::UCB => "UCB",
            Acquisition::QEI => "qEI",
            Acquisition::QLogEI => "qLogEI",
            Acquisition::QUCB => "qUCB",
            Acquisition::QEHVI => "qEHVI",
            Acquisition::QNEHVI => "qNEHVI",
            Acquisition::QNParEGO => "qNParEGO",
        }
    }

    /// `true` for the multi-objective acquisitions (qEHVI, qNEHVI, qNParEGO).
    pub fn is_multi_objective(self) -> bool {
        matches!(
            self,
            Acquisition::QEHVI | Acquisition::QNEHVI | Acquisition::QNParEGO
        )
    }

    /// `true` for the Monte-Carlo (`q`-prefixed) acquisitions.
    pub fn is_monte_carlo(self) -> bool {
        self.name().starts_with('q')
    }

    /// Comma-separated list of valid names.
    pub fn valid_names() -> String {
        Self::ALL
            .iter()
            .map(|a| a.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Acquisition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Acquisition {
    type Err = CoreError;

    /// Case-insensitive: `"logei"`, `"LogEI"` and `"LOGEI"` all parse.
    fn from_str(s: &str) -> Result<Self, CoreError> {
        let key = s.trim();
        Self::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(key))
            .ok_or_else(|| CoreError::UnknownAcquisition {
                name: s.to_string(),
                valid: Self::valid_names(),
            })
    }
}

impl Serialize for Acquisition {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Acquisition {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How the twin paces culture days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pacing {
    /// Wait `sampling_interval_hours` of wall time between days (a real reactor).
    RealTime,
    /// Run days back to back (replays, simulations, tests); the default.
    #[default]
    AsFastAsPossible,
}

impl FromStr for Pacing {
    type Err = CoreError;

    fn from_str(s: &str) -> Result<Self, CoreError> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "real_time" | "realtime" => Ok(Pacing::RealTime),
            "as_fast_as_possible" | "fast" => Ok(Pacing::AsFastAsPossible),
            _ => Err(CoreError::UnknownOption {
                what: "pacing",
                name: s.to_string(),
                valid: "real_time, as_fast_as_possible".to_string(),
            }),
        }
    }
}

/// Configuration of a self-driving run.
///
/// Construct with struct update over [`RunConfig::default`] and call
/// [`RunConfig::validate`], or parse TOML/JSON (which validates):
///
/// ```
/// use perfusio_core::{Acquisition, RunConfig};
/// let cfg = RunConfig::from_toml_str("acquisition = \"logei\"\nretrain_every = 2").unwrap();
/// assert_eq!(cfg.acquisition, Acquisition::LogEI);
/// assert_eq!(cfg.retrain_every, 2);
/// assert_eq!(cfg.duration_days, 28);
///
/// let bad = RunConfig::from_toml_str("retrain_every = 0").unwrap_err();
/// assert!(bad.to_string().contains("retrain_every = 0"));
///
/// let cfg = RunConfig { seed: Some(7), allow_write: true, ..RunConfig::default() };
/// cfg.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, try_from = "RunConfigUnchecked")]
pub struct RunConfig {
    /// Identifier of the run (appears in every audit record).
    pub run_id: String,
    /// Length of the culture, days (default 28).
    pub duration_days: u32,
    /// Wall-clock interval between samples when pacing is real time, hours (default 24).
    pub sampling_interval_hours: f64,
    /// Retrain the GP every this many days (default 3; must be ≥ 1).
    pub retrain_every: u32,
    /// Acquisition function of the design policy (default LogEI).
    pub acquisition: Acquisition,
    /// Horizon of the decision objective, days (default 14). It stops at the run's last day
    /// (`duration_days`): a decision on day `t` looks `min(decision_horizon_days,
    /// duration_days − t)` days ahead, at least one. A short horizon is myopic: with a
    /// medium cost, the harvest of the next few days early in a run does not pay for the
    /// medium, and the policy cuts the perfusion that growth later pays for.
    pub decision_horizon_days: u32,
    /// Horizon of the published forecast, days (default 28).
    pub forecast_horizon_days: u32,
    /// Monte-Carlo samples for forecasts and MC acquisitions (default 256).
    pub mc_samples: u32,
    /// Optimiser restarts for the acquisition (default 10).
    pub optimizer_restarts: u32,
    /// Raw (space-filling) candidates scored before the restarts (default 512).
    pub raw_samples: u32,
    /// Master seed; `None` draws one from the OS at start and records it in the audit log.
    pub seed: Option<u64>,
    /// Write recommended setpoints to the reactor (default false: recommend and log only).
    pub allow_write: bool,
    /// Real time or as fast as possible (default as fast as possible).
    pub pacing: Pacing,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            run_id: "run".to_string(),
            duration_days: 28,
            sampling_interval_hours: 24.0,
            retrain_every: 3,
            acquisition: Acquisition::LogEI,
            decision_horizon_days: 14,
            forecast_horizon_days: 28,
            mc_samples: 256,
            optimizer_restarts: 10,
            raw_samples: 512,
            seed: None,
            allow_write: false,
            pacing: Pacing::AsFastAsPossible,
        }
    }
}

/// Largest accepted culture duration, days.
pub const MAX_DURATION_DAYS: u32 = 365;

impl RunConfig {
    /// Checks every field and cross-field rule; the error names the field and says why.
    pub fn validate(&self) -> Result<(), CoreError> {
        fn bad(field: &'static str, value: impl fmt::Display, reason: &str) -> CoreError {
            CoreError::InvalidConfig {
                field,
                value: value.to_string(),
                reason: reason.to_string(),
            }
        }
        if self.run_id.trim().is_empty() {
            return Err(bad("run_id", "\"\"", "must not be empty"));
        }
        if self.duration_days == 0 || self.duration_days > MAX_DURATION_DAYS {
            return Err(bad(
                "duration_days",
                self.duration_days,
                "must be between 1 and 365 days",
            ));
        }
        if !(self.sampling_interval_hours.is_finite() && self.sampling_interval_hours > 0.0) {
            return Err(bad(
                "sampling_interval_hours",
                self.sampling_interval_hours,
                "must be a positive number of hours",
            ));
        }
        if self.retrain_every == 0 {
            return Err(bad(
                "retrain_every",
                0,
                "the model would never be retrained; use 1 to retrain every day, \
                 or a larger number of days between retrains",
            ));
        }
        if self.decision_horizon_days == 0 {
            return Err(bad(
                "decision_horizon_days",
                0,
                "the objective needs at least one forecast day",
            ));
        }
        if self.forecast_horizon_days < self.decision_horizon_days
            || self.forecast_horizon_days > MAX_DURATION_DAYS
        {
            return Err(bad(
                "forecast_horizon_days",
                self.forecast_horizon_days,
                &format!(
                    "must be at least decision_horizon_days ({}; default {}) and at most 365",
                    self.decision_horizon_days,
                    Self::default().decision_horizon_days
                ),
            ));
        }
        if self.mc_samples < 2 {
            return Err(bad(
                "mc_samples",
                self.mc_samples,
                "quantiles need at least 2 Monte-Carlo samples",
            ));
        }
        if self.optimizer_restarts == 0 {
            return Err(bad("optimizer_restarts", 0, "need at least one restart"));
        }
        if self.raw_samples < self.optimizer_restarts {
            return Err(bad(
                "raw_samples",
                self.raw_samples,
                "must be at least optimizer_restarts (restarts start from the best raw samples)",
            ));
        }
        Ok(())
    }

    /// Parses and validates a TOML configuration; missing fields take their defaults.
    pub fn from_toml_str(s: &str) -> Result<Self, CoreError> {
        let raw: RunConfigUnchecked = toml::from_str(s).map_err(|e| parse_error("TOML", &e))?;
        RunConfig::try_from(raw)
    }

    /// Parses and validates a JSON configuration; missing fields take their defaults.
    pub fn from_json_str(s: &str) -> Result<Self, CoreError> {
        let raw: RunConfigUnchecked =
            serde_json::from_str(s).map_err(|e| CoreError::ConfigParse {
                format: "JSON",
                message: e.to_string(),
            })?;
        RunConfig::try_from(raw)
    }

    /// Serialises to TOML.
    pub fn to_toml_string(&self) -> Result<String, CoreError> {
        toml::to_string(self).map_err(|e| CoreError::ConfigParse {
            format: "TOML",
            message: e.to_string(),
        })
    }
}

fn parse_error(format: &'static str, e: &toml::de::Error) -> CoreError {
    let msg = e.message().trim();
    let message = match e.span() {
        Some(span) => format!("{msg} (at byte {})", span.start),
        None => msg.to_string(),
    };
    CoreError::ConfigParse { format, message }
}

/// Deserialisation target that is validated into [`RunConfig`].
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RunConfigUnchecked {
    run_id: String,
    duration_days: u32,
    sampling_interval_hours: f64,
    retrain_every: u32,
    acquisition: Acquisition,
    decision_horizon_days: u32,
    forecast_horizon_days: u32,
    mc_samples: u32,
    optimizer_restarts: u32,
    raw_samples: u32,
    seed: Option<u64>,
    allow_write: bool,
    pacing: Pacing,
}

impl Default for RunConfigUnchecked {
    fn default() -> Self {
        let d = RunConfig::default();
        Self {
            run_id: d.run_id,
            duration_days: d.duration_days,
            sampling_interval_hours: d.sampling_interval_hours,
            retrain_every: d.retrain_every,
            acquisition: d.acquisition,
            decision_horizon_days: d.decision_horizon_days,
            forecast_horizon_days: d.forecast_horizon_days,
            mc_samples: d.mc_samples,
            optimizer_restarts: d.optimizer_restarts,
            raw_samples: d.raw_samples,
            seed: d.seed,
            allow_write: d.allow_write,
            pacing: d.pacing,
        }
    }
}

impl TryFrom<RunConfigUnchecked> for RunConfig {
    type Error = CoreError;

    fn try_from(u: RunConfigUnchecked) -> Result<Self, CoreError> {
        let cfg = RunConfig {
            run_id: u.run_id,
            duration_days: u.duration_days,
            sampling_interval_hours: u.sampling_interval_hours,
            retrain_every: u.retrain_every,
            acquisition: u.acquisition,
            decision_horizon_days: u.decision_horizon_days,
            forecast_horizon_days: u.forecast_horizon_days,
            mc_samples: u.mc_samples,
            optimizer_restarts: u.optimizer_restarts,
            raw_samples: u.raw_samples,
            seed: u.seed,
            allow_write: u.allow_write,
            pacing: u.pacing,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_as_documented() {
        let c = RunConfig::default();
        c.validate().unwrap();
        assert_eq!(c.duration_days, 28);
        assert_eq!(c.retrain_every, 3);
        assert_eq!(c.acquisition, Acquisition::LogEI);
        assert_eq!(c.decision_horizon_days, 14);
        assert_eq!(c.forecast_horizon_days, 28);
        assert_eq!(c.mc_samples, 256);
        assert_eq!(c.optimizer_restarts, 10);
        assert_eq!(c.raw_samples, 512);
        assert!(!c.allow_write);
        assert_eq!(c.seed, None);
    }

    #[test]
    fn acquisition_parsing_is_case_insensitive() {
        for a in Acquisition::ALL {
            assert_eq!(a.name().to_lowercase().parse::<Acquisition>().unwrap(), a);
            assert_eq!(a.name().to_uppercase().parse::<Acquisition>().unwrap(), a);
        }
        let e = "foo".parse::<Acquisition>().unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown acquisition function 'foo'; valid names (case-insensitive): PI, EI, LogEI, \
             UCB, qEI, qLogEI, qUCB, qEHVI, qNEHVI, qNParEGO"
        );
        assert!(Acquisition::QNEHVI.is_multi_objective());
        assert!(!Acquisition::QLogEI.is_multi_objective());
        assert!(Acquisition::QUCB.is_monte_carlo());
        assert!(!Acquisition::UCB.is_monte_carlo());
    }

    #[test]
    fn toml_with_logei_and_foo() {
        let c = RunConfig::from_toml_str("acquisition = \"logei\"").unwrap();
        assert_eq!(c.acquisition, Acquisition::LogEI);
        let e = RunConfig::from_toml_str("acquisition = \"foo\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown acquisition function 'foo'"), "{e}");
        assert!(e.contains("qNParEGO"), "{e}");
    }

    #[test]
    fn retrain_every_zero_is_rejected_with_reason() {
        let e = RunConfig::from_toml_str("retrain_every = 0").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid configuration: retrain_every = 0: the model would never be retrained; \
             use 1 to retrain every day, or a larger number of days between retrains"
        );
        let e = RunConfig::from_json_str(r#"{"retrain_every": 0}"#).unwrap_err();
        assert!(e.to_string().contains("never be retrained"), "{e}");
    }

    #[test]
    fn every_validation_rule_fires() {
        let d = RunConfig::default;
        let cases: Vec<(RunConfig, &str)> = vec![
            (
                RunConfig {
                    run_id: " ".into(),
                    ..d()
                },
                "run_id",
            ),
            (
                RunConfig {
                    duration_days: 0,
                    ..d()
                },
                "duration_days",
            ),
            (
                RunConfig {
                    duration_days: 400,
                    ..d()
                },
                "duration_days",
            ),
            (
                RunConfig {
                    sampling_interval_hours: 0.0,
                    ..d()
                },
                "sampling_interval_hours",
            ),
            (
                RunConfig {
                    sampling_interval_hours: f64::NAN,
                    ..d()
                },
                "sampling_interval_hours",
            ),
            (
                RunConfig {
                    retrain_every: 0,
                    ..d()
                },
                "retrain_every",
            ),
            (
                RunConfig {
                    decision_horizon_days: 0,
                    ..d()
                },
                "decision_horizon_days",
            ),
            (
                RunConfig {
                    forecast_horizon_days: 2,
                    ..d()
                },
                "forecast_horizon_days",
            ),
            (
                RunConfig {
                    mc_samples: 1,
                    ..d()
                },
                "mc_samples",
            ),
            (
                RunConfig {
                    optimizer_restarts: 0,
                    ..d()
                },
                "optimizer_restarts",
            ),
            (
                RunConfig {
                    raw_samples: 5,
                    ..d()
                },
                "raw_samples",
            ),
        ];
        for (cfg, field) in cases {
            match cfg.validate() {
                Err(CoreError::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: expected InvalidConfig, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_forecast_shorter_than_the_default_decision_horizon_names_both() {
        // a file that shortens the forecast but not the decision horizon
        let e = RunConfig::from_toml_str("forecast_horizon_days = 7").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("forecast_horizon_days"), "{msg}");
        assert!(
            msg.contains("decision_horizon_days (14; default 14)"),
            "{msg}"
        );
        let ok = RunConfig::from_toml_str("forecast_horizon_days = 7\ndecision_horizon_days = 3");
        assert_eq!(ok.unwrap().decision_horizon_days, 3);
    }

    #[test]
    fn serde_round_trips() {
        let c = RunConfig {
            run_id: "R-17".into(),
            seed: Some(42),
            allow_write: true,
            acquisition: Acquisition::QNEHVI,
            pacing: Pacing::RealTime,
            retrain_every: 1,
            ..RunConfig::default()
        };
        let toml = c.to_toml_string().unwrap();
        assert!(toml.contains("acquisition = \"qNEHVI\""), "{toml}");
        assert_eq!(RunConfig::from_toml_str(&toml).unwrap(), c);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(RunConfig::from_json_str(&json).unwrap(), c);
    }

    #[test]
    fn unknown_fields_and_bad_types_are_parse_errors() {
        let e = RunConfig::from_toml_str("retrain_evry = 2").unwrap_err();
        assert!(
            matches!(e, CoreError::ConfigParse { format: "TOML", .. }),
            "{e}"
        );
        assert!(e.to_string().contains("retrain_evry"), "{e}");
        let e = RunConfig::from_toml_str("duration_days = \"long\"").unwrap_err();
        assert!(matches!(e, CoreError::ConfigParse { .. }), "{e}");
        assert_eq!("real-time".parse::<Pacing>().unwrap(), Pacing::RealTime);
        assert!("slow".parse::<Pacing>().is_err());
    }
}
