//! The GP's prior mean: the mechanistic one-day step, in the model's coordinates.

use std::fmt;

use perfusio_core::{Control, ControlArray, DesignSpace, N_CONTROLS, N_SPECIES, SpeciesArray};
use perfusio_gp::{MeanError, PriorMean};
use perfusio_mechanistic::ode::{Dopri5Options, PLANT_ODE_OPTIONS};
use perfusio_mechanistic::{HOURS_PER_DAY, KineticParams, PlantModel};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::dataset::N_BASE;
use crate::transform::LogTransform;

/// Relative tolerance of the prior mean's integrator. The mean is compared with
/// measurements whose noise is 2–8 %, so 1e-5 (against the plant's 1e-6) loses nothing
/// measurable and makes each one-day step about 2× cheaper (see the crate benches).
pub const PRIOR_RTOL: f64 = 1e-5;

/// Largest step of the prior mean's integrator, hours. The plant's 1 h cap binds on most
/// days (about 27 accepted steps); at [`PRIOR_RTOL`] the error control alone takes about 12,
/// and 4 h keeps the one-day step within 5e-5 (relative) of a tight integration while
/// halving its cost (163 → 77 right-hand sides; 12.5 → 6.0 µs per step in release).
pub const PRIOR_H_MAX: f64 = 4.0;

/// First trial step of the prior mean's integrator, hours. Without it every one-day step
/// estimates one (two extra right-hand sides) and then ramps up from a cautious guess; the
/// error control accepts 1 h from any state in the design space, and the step is about a
/// quarter cheaper (6.0 → 4.2 µs) at the same accuracy.
pub const PRIOR_H_INIT: f64 = 1.0;

/// Forward-difference step of the Jacobian in `z` (a 0.3 % change of `s + c`). With the
/// integrator at [`PRIOR_RTOL`], the differencing noise is about `1e-5 / 3e-3 ≈ 0.3 %` of
/// the derivative and the truncation error of the same order: well below what linearised
/// propagation needs (tested against central differences of a tight integration to 2 %).
pub const FD_STEP_Z: f64 = 3e-3;

/// Forward-difference step of the Jacobian in a control, as a fraction of its design range.
pub const FD_STEP_CONTROL: f64 = 2e-3;

/// Settings of the prior-mean integrator (serialised with a model so that a loaded model
/// integrates identically).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PriorIntegrator {
    /// Relative tolerance.
    pub rtol: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// Largest step, hours.
    pub h_max: f64,
    /// First trial step, hours; `None` = estimated at every step (Hairer's `hinit`; model
    /// files written before this field existed load with `None` and integrate as before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub h_init: Option<f64>,
    /// Measure the error of species `k` in the GP's coordinates `z = ln(s + c)`: its
    /// absolute tolerance becomes `max(atol, rtol · c_k)`, `c_k` the transform's offset, so a
    /// species is resolved relative to `s + c` rather than followed down to `atol` as it
    /// vanishes (differences far below its offset do not change `z`). Model files written
    /// before this field existed load with `false` and integrate as before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub atol_in_z: bool,
}

impl Default for PriorIntegrator {
    fn default() -> Self {
        Self {
            rtol: PRIOR_RTOL,
            atol: PLANT_ODE_OPTIONS.atol,
            h_max: PRIOR_H_MAX,
            h_init: Some(PRIOR_H_INIT),
            atol_in_z: true,
        }
    }
}

/// The mechanistic one-day prediction as the GP's prior mean: for a base input
/// `[z(9) at t, controls(6), day]` it returns `ln(m_k(s, u) + c_k)` for every species `k`,
/// where `s = e^z − c` and `m` is [`PlantModel::step`] over 24 h. The GP then learns, in the
/// same log coordinates, what the mechanism gets wrong.
///
/// One call integrates the ODE once for all nine species (no cache needed). Failures are
/// reported ([`MeanError`]), never replaced by a guess. The Jacobian is by forward
/// differences ([`FD_STEP_Z`], [`FD_STEP_CONTROL`]); the day column has no effect.
#[derive(Clone)]
pub struct MechanisticMean {
    model: PlantModel,
    transform: LogTransform,
    control_steps: ControlArray<f64>,
    fingerprint: String,
}

impl fmt::Debug for MechanisticMean {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MechanisticMean")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl MechanisticMean {
    /// The mean of a mechanism with `params`, in the coordinates of `transform`.
    pub fn new(
        params: KineticParams,
        transform: LogTransform,
        design_space: &DesignSpace,
        integrator: PriorIntegrator,
    ) -> Self {
        let options = Dopri5Options {
            rtol: integrator.rtol,
            atol: integrator.atol,
            h_max: integrator.h_max,
            h_init: integrator.h_init,
            ..PLANT_ODE_OPTIONS
        };
        let mut model = PlantModel::new(params).with_options(options);
        if integrator.atol_in_z {
            model = model.with_abs_tolerances(
                transform
                    .offsets
                    .map(|c| (integrator.rtol * c).max(integrator.atol)),
            );
        }
        let control_steps = Control::ALL.map(|c| {
            let spec = design_space.control(c);
            (FD_STEP_CONTROL * (spec.upper - spec.lower)).max(1e-6)
        });
        let mut h = Sha256::new();
        h.update(b"perfusio-hybrid mechanistic one-day step in z = ln(s + c), v1\n");
        // serde_json of plain numbers cannot fail; an error would only make the fingerprint
        // less specific, never wrong for a different mechanism.
        h.update(serde_json::to_vec(&params).unwrap_or_default());
        h.update(serde_json::to_vec(&transform).unwrap_or_default());
        h.update(serde_json::to_vec(&integrator).unwrap_or_default());
        let fingerprint = h
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        Self {
            model,
            transform,
            control_steps,
            fingerprint,
        }
    }

    /// The kinetic parameters of the mechanism.
    pub fn params(&self) -> &KineticParams {
        self.model.params()
    }

    /// The one-day step in `z` from a base input (at least the 15 state and control
    /// columns).
    pub fn step_z(&self, x: &[f64]) -> Result<SpeciesArray<f64>, MeanError> {
        if x.len() < N_SPECIES + N_CONTROLS {
            return Err(MeanError(format!(
                "base input has {} columns, need at least {}",
                x.len(),
                N_SPECIES + N_CONTROLS
            )));
        }
        let mut z = [0.0; N_SPECIES];
        z.copy_from_slice(&x[..N_SPECIES]);
        let s = self.transform.to_species(&z);
        let mut u = [0.0; N_CONTROLS];
        u.copy_from_slice(&x[N_SPECIES..N_SPECIES + N_CONTROLS]);
        let next = self
            .model
            .step(&s, &u, HOURS_PER_DAY)
            .map_err(|e| MeanError(format!("mechanistic one-day step: {e}")))?;
        Ok(self.transform.to_z(&next))
    }
}

impl MechanisticMean {
    /// The one-day step in `z` and its Jacobian with respect to the state `z_t` (forward
    /// differences, [`FD_STEP_Z`]): 10 integrations.
    pub fn state_jacobian(
        &self,
        x: &[f64],
    ) -> Result<(SpeciesArray<f64>, [[f64; N_SPECIES]; N_SPECIES]), MeanError> {
        let base = self.step_z(x)?;
        let mut jac = [[0.0; N_SPECIES]; N_SPECIES];
        let mut xp = x.to_vec();
        for j in 0..N_SPECIES {
            let keep = xp[j];
            xp[j] = keep - FD_STEP_Z;
            let pert = self.step_z(&xp)?;
            xp[j] = keep;
            for t in 0..N_SPECIES {
                jac[t][j] = (base[t] - pert[t]) / FD_STEP_Z;
            }
        }
        Ok((base, jac))
    }
}

/// The GP's prior mean when the mechanism's prediction is part of the GP input (see
/// [`crate::GpSettings::mechanism_inputs`]): the input row is
/// `[z_t (9), controls (6), day, m(z_t, u) (9)]` and the mean is its last nine columns,
/// the mechanistic one-day step computed once when the row was built, or, with weights
/// ([`MechanismInputMean::with_weights`]), a fraction of its change. Its fingerprint is
/// derived from the mechanism's, so a model cannot be handed another clone's mechanism.
#[derive(Debug, Clone)]
pub struct MechanismInputMean {
    fingerprint: String,
    weights: Option<[f64; N_SPECIES]>,
}

impl MechanismInputMean {
    /// The mean carried in the inputs built by `mechanism`.
    pub fn new(mechanism: &MechanisticMean) -> Self {
        Self {
            fingerprint: format!("mechanism-in-input:{}", mechanism.fingerprint()),
            weights: None,
        }
    }

    /// The mean `z_k + w_k (m_k(z, u) − z_k)` per species: the fraction `w_k` of the
    /// mechanism's one-day change in `z` (see [`crate::GpSettings::mechanism_weights`]).
    /// The weights enter the fingerprint.
    pub fn with_weights(mechanism: &MechanisticMean, weights: [f64; N_SPECIES]) -> Self {
        let w: Vec<String> = weights
            .iter()
            .map(|v| format!("{:016x}", v.to_bits()))
            .collect();
        Self {
            fingerprint: format!(
                "mechanism-in-input:{}:weights:{}",
                mechanism.fingerprint(),
                w.join(",")
            ),
            weights: Some(weights),
        }
    }
}

impl PriorMean for MechanismInputMean {
    fn n_tasks(&self) -> usize {
        N_SPECIES
    }

    fn eval(&self, x: &[f64], out: &mut [f64]) -> Result<(), MeanError> {
        column_block(x, N_BASE, out, None)?;
        if let Some(w) = &self.weights {
            for k in 0..N_SPECIES {
                out[k] = w[k] * out[k] + (1.0 - w[k]) * x[k];
            }
        }
        Ok(())
    }

    fn eval_with_jacobian(
        &self,
        x: &[f64],
        out: &mut [f64],
        jac: &mut [f64],
    ) -> Result<bool, MeanError> {
        column_block(x, N_BASE, out, Some(jac))?;
        if let Some(w) = &self.weights {
            let d = x.len();
            for k in 0..N_SPECIES {
                out[k] = w[k] * out[k] + (1.0 - w[k]) * x[k];
                jac[k * d + N_BASE + k] *= w[k];
                jac[k * d + k] += 1.0 - w[k];
            }
        }
        Ok(true)
    }

    fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }
}

impl PriorMean for MechanisticMean {
    fn n_tasks(&self) -> usize {
        N_SPECIES
    }

    fn eval(&self, x: &[f64], out: &mut [f64]) -> Result<(), MeanError> {
        let z = self.step_z(x)?;
        out[..N_SPECIES].copy_from_slice(&z);
        Ok(())
    }

    fn eval_with_jacobian(
        &self,
        x: &[f64],
        out: &mut [f64],
        jac: &mut [f64],
    ) -> Result<bool, MeanError> {
        let d = x.len();
        let base = self.step_z(x)?;
        out[..N_SPECIES].copy_from_slice(&base);
        jac.fill(0.0);
        let mut xp = [0.0; N_BASE];
        let n = d.min(N_BASE);
        xp[..n].copy_from_slice(&x[..n]);
        for j in 0..(N_SPECIES + N_CONTROLS).min(d) {
            let h = if j < N_SPECIES {
                FD_STEP_Z
            } else {
                self.control_steps[j - N_SPECIES]
            };
            let keep = xp[j];
            // step towards the inside for controls at zero (feeds cannot be negative) and for
            // bleed at its perfusion limit
            let sign = if j >= N_SPECIES && keep - h < 0.0 {
                1.0
            } else {
                -1.0
            };
            // (the bleed steps down to stay below the perfusion rate, up when it is at zero)
            let sign = if j == N_SPECIES + Control::BleedRate.index() {
                if keep - h < 0.0 { 1.0 } else { -1.0 }
            } else {
                sign
            };
            let sign = if j == N_SPECIES + Control::PerfusionRate.index() {
                1.0
            } else {
                sign
            };
            xp[j] = keep + sign * h;
            let pert = self.step_z(&xp[..n])?;
            xp[j] = keep;
            for t in 0..N_SPECIES {
                jac[t * d + j] = (pert[t] - base[t]) / (sign * h);
            }
        }
        Ok(true)
    }

    fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }
}

/// The persistence mean `z_{t+1} = z_t` (an ablation baseline, and the one-day step of the
/// GP-only model before it has data).
#[derive(Debug, Clone, Copy, Default)]
pub struct PersistenceMean;

impl PriorMean for PersistenceMean {
    fn n_tasks(&self) -> usize {
        N_SPECIES
    }

    fn eval(&self, x: &[f64], out: &mut [f64]) -> Result<(), MeanError> {
        column_block(x, 0, out, None)
    }

    fn eval_with_jacobian(
        &self,
        x: &[f64],
        out: &mut [f64],
        jac: &mut [f64],
    ) -> Result<bool, MeanError> {
        column_block(x, 0, out, Some(jac))?;
        Ok(true)
    }

    fn fingerprint(&self) -> String {
        "perfusio-hybrid persistence mean z(t+1) = z(t), v1".to_string()
    }
}

/// A mean that is the nine input columns from `first` on (the persistence mean: the state;
/// the mechanism-input mean: the mechanism's prediction carried in the row), with its
/// Jacobian (row-major `9 × x.len()`, ones on that block) when asked for.
fn column_block(
    x: &[f64],
    first: usize,
    out: &mut [f64],
    jac: Option<&mut [f64]>,
) -> Result<(), MeanError> {
    let block = x.get(first..first + N_SPECIES).ok_or_else(|| {
        MeanError(format!(
            "the input has {} columns; this mean reads columns {first}..{}",
            x.len(),
            first + N_SPECIES
        ))
    })?;
    out[..N_SPECIES].copy_from_slice(block);
    if let Some(jac) = jac {
        let d = x.len();
        jac.fill(0.0);
        for k in 0..N_SPECIES {
            jac[k * d + first + k] = 1.0;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::base_row;
    use perfusio_core::DEFAULT_AMBR250_DESIGN_SPACE as DS;
    use perfusio_mechanistic::initial_state;

    #[test]
    fn column_means_copy_their_block_with_a_unit_jacobian_and_refuse_short_rows() {
        let x: Vec<f64> = (0..N_BASE + N_SPECIES).map(|i| i as f64 * 0.5).collect();
        let d = x.len();
        let m = MechanismInputMean::new(&mean());
        for (p, first) in [(&PersistenceMean as &dyn PriorMean, 0), (&m, N_BASE)] {
            let mut out = [0.0; N_SPECIES];
            let mut jac = vec![7.0; N_SPECIES * d];
            assert!(p.eval_with_jacobian(&x, &mut out, &mut jac).unwrap());
            for k in 0..N_SPECIES {
                assert_eq!(out[k].to_bits(), x[first + k].to_bits());
                for j in 0..d {
                    let want = if j == first + k { 1.0 } else { 0.0 };
                    assert_eq!(jac[k * d + j].to_bits(), f64::to_bits(want), "{k},{j}");
                }
            }
        }
        let mut out = [0.0; N_SPECIES];
        let err = m.eval(&x[..N_BASE], &mut out).unwrap_err();
        assert!(err.0.contains("reads columns 16..25"), "{err}");
        assert!(PersistenceMean.eval(&x[..3], &mut out).is_err());
    }

    #[test]
    fn weighted_mechanism_input_mean_takes_a_fraction_of_the_change_and_its_jacobian() {
        let mech = mean();
        let w = [0.0, 0.25, 0.5, 0.75, 1.0, 0.1, 0.9, 0.3, 0.6];
        let m = MechanismInputMean::with_weights(&mech, w);
        assert_ne!(
            m.fingerprint(),
            MechanismInputMean::new(&mech).fingerprint()
        );
        let d = N_BASE + N_SPECIES;
        let x: Vec<f64> = (0..d).map(|j| 0.3 + 0.17 * j as f64).collect();
        let mut out = [0.0; N_SPECIES];
        let mut jac = vec![7.0; N_SPECIES * d];
        assert!(m.eval_with_jacobian(&x, &mut out, &mut jac).unwrap());
        let mut plain = [0.0; N_SPECIES];
        m.eval(&x, &mut plain).unwrap();
        for k in 0..N_SPECIES {
            let want = x[k] + w[k] * (x[N_BASE + k] - x[k]);
            assert!((out[k] - want).abs() < 1e-15, "{k}: {} vs {want}", out[k]);
            assert_eq!(out[k].to_bits(), plain[k].to_bits());
        }
        // the Jacobian against central differences of `eval` (the mean is linear: exact
        // up to rounding)
        let h = 1e-6;
        for j in 0..d {
            let (mut up, mut down) = (x.clone(), x.clone());
            up[j] += h;
            down[j] -= h;
            let (mut fu, mut fd) = ([0.0; N_SPECIES], [0.0; N_SPECIES]);
            m.eval(&up, &mut fu).unwrap();
            m.eval(&down, &mut fd).unwrap();
            for k in 0..N_SPECIES {
                let fdv = (fu[k] - fd[k]) / (2.0 * h);
                assert!(
                    (jac[k * d + j] - fdv).abs() < 1e-8,
                    "{k},{j}: {} vs {fdv}",
                    jac[k * d + j]
                );
            }
        }
    }

    fn mean() -> MechanisticMean {
        MechanisticMean::new(
            KineticParams::clone_x(),
            LogTransform::default(),
            &DS,
            PriorIntegrator::default(),
        )
    }

    fn z_row(s: &SpeciesArray<f64>, u: &ControlArray<f64>) -> [f64; N_BASE] {
        let t = LogTransform::default();
        base_row(&t.to_z(s), u, 3)
    }

    #[test]
    fn integrator_without_a_first_step_reads_as_estimated_and_is_validated() {
        // model files written before `h_init` existed keep integrating as they did
        let old: PriorIntegrator =
            serde_json::from_str(r#"{"rtol":1e-5,"atol":1e-9,"h_max":1.0}"#).unwrap();
        assert_eq!(old.h_init, None);
        let json = serde_json::to_string(&old).unwrap();
        assert!(!json.contains("h_init"), "{json}");
        let mut cfg = crate::HybridConfig::default();
        assert_eq!(cfg.integrator.h_init, Some(PRIOR_H_INIT));
        cfg.integrator.h_init = Some(0.0);
        assert!(cfg.check().is_err());
        cfg.integrator.h_init = None;
        assert!(cfg.check().is_ok());
    }

    #[test]
    fn old_integrators_keep_the_global_absolute_tolerance() {
        let old: PriorIntegrator =
            serde_json::from_str(r#"{"rtol":1e-5,"atol":1e-9,"h_max":4.0,"h_init":1.0}"#).unwrap();
        assert!(!old.atol_in_z);
        assert!(!serde_json::to_string(&old).unwrap().contains("atol_in_z"));
        let new = PriorIntegrator::default();
        assert!(new.atol_in_z);
        let back: PriorIntegrator =
            serde_json::from_str(&serde_json::to_string(&new).unwrap()).unwrap();
        assert_eq!(back, new);
        // the mechanism knows it: the per-species tolerances are rtol × the offsets
        let m = mean();
        let want = LogTransform::default().offsets.map(|c| PRIOR_RTOL * c);
        assert_eq!(m.model.abs_tolerances(), Some(&want));
        let o = MechanisticMean::new(KineticParams::clone_x(), LogTransform::default(), &DS, old);
        assert_eq!(o.model.abs_tolerances(), None);
        assert_ne!(m.fingerprint(), o.fingerprint());
    }

    #[test]
    fn tolerances_in_z_keep_the_step_accurate_and_cut_the_work_where_a_species_vanishes() {
        // days of the T06 run's forecasts and decisions: lactate consumed to exhaustion at
        // high density (the steps the global atol = 1e-9 made expensive), a glutamine-limited
        // day, and the initial state under the defaults
        let days: [(SpeciesArray<f64>, ControlArray<f64>); 3] = [
            (
                [
                    51.545, 95.198, 0.52, 0.049, 0.161, 0.038, 3.178, 0.003, 1584.859,
                ],
                [2.0, 0.05, 8.0, 35.0, 986.485, 0.0],
            ),
            (
                [
                    9.453, 66.267, 0.0, 0.816, 0.094, 26.101, 0.609, 0.394, 495.839,
                ],
                [2.0, 0.05, 3.505, 35.0, 700.0, 5.0],
            ),
            (initial_state(), Control::defaults()),
        ];
        let t = LogTransform::default();
        let in_z = mean();
        let global = MechanisticMean::new(
            KineticParams::clone_x(),
            t,
            &DS,
            PriorIntegrator {
                atol_in_z: false,
                ..PriorIntegrator::default()
            },
        );
        let tight = PlantModel::new(KineticParams::clone_x()).with_options(Dopri5Options {
            rtol: 1e-11,
            atol: 1e-13,
            h_max: 0.5,
            ..PLANT_ODE_OPTIONS
        });
        let (mut work_z, mut work_global) = (0, 0);
        for (s, u) in &days {
            let (a, sa) = in_z.model.step_with_stats(s, u, 24.0).unwrap();
            let (_, sg) = global.model.step_with_stats(s, u, 24.0).unwrap();
            let exact = tight.step(s, u, 24.0).unwrap();
            for k in 0..N_SPECIES {
                // in z, the coordinates the GP sees: far inside the 2–8 % noise
                let dz = (t.z(k, a[k]) - t.z(k, exact[k])).abs();
                assert!(
                    dz < 2e-5,
                    "species {k}: {} vs {} (dz {dz:e})",
                    a[k],
                    exact[k]
                );
            }
            work_z += sa.rhs_evals;
            work_global += sg.rhs_evals;
        }
        // measured: 265, 241 and 43 right-hand sides against 361, 391 and 43 (549 against 795)
        assert!(
            (work_z as f64) < 0.8 * work_global as f64,
            "{work_z} vs {work_global} right-hand sides"
        );
    }

    #[test]
    fn equals_the_plant_step_in_log_coordinates() {
        let m = mean();
        let s = [5.0, 97.0, 3.0, 2.0, 1.0, 10.0, 2.0, 0.5, 150.0];
        let u = Control::defaults();
        let mut out = [0.0; N_SPECIES];
        m.eval(&z_row(&s, &u), &mut out).unwrap();
        let exact = PlantModel::new(KineticParams::clone_x())
            .step(&s, &u, 24.0)
            .unwrap();
        let t = LogTransform::default();
        for k in 0..N_SPECIES {
            // looser integrator: agreement far inside the 2–8 % noise
            assert!(
                (t.s(k, out[k]) - exact[k]).abs() <= 1e-4 * exact[k].max(t.offsets[k]),
                "species {k}: {} vs {}",
                t.s(k, out[k]),
                exact[k]
            );
        }
    }

    #[test]
    fn jacobian_at_zero_bleed_steps_inside_the_hard_limits() {
        // regression (issue 12): a culture file with bleed_rate = 0 stepped the bleed to
        // -0.0005 and failed the whole fit
        let m = mean();
        let s = [5.0, 97.0, 3.0, 2.0, 1.0, 10.0, 2.0, 0.5, 150.0];
        let mut u = Control::defaults();
        u[Control::BleedRate.index()] = 0.0;
        let x = z_row(&s, &u);
        let mut out = [0.0; N_SPECIES];
        let mut jac = vec![0.0; N_SPECIES * N_BASE];
        assert!(m.eval_with_jacobian(&x, &mut out, &mut jac).unwrap());
        assert!(jac.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn jacobian_matches_central_differences() {
        let m = mean();
        let s = [8.0, 96.0, 2.5, 1.5, 1.2, 12.0, 2.5, 0.3, 200.0];
        let mut u = Control::defaults();
        u[Control::PyruvateFeed.index()] = 1.0;
        let x = z_row(&s, &u);
        let mut out = [0.0; N_SPECIES];
        let mut jac = vec![0.0; N_SPECIES * N_BASE];
        assert!(m.eval_with_jacobian(&x, &mut out, &mut jac).unwrap());
        // independent check: central differences with a tighter integrator and a smaller step
        let tight = MechanisticMean::new(
            KineticParams::clone_x(),
            LogTransform::default(),
            &DS,
            PriorIntegrator {
                rtol: 1e-10,
                atol: 1e-12,
                h_max: 1.0,
                h_init: None,
                atol_in_z: false,
            },
        );
        for j in 0..(N_SPECIES + N_CONTROLS) {
            let h = if j < N_SPECIES {
                1e-4
            } else {
                1e-4 * m.control_steps[j - N_SPECIES] / FD_STEP_CONTROL
            };
            let mut xp = x;
            let mut xm = x;
            xp[j] += h;
            xm[j] -= h;
            let (p, q) = (tight.step_z(&xp).unwrap(), tight.step_z(&xm).unwrap());
            for t in 0..N_SPECIES {
                let c = (p[t] - q[t]) / (2.0 * h);
                let f = jac[t * N_BASE + j];
                assert!(
                    (c - f).abs() <= 0.02 * c.abs() + 2e-3,
                    "d z{t} / d x{j}: forward {f}, central {c}"
                );
            }
        }
        // the day column has no effect
        for t in 0..N_SPECIES {
            assert!(jac[t * N_BASE + N_BASE - 1].abs() < 1e-300);
        }
    }

    #[test]
    fn failures_are_reported_and_fingerprints_identify_the_mechanism() {
        let m = mean();
        let mut u = Control::defaults();
        u[Control::BleedRate.index()] = 1.5; // above perfusion
        let mut out = [0.0; N_SPECIES];
        let e = m.eval(&z_row(&initial_state(), &u), &mut out).unwrap_err();
        assert!(e.0.contains("bleed"), "{e}");
        let y = MechanisticMean::new(
            KineticParams::clone_y(),
            LogTransform::default(),
            &DS,
            PriorIntegrator::default(),
        );
        assert_ne!(m.fingerprint(), y.fingerprint());
        assert_eq!(m.fingerprint(), mean().fingerprint());
        assert_eq!(m.fingerprint().len(), 64);
    }
}
