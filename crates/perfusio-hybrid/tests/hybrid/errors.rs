//! Bad input gets typed errors.

use perfusio_core::{Control, N_SPECIES};
use perfusio_hybrid::{ForecastOptions, HybridConfig, HybridError, HybridModel, StateEstimate};

use crate::common::defaults;

#[test]
fn bad_input_is_reported_with_a_typed_error() {
    let model = HybridModel::new(HybridConfig::default()).unwrap();
    let tr = model.config().transform;
    let mut s = [1.0; N_SPECIES];
    s[3] = f64::NAN;
    assert!(matches!(
        model.predict_next_state(&s, &defaults(), 0),
        Err(HybridError::Data(_))
    ));
    let start = StateEstimate::known(0, &[1.0; N_SPECIES], &tr);
    assert!(matches!(
        model.forecast(&start, &[], &ForecastOptions::default()),
        Err(HybridError::Config(_))
    ));
    let mut bad = defaults();
    bad[Control::BleedRate.index()] = 1.8; // above perfusion: the mechanism refuses
    let e = model
        .forecast(&start, &[bad], &ForecastOptions::default())
        .unwrap_err();
    assert!(e.to_string().contains("bleed"), "{e}");
    // too little data to train
    let mut m = HybridModel::new(HybridConfig::default()).unwrap();
    m.record_day("r", None, 0, [Some(1.0); N_SPECIES]).unwrap();
    assert!(matches!(
        m.retrain(false),
        Err(HybridError::TooFewTransitions { got: 0, .. })
    ));
    // a task rank above the number of species, for either setting, names the field
    for (rank, one_line, field) in [
        (10, None, "gp.rank = 10"),
        (2, Some(10), "gp.rank_one_line = 10"),
    ] {
        let mut cfg = HybridConfig::default();
        cfg.gp.rank = rank;
        cfg.gp.rank_one_line = one_line;
        match HybridModel::new(cfg) {
            Err(HybridError::Config(m)) => assert!(m.contains(field), "{m}"),
            other => panic!("expected a config error, got {other:?}"),
        }
    }
    // wrong file
    assert!(matches!(
        HybridModel::from_json("{\"format\":\"x\"}"),
        Err(HybridError::ModelFile { .. })
    ));
    // invalid configuration names the field
    let e = HybridModel::new(HybridConfig {
        max_day: 0,
        ..HybridConfig::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("max_day"), "{e}");
}
