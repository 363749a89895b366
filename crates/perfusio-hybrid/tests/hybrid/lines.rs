//! Learning across cell lines: the line embedding, unseen lines, save/load and extension.

use perfusio_core::Trajectory;
use perfusio_gp::KernelSpec;
use perfusio_hybrid::{HybridConfig, HybridError, HybridModel, LineChoice};
use perfusio_mechanistic::CloneKind;

use crate::common::{defaults, design_runs};

const STATE: [f64; 9] = [5.0, 97.0, 3.0, 2.0, 1.0, 9.0, 2.0, 0.0, 120.0];

fn labelled(runs: Vec<Trajectory>, line: &str) -> Vec<(Trajectory, Option<String>)> {
    // run ids are per design: prefix them with the line so the runs stay distinct
    runs.into_iter()
        .map(|mut t| {
            t.run_id = format!("{line}-{}", t.run_id);
            (t, Some(line.into()))
        })
        .collect()
}

fn config() -> HybridConfig {
    HybridConfig {
        calibrate: None,
        max_day: 14,
        ..HybridConfig::default()
    }
}

/// Clone X (4 runs) and clone Y (4 runs), 14 days each, as lines "X" and "Y".
fn two_lines() -> HybridModel {
    let mut runs = labelled(design_runs(4, 14, CloneKind::CloneX, 5), "X");
    runs.extend(labelled(design_runs(4, 14, CloneKind::CloneY, 6), "Y"));
    let (m, report) = HybridModel::fit_runs(config(), &runs).unwrap();
    assert!(report.converged, "{report:?}");
    m
}

fn embedding(m: &HybridModel) -> perfusio_gp::LevelEmbedding {
    match m.gp().unwrap().kernel() {
        KernelSpec::Product(parts) => match &parts[1] {
            KernelSpec::LevelEmbedding(e) => e.clone(),
            other => panic!("no embedding: {other:?}"),
        },
        other => panic!("no product kernel: {other:?}"),
    }
}

#[test]
fn two_lines_learn_one_embedding_that_round_trips() {
    let mut m = two_lines();
    assert_eq!(m.lines(), ["X", "Y"]);
    let e = embedding(&m);
    assert_eq!((e.n_levels, e.dims), (2, 2));
    assert_eq!(m.select_line(Some("Y")), LineChoice::Known(1));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.json");
    m.save(&path).unwrap();
    let loaded = HybridModel::load(&path).unwrap();
    assert_eq!(loaded.lines(), m.lines());
    assert_eq!(loaded.prediction_line(), Some("Y"));
    assert_eq!(embedding(&loaded), e);
    assert_eq!(loaded.fingerprint(), m.fingerprint());
    let a = m.predict_next_state(&STATE, &defaults(), 6).unwrap();
    let b = loaded.predict_next_state(&STATE, &defaults(), 6).unwrap();
    for k in 0..9 {
        assert_eq!(a.species[k].mean.to_bits(), b.species[k].mean.to_bits());
        assert_eq!(a.species[k].sd.to_bits(), b.species[k].sd.to_bits());
    }
}

#[test]
fn an_unseen_line_is_predicted_with_extra_uncertainty_or_refused_by_name() {
    let mut m = two_lines();
    assert_eq!(m.select_line(Some("Y")), LineChoice::Known(1));
    let known = m.predict_next_state(&STATE, &defaults(), 6).unwrap();
    assert_eq!(m.select_line(Some("Z")), LineChoice::Unseen);
    let unseen = m.predict_next_state(&STATE, &defaults(), 6).unwrap();
    // the line-specific part of the learned correction is uncertain for a new line
    let wider = (0..9)
        .filter(|&k| unseen.species[k].sd > known.species[k].sd * (1.0 + 1e-9))
        .count();
    assert!(wider >= 7, "only {wider} of 9 species got wider bands");
    for k in 0..9 {
        assert!(unseen.species[k].mean.is_finite() && unseen.species[k].sd.is_finite());
    }
    match m.require_line("Z") {
        Err(HybridError::UnknownLine { label, known }) => {
            assert_eq!(label, "Z");
            assert_eq!(known, ["X", "Y"]);
        }
        other => panic!("expected UnknownLine, got {other:?}"),
    }
    assert_eq!(m.require_line("X").unwrap(), 0);
}

#[test]
fn one_line_has_no_embedding_and_the_old_kernel() {
    let runs = labelled(design_runs(3, 10, CloneKind::CloneX, 5), "X");
    let (mut m, _) = HybridModel::fit_runs(config(), &runs).unwrap();
    assert!(m.lines().is_empty());
    assert!(matches!(m.gp().unwrap().kernel(), KernelSpec::Matern(_)));
    assert_eq!(m.select_line(Some("Q")), LineChoice::NoEmbedding);
    assert_eq!(m.gp_base_cols(), 25);
}

#[test]
fn a_saved_two_line_model_is_extended_with_a_third_line_warm() {
    let m = two_lines();
    let e2 = embedding(&m);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.json");
    m.save(&path).unwrap();
    let mut loaded = HybridModel::load(&path).unwrap();
    let added = loaded
        .add_runs(&labelled(design_runs(3, 7, CloneKind::CloneY, 9), "C"))
        .unwrap();
    assert_eq!(added, 3 * 8);
    let report = loaded.retrain(true).unwrap();
    assert!(report.warm_start && report.converged, "{report:?}");
    assert_eq!(loaded.lines(), ["X", "Y", "C"]);
    let e3 = embedding(&loaded);
    assert_eq!(e3.n_levels, 3);
    assert!(e3.coords.iter().all(|v| v.is_finite()));
    // from scratch, the same data take more optimiser iterations than the warm extension
    let mut scratch = HybridModel::with_dataset(config(), loaded.dataset().clone()).unwrap();
    let r0 = scratch.retrain(false).unwrap();
    assert!(
        report.iterations < r0.iterations,
        "warm {} vs scratch {} iterations (old positions {:?})",
        report.iterations,
        r0.iterations,
        e2.coords
    );
}

/// Off-diagonal entries of the fitted task covariance, largest magnitude.
fn largest_coupling(m: &HybridModel) -> f64 {
    let b = m.gp().unwrap().task_covariance();
    (0..9)
        .flat_map(|i| (0..9).filter(move |&j| j != i).map(move |j| (i, j)))
        .map(|(i, j)| b[i * 9 + j].abs())
        .fold(0.0, f64::max)
}

#[test]
fn a_one_line_design_fit_has_independent_species_and_a_second_line_brings_the_coupling() {
    let cfg = HybridConfig {
        calibrate: None,
        max_day: 14,
        ..HybridConfig::for_design(perfusio_mechanistic::KineticParams::clone_x(), "CloneX")
    };
    let runs = labelled(design_runs(4, 14, CloneKind::CloneX, 5), "X");
    let (mut m, report) = HybridModel::fit_runs(cfg.clone(), &runs).unwrap();
    assert!(report.converged, "{report:?}");
    assert_eq!((m.task_rank(), m.gp().unwrap().rank()), (0, 0));
    assert_eq!(largest_coupling(&m).to_bits(), 0.0f64.to_bits());
    // the same runs under the online default keep the rank-2 coupling
    let (online, _) = HybridModel::fit_runs(config(), &runs).unwrap();
    assert_eq!(online.gp().unwrap().rank(), 2);
    assert!(largest_coupling(&online) > 1e-3);
    // a second line: the embedding and the coupling arrive with it, warm from the old kernel
    m.add_runs(&labelled(design_runs(4, 14, CloneKind::CloneY, 6), "Y"))
        .unwrap();
    let grown = m.retrain(true).unwrap();
    assert!(grown.warm_start && grown.converged, "{grown:?}");
    assert_eq!(m.lines(), ["X", "Y"]);
    assert_eq!((m.task_rank(), m.gp().unwrap().rank()), (2, 2));
    assert!(largest_coupling(&m) > 1e-3);
    assert_eq!(embedding(&m).n_levels, 2);
    m.select_line(Some("Y"));
    let p = m.predict_next_state(&STATE, &defaults(), 6).unwrap();
    assert!(p.species.iter().all(|s| s.mean.is_finite() && s.sd > 0.0));
}

/// Clone X and clone Y runs as lines "X" and "Y", with a mechanism calibrated per line.
#[test]
fn each_line_gets_a_mechanism_calibrated_on_its_own_runs_and_it_travels() {
    use perfusio_hybrid::{CalibrationConfig, MechanisticMean};
    let mut runs = labelled(design_runs(6, 21, CloneKind::CloneX, 5), "X");
    runs.extend(labelled(design_runs(6, 21, CloneKind::CloneY, 6), "Y"));
    let cfg = HybridConfig {
        calibrate: Some(CalibrationConfig {
            per_line: true,
            ..CalibrationConfig::default()
        }),
        max_day: 21,
        ..HybridConfig::default()
    };
    let (mut m, report) = HybridModel::fit_runs(cfg.clone(), &runs).unwrap();
    assert!(report.converged, "{report:?}");
    for (line, r) in &report.line_calibrations {
        eprintln!("line {line}\n{}", r.table());
    }
    let lines: Vec<&String> = report.line_calibrations.keys().collect();
    assert_eq!(lines, ["X", "Y"]);
    // the pathway test of each line's own runs: X takes up lactate, Y does not
    assert!(m.line_params()["X"].consumes_lactate);
    assert!(!m.line_params()["Y"].consumes_lactate);
    assert_eq!(m.mechanism_params_for(Some("Y")), &m.line_params()["Y"]);
    assert_eq!(m.mechanism_params_for(Some("X")), &m.line_params()["X"]);
    // an unseen line uses the shared mechanism (calibrated on all runs)
    assert_eq!(m.mechanism_params_for(None), m.mechanism_params());
    assert_eq!(m.mechanism_params_for(Some("Z")), m.mechanism_params());

    // the GP input for line Y carries Y's mechanism step, for X X's
    let z: [f64; 9] = std::array::from_fn(|k| cfg.transform.z(k, STATE[k]));
    let x = HybridModel::z_input(&z, &defaults(), 10);
    for line in ["X", "Y"] {
        m.select_line(Some(line));
        let own = MechanisticMean::new(
            m.line_params()[line],
            cfg.transform,
            &cfg.design_space,
            cfg.integrator,
        )
        .step_z(&x)
        .unwrap();
        let input = m.gp_input(&x).unwrap();
        for k in 0..9 {
            assert_eq!(
                input[16 + k].to_bits(),
                own[k].to_bits(),
                "line {line}, species {k}"
            );
        }
    }
    // below the glucose switch (0.5 g/L, lactate 30 mmol/L) line X's mechanism takes
    // lactate up and line Y's does not: X's one-day lactate is the lower
    let mut low = STATE;
    (low[2], low[5]) = (0.5, 30.0);
    let zl: [f64; 9] = std::array::from_fn(|k| cfg.transform.z(k, low[k]));
    let xl = HybridModel::z_input(&zl, &defaults(), 10);
    let lac_y = m.gp_input(&xl).unwrap()[16 + 5];
    m.select_line(Some("X"));
    let lac_x = m.gp_input(&xl).unwrap()[16 + 5];
    assert!(lac_x < lac_y - 0.01, "X {lac_x} vs Y {lac_y}");

    // save and load: the per-line mechanisms and their reports travel
    m.select_line(Some("Y"));
    let loaded = HybridModel::from_json(&m.to_json().unwrap()).unwrap();
    assert_eq!(loaded.line_params(), m.line_params());
    assert_eq!(loaded.line_calibrations(), m.line_calibrations());
    assert_eq!(loaded.fingerprint(), m.fingerprint());
    let a = m.predict_next_state(&STATE, &defaults(), 10).unwrap();
    let b = loaded.predict_next_state(&STATE, &defaults(), 10).unwrap();
    for k in 0..9 {
        assert_eq!(a.species[k].mean.to_bits(), b.species[k].mean.to_bits());
    }
    // a malformed per-line mechanism in the file is refused
    let mut v: serde_json::Value = serde_json::from_str(&m.to_json().unwrap()).unwrap();
    v["line_params"]["Y"]["mu_max"] = serde_json::json!(-1.0);
    assert!(HybridModel::from_json(&v.to_string()).is_err());

    // without per_line: no mechanism of a line's own, and the fingerprint differs
    let (plain, r2) = HybridModel::fit_runs(
        HybridConfig {
            calibrate: Some(CalibrationConfig::default()),
            ..cfg.clone()
        },
        &runs,
    )
    .unwrap();
    assert!(plain.line_params().is_empty() && r2.line_calibrations.is_empty());
    assert_eq!(
        plain.mechanism_params_for(Some("Y")),
        plain.mechanism_params()
    );
}
