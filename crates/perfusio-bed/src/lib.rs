//! Bayesian experimental design for the perfusion twin: the mathematics that chooses
//! tomorrow's setpoints from a forecast's uncertainty.
//!
//! The daily decision maximises an **acquisition** of an **objective** of the forecast over
//! a **decision space** of setpoints. This crate holds each of those pieces behind an
//! interface that knows nothing about the forecast model: objectives see one scenario
//! (states and controls over the horizon), acquisitions see Gaussian moments or a matrix of
//! objective samples, the optimiser sees a function on the unit cube. The policy that joins
//! them to the hybrid model's forecasts ([`BedPolicy::decide`]) builds on these pieces.
//!
//! # Why fixed quasi-random base samples
//! A Monte-Carlo acquisition drawn afresh at each evaluation is noisy, and a quasi-Newton
//! method cannot climb noise. With the standard-normal **base samples** held fixed during one
//! optimisation, every scenario is a deterministic, smooth function of the controls (the
//! reparameterisation `y = μ(x) + L(x) ε_s`), and so is the acquisition — the sample average
//! approximation of BoTorch (Balandat et al. 2020, NeurIPS, arXiv:1910.06403). Drawing the
//! `ε_s` from a randomly shifted lattice instead of a pseudo-random generator makes the same
//! number of scenarios 10–100× more accurate for smooth integrands (tested in [`qmc`] and
//! [`mc`]).
//!
//! # What is where
//!
//! | piece | module | main items |
//! |---|---|---|
//! | normal special functions (erfcx, Φ, ln Φ, Φ⁻¹, log h) | [`special`] | [`special::erfcx`], [`special::norm_ppf`], [`special::log_h`] |
//! | analytic PI, EI, LogEI, UCB with (μ, σ) gradients; constrained EI | [`analytic`] | [`analytic::Predictive`], [`analytic::log_expected_improvement`], [`analytic::GaussianConstraint`] |
//! | QMC base samples (randomly shifted CBC lattice → normals) | [`qmc`] | [`qmc::BaseSamples`], [`qmc::LatticeRule`], [`qmc::uniform_points`] |
//! | qEI, qLogEI, qLogNEI, qUCB with sigmoid-weighted constraints | [`mc`] | [`mc::SampleMatrix`], [`mc::q_log_expected_improvement`], [`mc::McParams`] |
//! | Pareto filter | [`pareto`] | [`pareto::non_dominated_mask`], [`pareto::pareto_front`] |
//! | exact hypervolume (2 and 3 objectives) | [`hypervolume`] | [`hypervolume::hypervolume`] |
//! | qEHVI, qNEHVI, qNParEGO | [`multi`] | [`multi::ObjectiveSamples`], [`multi::q_expected_hypervolume_improvement`], [`multi::ChebyshevScalarization`] |
//! | objectives over forecast scenarios; outcome constraints | [`objective`] | [`objective::Objective`], [`objective::Harvest`], [`objective::Track`], [`objective::parse_objective`], [`objective::OutcomeConstraint`] |
//! | unit cube ↔ setpoints (bleed ≤ perfusion, ramps, fixed controls) | [`space`] | [`space::DecisionSpace`] |
//! | bounded quasi-Newton (`perfusio_gp::optim`'s L-BFGS-B) and the multistart maximiser | [`optimize`] | [`optimize::maximize`], [`optimize::minimize_box`] |
//! | the decision over the hybrid forecast: screening, trust-region refinement, Monte-Carlo check; q-batches | [`policy`] | [`BedPolicy::decide`], [`BedPolicy::decide_batch`], [`Decision`] |
//!
//! # Example: one decision on a toy forecast
//! ```
//! use perfusio_bed::{analytic, objective::{Harvest, Objective}, optimize, space::DecisionSpace};
//! use perfusio_core::{Control, DEFAULT_AMBR250_DESIGN_SPACE as DS, Species};
//! # fn main() -> perfusio_bed::Result<()> {
//! let current = Control::defaults();
//! let space = DecisionSpace::builder(&DS, current).fix(Control::Agitation).build()?;
//! // a toy one-day "forecast": titer grows with perfusion, its sd with the distance moved
//! let forecast = |c: &[f64; 6]| {
//!     let mut today = [0.0; 9];
//!     today[Species::Titer.index()] = 500.0;
//!     let mut tomorrow = today;
//!     tomorrow[Species::Titer.index()] = 500.0 + 40.0 * c[0];
//!     let mean = Harvest::default().value(&[today, tomorrow], &[*c]);
//!     let sd = 5.0 + 50.0 * (c[0] - current[0]).abs();
//!     analytic::Predictive::new(mean, sd)
//! };
//! // the incumbent: the objective predicted when holding course
//! let best = forecast(&current)?.mean();
//! let acq = |u: &[f64]| {
//!     let c = space.to_controls(u).unwrap_or(current);
//!     forecast(&c).map_or(f64::NEG_INFINITY, |p| analytic::log_expected_improvement(p, best).value)
//! };
//! let hold = space.to_unit(&current)?;
//! let m = optimize::maximize(space.dim(), &acq, &optimize::MaximizeOptions::default(), &[hold])?;
//! let chosen = space.to_controls(&m.x)?;
//! assert!(chosen[Control::PerfusionRate.index()] > current[Control::PerfusionRate.index()]);
//! assert!(chosen[Control::BleedRate.index()] <= chosen[Control::PerfusionRate.index()]);
//! assert!(DS.check_setpoints(&chosen).is_empty());
//! # Ok(()) }
//! ```
//!
//! # Conventions
//! * Every objective and acquisition is **maximised**.
//! * Randomness comes only from `u64` seeds (ChaCha8 for shifts and weights); the same seed
//!   gives bit-identical results.
//! * No I/O, no async, no panics on user input: errors are [`BedError`] values whose
//!   messages say what to change.
//!
//! # If you are a library author
//! Implement [`objective::Objective`] (or wrap a closure in [`objective::FnObjective`]) to
//! pose your own objective; it must be a pure function of the scenario. To plug in another
//! forecast model, turn each row of a [`qmc::BaseSamples`] into one scenario, evaluate the
//! objective (and the constraints' slacks) on every scenario, and hand the resulting
//! matrices to [`mc`] or [`multi`].

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::print_stdout,
        clippy::print_stderr
    )
)]
#![deny(clippy::float_cmp)]

pub mod analytic;
pub mod error;
pub mod hypervolume;
pub mod mc;
pub mod multi;
pub mod objective;
pub mod optimize;
pub mod pareto;
pub mod policy;
pub mod qmc;
pub mod space;
/// The normal special functions, from `perfusio-gp` (the hybrid model's forecasts use them
/// too).
pub use perfusio_gp::special;

pub use error::{BedError, Result};
pub use policy::{
    BedPolicy, Decision, DecisionTimings, HoldForecast, ObjectiveSummary, PolicyConfig,
    RestartReport, Screening,
};

#[cfg(test)]
mod auto_traits {
    use super::*;

    fn send_sync_clone<T: Send + Sync + Clone>() {}

    #[test]
    fn public_types_are_send_sync_clone() {
        send_sync_clone::<BedError>();
        send_sync_clone::<analytic::Predictive>();
        send_sync_clone::<analytic::ValueGrad>();
        send_sync_clone::<analytic::GaussianConstraint>();
        send_sync_clone::<qmc::BaseSamples>();
        send_sync_clone::<qmc::LatticeRule>();
        send_sync_clone::<mc::SampleMatrix<'static>>();
        send_sync_clone::<mc::McParams>();
        send_sync_clone::<multi::ObjectiveSamples<'static>>();
        send_sync_clone::<multi::ChebyshevScalarization>();
        send_sync_clone::<objective::Harvest>();
        send_sync_clone::<objective::Track>();
        send_sync_clone::<objective::FinalTiter>();
        send_sync_clone::<objective::FnObjective>();
        send_sync_clone::<objective::OutcomeConstraint>();
        send_sync_clone::<space::DecisionSpace>();
        send_sync_clone::<space::DecisionSpaceBuilder>();
        send_sync_clone::<optimize::LbfgsbOptions>();
        send_sync_clone::<optimize::MaximizeOptions>();
        send_sync_clone::<optimize::Maximum>();
        send_sync_clone::<PolicyConfig>();
        send_sync_clone::<Decision>();
        send_sync_clone::<DecisionTimings>();
        send_sync_clone::<RestartReport>();
        send_sync_clone::<Screening>();
        fn send_sync<T: Send + Sync>() {}
        send_sync::<BedPolicy>();
    }
}
