//! One test per control: the direction of its effect over 14 days, and neutrality at the
//! default operating point.

use perfusio_core::{Control, Species};
use perfusio_mechanistic::{CloneKind, KineticParams, PlantModel, initial_state};

use crate::{controls, run};

const VCD: usize = Species::VCD.index();
const VIA: usize = Species::Via.index();

fn day14(over: &[(Control, f64)]) -> [f64; 9] {
    run(CloneKind::CloneX, controls(over), 14)[14]
}

#[test]
fn more_perfusion_with_richer_glucose_gives_more_cells() {
    let base = day14(&[]);
    let rich = day14(&[
        (Control::PerfusionRate, 2.0),
        (Control::GlucoseSetpoint, 8.0),
    ]);
    assert!(
        rich[VCD] > 1.5 * base[VCD],
        "{} vs {}",
        rich[VCD],
        base[VCD]
    );
    // perfusion alone (more medium) also helps
    let more = day14(&[(Control::PerfusionRate, 1.5)]);
    assert!(more[VCD] > base[VCD]);
}

#[test]
fn more_bleed_gives_fewer_cells() {
    let low = day14(&[(Control::BleedRate, 0.05)]);
    let high = day14(&[(Control::BleedRate, 0.30)]);
    assert!(high[VCD] < low[VCD], "{} vs {}", high[VCD], low[VCD]);
}

#[test]
fn glucose_setpoint_raises_glucose() {
    let low = day14(&[
        (Control::GlucoseSetpoint, 4.0),
        (Control::PerfusionRate, 2.0),
    ]);
    let high = day14(&[
        (Control::GlucoseSetpoint, 8.0),
        (Control::PerfusionRate, 2.0),
    ]);
    let g = Species::Glc.index();
    assert!(high[g] > low[g] + 0.5, "{} vs {}", high[g], low[g]);
}

#[test]
fn hypothermia_slows_growth_and_raises_specific_productivity() {
    let m = PlantModel::new(KineticParams::clone_x());
    let y0 = initial_state();
    let warm = m.rates(&y0, &controls(&[]));
    let cold = m.rates(&y0, &controls(&[(Control::Temperature, 35.0)]));
    assert!(cold.mu < warm.mu);
    // specific productivity Q_mab / X at the same state
    assert!(cold.q_mab > warm.q_mab, "{} vs {}", cold.q_mab, warm.q_mab);
    let w = run(CloneKind::CloneX, controls(&[]), 14);
    let c = run(
        CloneKind::CloneX,
        controls(&[(Control::Temperature, 35.0)]),
        14,
    );
    assert!(
        c[3][VCD] < w[3][VCD],
        "growth over the first days is slower at 35 °C"
    );
    // titer produced per cumulative viable cell over 14 days is higher when cold
    let ivcd = |r: &[[f64; 9]]| {
        r.windows(2)
            .map(|p| 0.5 * (p[0][VCD] + p[1][VCD]))
            .sum::<f64>()
    };
    let t = Species::Titer.index();
    assert!(c[14][t] / ivcd(&c) > w[14][t] / ivcd(&w));
    // and the death rate falls with temperature: viability stays higher
    assert!(c[14][VIA] > w[14][VIA]);
}

#[test]
fn pyruvate_feed_lowers_ammonium() {
    let without = day14(&[]);
    let with = day14(&[(Control::PyruvateFeed, 3.0)]);
    let a = Species::Amm.index();
    assert!(with[a] < 0.9 * without[a], "{} vs {}", with[a], without[a]);
    assert!(with[Species::Pyr.index()] > 0.0);
}

#[test]
fn agitation_above_1050_kills_faster_and_below_700_limits_growth() {
    let m = PlantModel::new(KineticParams::clone_x());
    let c = |rpm: f64| controls(&[(Control::Agitation, rpm)]);
    let y = |rpm: f64| m.simulate(&initial_state(), &vec![c(rpm); 14]).unwrap()[14];
    let normal = y(850.0);
    let shear = y(1250.0);
    assert!(
        shear[VIA] < normal[VIA] - 1.0,
        "{} vs {}",
        shear[VIA],
        normal[VIA]
    );
    assert!(shear[VCD] < normal[VCD]);
    let r = m.rates(&initial_state(), &c(1250.0));
    approx::assert_relative_eq!(r.k_d, 0.003 + 0.002 * 2.0, max_relative = 1e-12);
    let starved = m.rates(&initial_state(), &c(350.0));
    let full = m.rates(&initial_state(), &c(850.0));
    approx::assert_relative_eq!(starved.mu, 0.5 * full.mu, max_relative = 1e-12);
}

/// Every (E) effect is neutral at 37 °C and 700–1050 rpm: bit-identical trajectories.
#[test]
fn control_effects_are_neutral_inside_the_agitation_window() {
    let base = run(CloneKind::CloneX, controls(&[]), 14);
    for rpm in [700.0, 1000.0, 1050.0] {
        let other = run(
            CloneKind::CloneX,
            controls(&[(Control::Agitation, rpm)]),
            14,
        );
        for (a, b) in base.iter().zip(&other) {
            assert_eq!(a.map(f64::to_bits), b.map(f64::to_bits), "rpm {rpm}");
        }
    }
}
