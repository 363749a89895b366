//! Integration tests of perfusio-mechanistic (one binary, one module per topic).

mod controls;
mod design;
mod physics;
mod reactor;

use perfusio_core::{Control, ControlArray, SpeciesArray};
use perfusio_mechanistic::{CloneKind, KineticParams, PlantModel, initial_state};

/// Daily states of a run with constant controls.
pub fn run(clone: CloneKind, controls: ControlArray<f64>, days: usize) -> Vec<SpeciesArray<f64>> {
    PlantModel::new(KineticParams::for_clone(clone))
        .simulate(&initial_state(), &vec![controls; days])
        .unwrap()
}

/// Default controls with some overridden.
pub fn controls(over: &[(Control, f64)]) -> ControlArray<f64> {
    let mut c = Control::defaults();
    for (k, v) in over {
        c[k.index()] = *v;
    }
    c
}
