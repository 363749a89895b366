//! Alarms from forecast quantiles: raised once when the condition appears, cleared when it
//! goes, never repeated while it lasts.

use perfusio_audit::event::{Alarm, AlarmState};
use perfusio_twin::prelude::*;

use crate::common::{quick_config, records, virtual_reactor};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_is_raised_once_and_cleared_once() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let titer = Variable::Species(Species::Titer);
    // the titer starts at 0 and passes 100 mg/L around day 2–3 and 200 around day 4: the
    // first rule holds on the first days and then goes; the second appears and stays
    let rules = vec![
        AlarmRule::below(titer, 100.0)
            .within_days(1)
            .with_probability(0.5)
            .warning(),
        AlarmRule::above(titer, 200.0)
            .within_days(2)
            .with_probability(0.5)
            .critical(),
    ];
    DigitalTwin::builder(
        virtual_reactor(5),
        DEFAULT_AMBR250_DESIGN_SPACE,
        quick_config(7, 5),
    )
    .audit_path(&audit)
    .alarm_rules(rules)
    .build()
    .unwrap()
    .run()
    .await
    .unwrap();
    let alarms: Vec<(f64, Alarm)> = records(&audit)
        .iter()
        .filter(|r| r.kind == "alarm")
        .map(|r| (r.day, r.payload_as().unwrap()))
        .collect();
    let of = |limit: f64| -> Vec<(f64, AlarmState)> {
        alarms
            .iter()
            .filter(|(_, a)| a.threshold.is_some_and(|t| (t - limit).abs() < 1e-12))
            .map(|(d, a)| (*d, a.state))
            .collect()
    };
    let low = of(100.0);
    assert_eq!(low.len(), 2, "{low:?}");
    assert_eq!(low[0], (0.0, AlarmState::Raised));
    assert_eq!(low[1].1, AlarmState::Cleared);
    assert!(low[1].0 >= 1.0 && low[1].0 <= 4.0, "{low:?}");
    let high = of(200.0);
    assert_eq!(high.len(), 1, "raised once and not repeated: {high:?}");
    assert_eq!(high[0].1, AlarmState::Raised);
    assert!(high[0].0 >= 1.0 && high[0].0 <= 5.0, "{high:?}");
    for (_, a) in &alarms {
        assert_eq!(a.species.as_deref(), Some("Titer"));
    }
}

/// A moment-matched forecast (no paths): the alarm's probability is that of its Gaussian in
/// `z`, `Φ((z(limit) − μ)/σ)`, estimated from the per-day draws.
#[test]
fn a_moment_matched_forecast_raises_alarms_with_the_gaussian_probability() {
    use perfusio_twin::layers::hybrid::{DayBand, Forecast, ForecastMethod, LogTransform};
    let tr = LogTransform::default();
    let k = Species::Glc.index();
    // glucose on day 4: median 1.0 g/L, sd 0.5 in z
    let mut mu = [1.0f64; 9];
    for (i, m) in mu.iter_mut().enumerate() {
        *m = tr.z(i, 1.0);
    }
    let mut cov = [[0.0; 9]; 9];
    for (i, row) in cov.iter_mut().enumerate() {
        row[i] = if i == k { 0.25 } else { 1e-4 };
    }
    let band = DayBand {
        day: 4,
        mean: [1.0; 9],
        sd: [0.0; 9],
        quantiles: [[1.0; 9]; 5],
        derived: [[0.0; 5]; 2],
    };
    let f = Forecast {
        start_day: 3,
        method: ForecastMethod::MomentMatching,
        schedule: vec![Control::defaults()],
        state: vec![band.clone()],
        measured: vec![band],
        paths: None,
        measured_paths: None,
        moments: Some(vec![(mu, cov)]),
        measured_moments: None,
        transform: tr,
    };
    // P(Glc < limit) in closed form, for two limits either side of a rule's 0.3
    let p_below = |limit: f64| -> f64 {
        let x = (tr.z(k, limit) - mu[k]) / 0.5;
        normal_cdf(x)
    };
    let draws = f.latent_draws(4000, 9);
    assert_eq!(draws.len(), 4000);
    let frac = draws.iter().filter(|d| d[0][k] < 0.8).count() as f64 / 4000.0;
    let want = p_below(0.8);
    assert!((frac - want).abs() < 0.03, "{frac} vs {want}");
    let glc = Variable::Species(Species::Glc);
    // p(Glc < 0.8) ≈ 0.38: a rule asking 0.3 raises, one asking 0.5 does not
    assert!(
        p_below(0.8) > 0.33 && p_below(0.8) < 0.45,
        "{}",
        p_below(0.8)
    );
    let mut t = perfusio_twin::AlarmTracker::new(vec![
        AlarmRule::below(glc, 0.8)
            .within_days(1)
            .with_probability(0.3),
        AlarmRule::above(glc, 5.0)
            .within_days(1)
            .with_probability(0.5),
    ]);
    let raised = t.evaluate(&f);
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert_eq!(raised[0].state, AlarmState::Raised);
    assert_eq!(raised[0].predicted_day, Some(4));
    let p = raised[0].message.clone();
    assert!(p.contains("below 0.8"), "{p}");
    let mut strict = perfusio_twin::AlarmTracker::new(vec![
        AlarmRule::below(glc, 0.8)
            .within_days(1)
            .with_probability(0.5),
    ]);
    assert!(strict.evaluate(&f).is_empty());
}

/// Φ(x) by Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7).
fn normal_cdf(x: f64) -> f64 {
    let z = x.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-z * z).exp();
    if x >= 0.0 {
        0.5 * (1.0 + erf)
    } else {
        0.5 * (1.0 - erf)
    }
}
