//! # perfusio-mechanistic
//!
//! The mechanistic CHO-cell perfusion plant model of perfusio-rs and everything built
//! directly on it:
//!
//! * [`KineticParams`] and [`CloneKind`]: the synthetic clone X / clone Y parameter sets;
//! * [`PlantModel`]: nine mass balances (viable cells, viability, glucose, glutamine,
//!   glutamate, lactate, ammonium, pyruvate, antibody titer) with the control effects of
//!   all six manipulated variables, integrated by an adaptive Dormand–Prince 5(4) scheme
//!   ([`ode`]) in hours; [`PlantModel::step`] is the allocation-free one-day step that the
//!   hybrid model calls thousands of times per decision;
//! * [`NoiseModel`] and [`VirtualReactor`]: the noisy, seedable, day-by-day simulated
//!   ambr250 reactor that tests, examples, benches and the OPC UA emulator run against;
//! * [`doe`]: Box–Behnken, central-composite and Latin-hypercube designs, the 27-run
//!   training design, and [`doe::simulate_design`] which turns a design into noisy
//!   trajectories (the hybrid model's training data).
//!
//! The physics is `docs/plant-model.md`: the published open reference model of the field with
//! its mass-balance and lactate-consumption errors corrected, and temperature, agitation,
//! medium glucose and medium pyruvate acting on the cells. The integrator is written here
//! rather than taken from an ODE crate so that states stay fixed-size arrays (`[f64; 9]`),
//! a call allocates nothing, and its accuracy is tested against closed forms.
//!
//! ## Reference magnitudes
//!
//! Day 14, clone X, as produced by this implementation (tested) next to the values quoted
//! in `docs/plant-model.md`:
//!
//! | operating point | VCD | Glc | Gln | Amm | Titer |
//! |---|---|---|---|---|---|
//! | defaults (quoted) | ≈ 10.0 | ≈ 0.07 | ≈ 0.55 | ≈ 2.9 | ≈ 436 |
//! | defaults (this crate) | 10.048 | 0.0656 | 0.5487 | 2.934 | 435.8 |
//! | perfusion 2.0, bleed 0.10, glucose 8, pyruvate 2 (quoted) | ≈ 26 | | | | ≈ 560 |
//! | same (this crate) | 25.988 | 2.276 | 0.1292 | 2.161 | 560.5 |
//!
//! Glucose and ammonium are quoted to one and two significant figures; the computed values
//! round to them but differ by more than 1 % from the rounded numbers.
//!
//! ## Benchmarks (2-core machine, criterion medians)
//!
//! One clean 28-day run ≈ 0.56 ms; one one-day step ≈ 21 µs; the 27-run noisy training
//! design over 28 days ≈ 16 ms (`cargo bench -p perfusio-mechanistic`).
//!
//! ```
//! use perfusio_core::{Control, Species};
//! use perfusio_mechanistic::{initial_state, KineticParams, PlantModel};
//!
//! let model = PlantModel::new(KineticParams::clone_x());
//! let run = model.simulate(&initial_state(), &vec![Control::defaults(); 14]).unwrap();
//! let day14 = run[14];
//! assert!((day14[Species::VCD.index()] - 10.0).abs() < 1.0);
//! assert!(day14[Species::Gln.index()] <= 4.0); // never above the medium's glutamine
//! ```

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
// Index loops over several fixed-size arrays at once read closer to the equations.
#![allow(clippy::needless_range_loop)]

pub mod doe;
mod error;
mod model;
mod noise;
pub mod ode;
mod params;
mod plant;
mod reactor;

pub use error::{MechError, Result};
pub use model::{
    CELLS_PER_L_PER_VCD, GLUCOSE_MOLAR_MASS, HOURS_PER_DAY, PlantModel, Rates, check_controls,
    check_state, initial_state,
};
pub use noise::NoiseModel;
pub use params::{CloneKind, KineticParams};
pub use plant::PlantSpec;
pub use reactor::{VirtualReactor, VirtualReactorConfig};
