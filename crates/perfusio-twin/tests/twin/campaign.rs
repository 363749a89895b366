//! Campaigns: several virtual reactors over one shared model, the batch, approval,
//! interventions, the configuration's typed errors.

// setpoints are copied from the recommendation to the plant, never recomputed: the tests
// compare them exactly
#![allow(clippy::float_cmp)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use perfusio_audit::Record;
use perfusio_audit::event::{OperatorAction as OperatorActionEvent, SetpointWritten};
use perfusio_connectors::virtual_reactor::VirtualReactorConnector;
use perfusio_core::{Connector, Control, N_SPECIES, Species};
use perfusio_twin::campaign::{
    ApprovalMode, AtDeadline, Campaign, CampaignConfig, CampaignError, CampaignIndex,
    CampaignReport, ConnectorSpec, ReactorConfig,
};
use perfusio_twin::campaign_files::{
    ActionKind, OperatorAction, append_action, read_outcomes, read_snapshot,
};
use perfusio_twin::{ReactorState, TwinError};

use crate::common::{quick_config, records, virtual_reactor};

fn config(dir: &Path, n: usize, days: u32) -> CampaignConfig {
    let mut run = quick_config(days, 11);
    run.allow_write = true;
    run.forecast_horizon_days = 5;
    run.decision_horizon_days = 3;
    CampaignConfig {
        name: "t".into(),
        output_dir: dir.to_path_buf(),
        seed: Some(11),
        prior: None,
        objective: "harvest".into(),
        objectives: Vec::new(),
        medium_cost: 0.0,
        constraints: None,
        best_point_days: None,
        forecast_method: perfusio_twin::layers::hybrid::ForecastMethod::MomentMatching,
        retrain_in_background: false,
        calibrate: None,
        approval: Default::default(),
        run,
        reactors: (1..=n)
            .map(|i| ReactorConfig {
                id: format!("R{i:02}"),
                connector: ConnectorSpec::Virtual {
                    truth: "CloneX".into(),
                    seed: Some(i as u64),
                },
            })
            .collect(),
    }
}

type Plants = Vec<Arc<VirtualReactorConnector>>;

fn plants(n: usize) -> (Plants, Vec<Arc<dyn Connector>>) {
    let p: Plants = (1..=n)
        .map(|i| Arc::new(virtual_reactor(i as u64)))
        .collect();
    let c = p.iter().map(|p| p.clone() as Arc<dyn Connector>).collect();
    (p, c)
}

fn log(dir: &Path, id: &str) -> Vec<Record> {
    records(&dir.join(id).join("audit.jsonl"))
}

fn operator_actions(recs: &[Record]) -> Vec<(String, OperatorActionEvent)> {
    recs.iter()
        .filter(|r| r.kind == "operator_action")
        .map(|r| (r.actor.as_string(), r.payload_as().unwrap()))
        .collect()
}

fn action(id: &str, reactor: &str, day: u32, kind: ActionKind) -> OperatorAction {
    OperatorAction {
        id: id.into(),
        actor: "ana".into(),
        at: "2026-12-02T08:00:00Z".into(),
        reactor: reactor.into(),
        day,
        kind,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_reactors_share_one_model_spread_out_and_every_log_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (plants, conns) = plants(4);
    let cfg = config(dir.path(), 4, 4);
    let report = Campaign::with_connectors(cfg, conns)
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(report.finished.as_deref(), Some("completed"));
    assert_eq!(report.reactors.len(), 4);
    assert_eq!(report.days, 5);
    // every reactor's log verifies on its own, and its head is the index's
    let index = CampaignIndex::read(dir.path()).unwrap();
    assert_eq!(index.days.len(), 5);
    for (r, p) in report.reactors.iter().zip(&plants) {
        let recs = log(dir.path(), &r.id);
        assert!(r.head_matches_index, "{}", r.id);
        assert_eq!(recs.first().unwrap().kind, "run_started");
        assert_eq!(recs.last().unwrap().kind, "run_finished");
        assert_eq!(recs.iter().filter(|x| x.kind == "sample_read").count(), 5);
        assert_eq!(recs.iter().filter(|x| x.kind == "decision").count(), 4);
        assert_eq!(
            recs.iter().filter(|x| x.kind == "setpoint_written").count(),
            4
        );
        // the shared model retrained on day 3, recorded in every log with one hash
        assert_eq!(
            recs.iter().filter(|x| x.kind == "model_retrained").count(),
            1
        );
        assert!(recs.iter().all(|x| x.reactor_id == r.id));
        // the plant received what the log says was written on day 3
        let last_written: SetpointWritten = recs
            .iter()
            .rfind(|x| x.kind == "setpoint_written")
            .unwrap()
            .payload_as()
            .unwrap();
        let applied = p.snapshot().unwrap().applied_controls()[3];
        for c in &last_written.receipt.controls {
            assert!((applied[c.control.index()] - c.requested).abs() < 1e-9);
        }
    }
    let shas: Vec<String> = report
        .reactors
        .iter()
        .map(|r| {
            let recs = log(dir.path(), &r.id);
            let x = recs.iter().find(|x| x.kind == "model_retrained").unwrap();
            x.payload["model_sha256"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(shas.windows(2).all(|w| w[0] == w[1]), "{shas:?}");
    // the batch spreads the reactors: day-0 decisions are not all the same point
    let day0: Vec<Vec<f64>> = plants
        .iter()
        .map(|p| p.snapshot().unwrap().applied_controls()[0].to_vec())
        .collect();
    let distinct = day0
        .iter()
        .enumerate()
        .filter(|(i, a)| {
            !day0[..*i]
                .iter()
                .any(|b| a.iter().zip(b.iter()).all(|(x, y)| (x - y).abs() < 1e-9))
        })
        .count();
    assert!(distinct >= 3, "day-0 batch: {day0:?}");
    // the snapshot: observations with gaps as None, bands for every species, best point
    let snap = read_snapshot(dir.path()).unwrap().unwrap();
    assert_eq!(snap.status, "completed");
    assert_eq!(snap.reactors.len(), 4);
    let mut gaps = 0;
    for r in &snap.reactors {
        assert_eq!(r.observations.len(), 5);
        // each observation is the recorded sample, a value that was not measured is None
        let samples: Vec<perfusio_audit::event::SampleRead> = log(dir.path(), &r.id)
            .iter()
            .filter(|x| x.kind == "sample_read")
            .map(|x| x.payload_as().unwrap())
            .collect();
        for (o, s) in r.observations.iter().zip(&samples) {
            for (name, v) in &o.values {
                assert_eq!(
                    *v,
                    s.values.get(name).copied().flatten(),
                    "{} day {}",
                    r.id,
                    o.day
                );
                gaps += usize::from(v.is_none());
            }
        }
        assert!(r.observations.iter().all(|o| o.values.len() == N_SPECIES));
        let f = r.forecast.as_ref().unwrap();
        assert_eq!(f.from_day, 3);
        assert_eq!(f.days, vec![4, 5, 6, 7, 8]);
        assert_eq!(f.species.len(), N_SPECIES);
        for bands in f.species.values() {
            assert_eq!(bands.len(), 5);
            for b in bands {
                assert!(b.q05 <= b.q25 && b.q25 <= b.q50 && b.q50 <= b.q75 && b.q75 <= b.q95);
            }
        }
        assert!(r.pending.is_none());
        assert_eq!(r.setpoints[0].source, "initial");
        assert!(r.setpoints[1..].iter().all(|e| e.source == "twin"));
    }
    assert!(
        gaps > 0,
        "the noisy virtual reactors miss some values; they must show as None"
    );
    let moved = snap
        .reactors
        .iter()
        .filter(|r| r.setpoints.len() >= 2)
        .count();
    assert!(
        moved >= 3,
        "reactors that left the initial setpoints: {moved}"
    );
    let best = snap.best_point.unwrap();
    assert!(best.objective_mean.is_finite() && best.objective_mean > 0.0);
    assert!(best.objective_sd >= 0.0);
    assert_eq!(best.controls.len(), Control::ALL.len());
    // the report: the model's accuracy on the campaign's own data
    let vcd = report
        .accuracy
        .iter()
        .find(|a| a.species == Species::VCD.name())
        .unwrap();
    // one pair per next-day VCD measurement (a missing one is a gap, not a zero)
    let measured_next: usize = snap
        .reactors
        .iter()
        .flat_map(|r| &r.observations)
        .filter(|o| o.day >= 1 && o.values["VCD"].is_some())
        .count();
    assert!(measured_next >= 12);
    assert_eq!(vcd.n, measured_next);
    assert!(vcd.rrmse.is_finite() && vcd.rrmse < 0.5, "{vcd:?}");
    // the expected next samples are the measured value's bands under the setpoints that were
    // written: most next-day measurements fall inside them
    assert!(vcd.coverage90 >= 0.6, "{vcd:?}");
    let again = CampaignReport::from_dir(dir.path()).unwrap();
    assert_eq!(again.reactors.len(), 4);
    assert!(report.to_string().contains("best operating point"));
}

/// Issue 14: two objectives make the daily batch a qNEHVI batch; every decision is audited
/// with both objectives' estimates, and the report and snapshot give the front of
/// operating points found with each point's two predictions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_objectives_give_a_qnehvi_batch_and_a_pareto_front() {
    use perfusio_audit::event::Decision as DecisionEvent;
    use perfusio_core::Acquisition;
    let dir = tempfile::tempdir().unwrap();
    let (_plants, conns) = plants(4);
    let mut cfg = config(dir.path(), 4, 4);
    cfg.objectives = vec!["harvest".into(), "final-titer".into()];
    let report = Campaign::with_connectors(cfg, conns)
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(report.finished.as_deref(), Some("completed"));
    assert_eq!(report.objective, "harvest, final-titer");
    // each day's decisions over the reactors
    let mut days: Vec<Vec<String>> = vec![Vec::new(); 4];
    for r in &report.reactors {
        let decisions: Vec<DecisionEvent> = log(dir.path(), &r.id)
            .iter()
            .filter(|x| x.kind == "decision")
            .map(|x| x.payload_as().unwrap())
            .collect();
        assert_eq!(decisions.len(), 4, "{}", r.id);
        for (day, d) in decisions.into_iter().enumerate() {
            assert_eq!(d.acquisition, Acquisition::QNEHVI);
            let names: Vec<&str> = d.objectives.iter().map(|o| o.name.as_str()).collect();
            assert_eq!(names, ["harvest", "final-titer"]);
            assert_eq!(d.objectives[0].recommended, d.recommended);
            assert!(d.acquisition_value >= 0.0, "{}", d.acquisition_value);
            days[day].push(format!("{:?}", d.controls));
        }
    }
    // the reactors were not all sent to one point on any day
    for (day, mut points) in days.into_iter().enumerate() {
        points.sort();
        points.dedup();
        assert!(points.len() > 1, "day {day}: all reactors at {points:?}");
    }
    // the front: mutually non-dominated by their means, each with both objectives
    let best = report.best_point.as_ref().unwrap();
    assert_eq!(best.objectives.len(), 2);
    // the final day searched the model to convergence
    let search = best.search.as_deref().unwrap();
    assert!(
        search.starts_with("final compass search") && search.contains("converged"),
        "{search}"
    );
    assert!(!report.pareto_front.is_empty() && report.pareto_front.len() <= 8);
    let means: Vec<(f64, f64)> = report
        .pareto_front
        .iter()
        .map(|p| {
            assert_eq!(p.objectives.len(), 2);
            assert_eq!(p.objectives[0].mean, p.objective_mean);
            (p.objectives[0].mean, p.objectives[1].mean)
        })
        .collect();
    eprintln!("front {means:.1?}, best {:.1}", best.objective_mean);
    let snapshot = read_snapshot(dir.path()).unwrap().unwrap();
    assert_eq!(snapshot.pareto_front, report.pareto_front);
    let text = report.to_string();
    assert!(
        text.contains("Pareto front of the operating points found"),
        "{text}"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(
        json["pareto_front"].as_array().unwrap().len(),
        report.pareto_front.len()
    );
}

/// The smallest valid campaign file: one virtual reactor.
const MINIMAL_TOML: &str = r#"
    name = "c"
    output_dir = "out"
    [[reactors]]
    id = "R01"
    connector = { kind = "virtual", truth = "CloneY" }
"#;

#[test]
fn objectives_that_cannot_be_traded_off_are_typed_errors() {
    let base = MINIMAL_TOML;
    let ok = format!("objectives = [\"harvest\", \"final-titer\"]\nmedium_cost = 400.0\n{base}");
    let c = CampaignConfig::from_toml_str(&ok).unwrap();
    assert_eq!(
        c.objective_specs(),
        [
            ("harvest".to_string(), 400.0),
            ("final-titer".to_string(), 0.0)
        ]
    );
    let cases = [
        (format!("objectives = [\"harvest\"]\n{base}"), "objectives"),
        (
            format!(
                "objective = \"final-titer\"\nobjectives = [\"harvest\", \"final-titer\"]\n{base}"
            ),
            "objective",
        ),
        (
            format!(
                "objectives = [\"final-titer\", \"track:VCV=10\"]\nmedium_cost = 400.0\n{base}"
            ),
            "medium_cost",
        ),
        (
            format!("{base}\n[run]\nacquisition = \"qnehvi\"\n"),
            "run.acquisition",
        ),
        (
            format!(
                "objectives = [\"harvest\", \"final-titer\"]\n{base}\n[run]\nacquisition = \"qnparego\"\n"
            ),
            "run.acquisition",
        ),
    ];
    for (text, name) in cases {
        match CampaignConfig::from_toml_str(&text) {
            Err(CampaignError::Invalid { name: n, reason }) => assert_eq!(n, name, "{reason}"),
            other => panic!("{name}: expected a typed error, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_recommendation_waits_for_approval_edits_are_checked_and_the_deadline_holds() {
    let dir = tempfile::tempdir().unwrap();
    let (plants, conns) = plants(3);
    let mut cfg = config(dir.path(), 3, 1);
    cfg.approval.mode = ApprovalMode::Required;
    cfg.approval.deadline = Duration::from_secs(6);
    cfg.approval.at_deadline = AtDeadline::Hold;
    let campaign = Campaign::with_connectors(cfg, conns)
        .unwrap()
        .action_poll(Duration::from_millis(20));
    let run = tokio::spawn(campaign.run());
    // wait for the day-0 recommendations to be published as pending
    let snap = loop {
        if let Some(s) = read_snapshot(dir.path()).unwrap()
            && s.reactors.iter().all(|r| r.pending.is_some())
        {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let pending = snap.reactors[0].pending.clone().unwrap();
    assert_eq!(pending.day, 0);
    assert_eq!(pending.at_deadline, "hold");
    assert!(!pending.reason.is_empty());
    // nothing was written while it waits
    tokio::time::sleep(Duration::from_millis(200)).await;
    for p in &plants {
        assert_eq!(p.snapshot().unwrap().setpoints(), Control::defaults());
    }
    // an edit outside the design space is refused with the reason; the recommendation waits
    let bad = BTreeMap::from([("perfusion_rate".to_string(), 50.0)]);
    append_action(
        dir.path(),
        &action("ana-1", "R01", 0, ActionKind::Edit { values: bad }),
    )
    .unwrap();
    let refused = loop {
        if let Some(o) = read_outcomes(dir.path())
            .unwrap()
            .into_iter()
            .find(|o| o.action == "ana-1")
        {
            break o;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!refused.accepted);
    assert!(
        refused.reason.contains("design space"),
        "{}",
        refused.reason
    );
    assert!(refused.reason.contains("perfusion"), "{}", refused.reason);
    assert_eq!(
        plants[0].snapshot().unwrap().setpoints(),
        Control::defaults()
    );
    // an approval of a reactor that is not in the campaign is refused too
    append_action(dir.path(), &action("ana-2", "R09", 0, ActionKind::Approve)).unwrap();
    // approve R01; nobody acts on R02 until the deadline (hold); R03 is overridden and
    // gets a bolus while its recommendation waits
    append_action(dir.path(), &action("ana-3", "R01", 0, ActionKind::Approve)).unwrap();
    append_action(
        dir.path(),
        &action(
            "ana-4",
            "R03",
            0,
            ActionKind::GlucoseBolus { mmol_per_l: 5.0 },
        ),
    )
    .unwrap();
    append_action(
        dir.path(),
        &action(
            "ana-5",
            "R03",
            0,
            ActionKind::SetpointOverride {
                values: BTreeMap::from([("temperature".to_string(), 35.0)]),
            },
        ),
    )
    .unwrap();
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.finished.as_deref(), Some("completed"));
    let recommended: Vec<f64> = Control::ALL
        .iter()
        .map(|c| pending.recommended[c.name()])
        .collect();
    let r01 = plants[0].snapshot().unwrap().applied_controls()[0];
    assert_eq!(
        r01.to_vec(),
        recommended,
        "R01 received the approved values"
    );
    assert_eq!(
        plants[1].snapshot().unwrap().applied_controls()[0],
        Control::defaults(),
        "R02 held at the deadline"
    );
    let outcomes = read_outcomes(dir.path()).unwrap();
    let by_id = |id: &str| outcomes.iter().find(|o| o.action == id).unwrap();
    assert!(!by_id("ana-2").accepted && by_id("ana-2").reason.contains("R09"));
    assert!(by_id("ana-3").accepted);
    assert!(by_id("ana-4").accepted, "{}", by_id("ana-4").reason);
    assert!(by_id("ana-5").accepted, "{}", by_id("ana-5").reason);
    assert_eq!(outcomes.len(), 5, "each action answered once");
    let r3 = plants[2].snapshot().unwrap();
    let mut expected = Control::defaults();
    expected[Control::Temperature.index()] = 35.0;
    assert_eq!(r3.applied_controls()[0], expected, "R03 ran the override");
    let acts = operator_actions(&log(dir.path(), "R03"));
    assert_eq!(
        acts.iter().map(|a| a.1.action.as_str()).collect::<Vec<_>>(),
        ["glucose_bolus", "setpoint_override"]
    );
    // the audit: the operator's actions with the actor, the deadline's hold by the system
    let r1 = log(dir.path(), "R01");
    let acts = operator_actions(&r1);
    assert_eq!(acts.len(), 2);
    assert_eq!(acts[0].0, "operator:ana");
    assert_eq!(
        (acts[0].1.action.as_str(), acts[0].1.accepted),
        ("edit", false)
    );
    assert!(acts[0].1.reason.contains("design space"));
    assert_eq!(acts[0].1.values["perfusion_rate"], 50.0);
    assert_eq!(
        (acts[1].1.action.as_str(), acts[1].1.accepted),
        ("approve", true)
    );
    assert_eq!(
        acts[1].1.before["perfusion_rate"],
        Control::defaults()[Control::PerfusionRate.index()]
    );
    assert_eq!(
        acts[1].1.after["perfusion_rate"],
        pending.recommended["perfusion_rate"]
    );
    assert!(r1.iter().any(|r| r.kind == "setpoint_written"));
    let r2 = log(dir.path(), "R02");
    let acts = operator_actions(&r2);
    assert_eq!(acts.len(), 1);
    assert_eq!(acts[0].0, "system");
    assert_eq!(acts[0].1.action, "deadline_hold");
    assert!(!r2.iter().any(|r| r.kind == "setpoint_written"));
    assert!(r2.iter().any(|r| r.kind == "setpoint_withheld"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_deadline_apply_writes_the_recommendation_and_reject_holds() {
    let dir = tempfile::tempdir().unwrap();
    let (plants, conns) = plants(2);
    let mut cfg = config(dir.path(), 2, 1);
    cfg.approval.mode = ApprovalMode::Required;
    cfg.approval.deadline = Duration::from_millis(1500);
    cfg.approval.at_deadline = AtDeadline::Apply;
    // R02's rejection is there before the recommendation: it is kept for its day
    append_action(
        dir.path(),
        &action(
            "ben-1",
            "R02",
            0,
            ActionKind::Reject {
                reason: Some("too bold".into()),
            },
        ),
    )
    .unwrap();
    let report = Campaign::with_connectors(cfg, conns)
        .unwrap()
        .action_poll(Duration::from_millis(20))
        .run()
        .await
        .unwrap();
    assert_eq!(report.finished.as_deref(), Some("completed"));
    let r1 = log(dir.path(), "R01");
    let acts = operator_actions(&r1);
    assert_eq!(acts.len(), 1);
    assert_eq!(
        (acts[0].0.as_str(), acts[0].1.action.as_str()),
        ("system", "deadline_apply")
    );
    let written: SetpointWritten = r1
        .iter()
        .find(|r| r.kind == "setpoint_written")
        .unwrap()
        .payload_as()
        .unwrap();
    let applied = plants[0].snapshot().unwrap().applied_controls()[0];
    for c in &written.receipt.controls {
        assert!((applied[c.control.index()] - c.requested).abs() < 1e-9);
    }
    let r2 = log(dir.path(), "R02");
    let acts = operator_actions(&r2);
    assert_eq!(acts.len(), 1);
    assert_eq!(acts[0].0, "operator:ana");
    assert_eq!(
        (acts[0].1.action.as_str(), acts[0].1.accepted),
        ("reject", true)
    );
    assert!(acts[0].1.reason.contains("too bold"));
    assert_eq!(
        plants[1].snapshot().unwrap().applied_controls()[0],
        Control::defaults()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interventions_are_audited_used_and_never_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (plants, conns) = plants(2);
    let cfg = config(dir.path(), 2, 2);
    let d = dir.path();
    append_action(
        d,
        &action(
            "i-1",
            "R01",
            1,
            ActionKind::GlucoseBolus { mmol_per_l: 10.0 },
        ),
    )
    .unwrap();
    append_action(
        d,
        &action(
            "i-2",
            "R02",
            1,
            ActionKind::ExtraSample {
                values: BTreeMap::from([("lactate".to_string(), 12.5)]),
            },
        ),
    )
    .unwrap();
    append_action(
        d,
        &action(
            "i-3",
            "R02",
            1,
            ActionKind::SetpointOverride {
                values: BTreeMap::from([("temperature".to_string(), 35.0)]),
            },
        ),
    )
    .unwrap();
    append_action(
        d,
        &action("i-4", "R01", 1, ActionKind::MediaExchange { fraction: 1.7 }),
    )
    .unwrap();
    append_action(
        d,
        &action("i-5", "R01", 9, ActionKind::MediaExchange { fraction: 0.2 }),
    )
    .unwrap();
    Campaign::with_connectors(cfg, conns)
        .unwrap()
        .run()
        .await
        .unwrap();
    let outcomes = read_outcomes(d).unwrap();
    let by_id = |id: &str| outcomes.iter().find(|o| o.action == id).unwrap().clone();
    assert!(by_id("i-1").accepted);
    assert!(by_id("i-2").accepted);
    assert!(by_id("i-3").accepted);
    assert!(!by_id("i-4").accepted && by_id("i-4").reason.contains("(0, 1]"));
    // a day the campaign never reached stays unanswered, in actions.jsonl
    assert!(outcomes.iter().all(|o| o.action != "i-5"));
    let r1 = operator_actions(&log(d, "R01"));
    assert_eq!(r1.len(), 2);
    assert_eq!(r1[0].1.action, "glucose_bolus");
    assert_eq!(r1[0].0, "operator:ana");
    assert!((r1[0].1.after["Glc_added_g_per_l"] - 1.80156).abs() < 1e-9);
    assert!(
        r1[0].1.reason.contains("received by the simulated plant"),
        "{}",
        r1[0].1.reason
    );
    // the virtual reactor received the bolus: its day-1 state is the same plant's without
    // it (same seed, same day-0 setpoints) plus 10 mmol/L of glucose
    let got = plants[0].snapshot().unwrap();
    let mut reference = virtual_reactor(1).snapshot().unwrap();
    reference.set_setpoints(&got.applied_controls()[0]).unwrap();
    reference.advance_day().unwrap();
    let g = Species::Glc.index();
    let diff = got.clean_history()[1][g] - reference.clean_history()[1][g];
    assert!((diff - 1.80156).abs() < 1e-9, "{diff}");
    assert!((got.clean_history()[1][0] - reference.clean_history()[1][0]).abs() < 1e-12);
    let r2 = operator_actions(&log(d, "R02"));
    assert_eq!(
        r2.iter().map(|a| a.1.action.as_str()).collect::<Vec<_>>(),
        ["extra_sample", "setpoint_override"]
    );
    // the extra sample is in the day's observation, the override is what the reactor got
    let snap = read_snapshot(d).unwrap().unwrap();
    let day1 = &snap.reactors[1].observations[1];
    assert_eq!(day1.values["Lac"], Some(12.5));
    let t = plants[1].snapshot().unwrap().applied_controls()[1][Control::Temperature.index()];
    assert!((t - 35.0).abs() < 1e-12);
    assert!(
        snap.reactors[1]
            .setpoints
            .iter()
            .any(|e| e.day == 1 && e.source == "operator:ana")
    );
}

#[test]
fn a_bolus_changes_the_state_the_next_transition_starts_from() {
    use perfusio_hybrid::{HybridConfig, HybridModel, InputSource};
    let mut model = HybridModel::new(HybridConfig::online()).unwrap();
    let mut st = ReactorState::new("r", Control::defaults(), Vec::new());
    let plant = virtual_reactor(3);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let s0 = rt.block_on(plant.read_raw(0)).unwrap();
    let s0 = s0
        .validate(&perfusio_core::DEFAULT_AMBR250_DESIGN_SPACE)
        .sample;
    let s1 = rt.block_on(plant.read_raw(1)).unwrap();
    let s1 = s1
        .validate(&perfusio_core::DEFAULT_AMBR250_DESIGN_SPACE)
        .sample;
    st.learn(&mut model, 0, Some(&s0.species), false).unwrap();
    let est_before = st
        .estimate()
        .unwrap()
        .mean_species(&model.config().transform);
    let mut bolus = [0.0; N_SPECIES];
    bolus[Species::Glc.index()] = 10.0 * perfusio_twin::campaign::GLUCOSE_G_PER_MMOL;
    st.added(&mut model, 0, bolus, true).unwrap();
    let est_after = st
        .estimate()
        .unwrap()
        .mean_species(&model.config().transform);
    let g = Species::Glc.index();
    assert!((est_after[g] - est_before[g] - 1.80156).abs() < 1e-6);
    st.applied(&mut model, 0, Control::defaults(), true)
        .unwrap();
    st.learn(&mut model, 1, Some(&s1.species), false).unwrap();
    for source in [InputSource::Measured, InputSource::Filtered] {
        let t = model.dataset().transitions(source).unwrap();
        assert_eq!(t.len(), 1);
        let start = match source {
            InputSource::Measured => s0.species[g].unwrap(),
            _ => est_before[g],
        };
        assert!(
            (t[0].state[g] - (start + 1.80156)).abs() < 1e-6,
            "{source:?}"
        );
        assert_eq!(
            t[0].next[g], s1.species[g],
            "the target stays the measurement"
        );
    }
}

#[test]
fn unknown_fields_and_bad_values_in_the_toml_are_typed_errors() {
    let base = MINIMAL_TOML;
    CampaignConfig::from_toml_str(base).unwrap();
    let cases = [
        (format!("colour = \"red\"\n{base}"), Some("colour")),
        (
            base.replace("truth = \"CloneY\"", "truth = \"CloneY\", speed = 3"),
            Some("speed"),
        ),
        (
            format!("{base}\n[approval]\nmode = \"required\"\ndeadlin = \"3m\"\n"),
            Some("deadlin"),
        ),
        (
            format!("{base}\n[run]\nduration_dayz = 3\n"),
            Some("duration_dayz"),
        ),
    ];
    for (text, field) in cases {
        match CampaignConfig::from_toml_str(&text) {
            Err(CampaignError::Toml { field: f, message }) => {
                assert_eq!(f.as_deref(), field, "{message}");
                assert!(message.contains(field.unwrap()), "{message}");
            }
            other => panic!("expected a TOML error, got {other:?}"),
        }
    }
    let bad_mode = format!("{base}\n[approval]\nmode = \"sometimes\"\n");
    assert!(matches!(
        CampaignConfig::from_toml_str(&bad_mode),
        Err(CampaignError::Toml { .. })
    ));
    let bad_deadline = format!("{base}\n[approval]\ndeadline = \"soon\"\n");
    match CampaignConfig::from_toml_str(&bad_deadline) {
        Err(CampaignError::Toml { message, .. }) => assert!(message.contains("soon"), "{message}"),
        other => panic!("{other:?}"),
    }
    let twice = format!(
        "{base}\n[[reactors]]\nid = \"R01\"\nconnector = {{ kind = \"file\", path = \"x.csv\" }}\n"
    );
    assert!(matches!(
        CampaignConfig::from_toml_str(&twice),
        Err(CampaignError::Invalid {
            name: "reactors.id",
            ..
        })
    ));
    let cost = base.replace("name = \"c\"", "name = \"c\"\nmedium_cost = -1.0");
    assert!(matches!(
        CampaignConfig::from_toml_str(&cost),
        Err(CampaignError::Invalid {
            name: "medium_cost",
            ..
        })
    ));
}

#[test]
fn twenty_five_reactors_or_none_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 25, 2);
    match Campaign::from_config(cfg) {
        Err(TwinError::Campaign(e)) => {
            assert!(matches!(*e, CampaignError::ReactorCount { n: 25 }), "{e}");
        }
        other => panic!("expected a reactor-count error, got {other:?}"),
    }
    let mut toml = String::from("name = \"c\"\noutput_dir = \"o\"\n");
    for i in 1..=25 {
        toml.push_str(&format!(
            "[[reactors]]\nid = \"R{i:02}\"\nconnector = {{ kind = \"virtual\", truth = \"CloneX\" }}\n"
        ));
    }
    assert!(matches!(
        CampaignConfig::from_toml_str(&toml),
        Err(CampaignError::ReactorCount { n: 25 })
    ));
    let none = "name = \"c\"\noutput_dir = \"o\"\nreactors = []\n";
    assert!(matches!(
        CampaignConfig::from_toml_str(none),
        Err(CampaignError::ReactorCount { n: 0 })
    ));
    // 24 is fine
    let cfg = config(dir.path(), 24, 2);
    Campaign::from_config(cfg).unwrap();
}

#[test]
fn the_readme_example_configuration_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/campaign.example.toml");
    let cfg = CampaignConfig::from_file(&path).unwrap();
    assert_eq!(cfg.reactors.len(), 6);
    assert!(cfg.output_dir.ends_with("campaign-out"));
    assert_eq!(cfg.approval.mode, ApprovalMode::Auto);
    assert_eq!(cfg.run.duration_days, 14);
    assert!((cfg.medium_cost - 400.0).abs() < 1e-12);
    assert_eq!(cfg.prior.as_deref(), Some("CloneX"));
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/campaign.emulator.toml");
    let cfg = CampaignConfig::from_file(&path).unwrap();
    assert_eq!(cfg.reactors.len(), 24);
    assert!(cfg.retrain_in_background);
    // one culture day per second: the 14-day default horizon leaves no margin (README)
    assert_eq!(cfg.run.decision_horizon_days, 3);
    assert!(
        cfg.reactors.iter().all(
            |r| matches!(&r.connector, ConnectorSpec::Opcua { folder, .. } if *folder == r.id)
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_folders_of_one_opcua_server_on_loopback_run_as_a_campaign() {
    use perfusio_connectors::opcua::{
        Emulator, EmulatorConfig, NodeMap, OpcUaConfig, OpcUaConnector,
    };
    use perfusio_connectors::virtual_reactor::virtual_plants;
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(
        EmulatorConfig {
            pki_dir: dir.path().join("pki-server"),
            ..EmulatorConfig::default()
        },
        virtual_plants(3, 4).unwrap(),
    )
    .await
    .unwrap();
    let url = emulator.endpoint_url().to_string();
    let mut cfg = config(dir.path(), 2, 2);
    let mut conns: Vec<Arc<dyn Connector>> = Vec::new();
    for r in &mut cfg.reactors {
        r.connector = ConnectorSpec::Opcua {
            endpoint: url.clone(),
            folder: r.id.clone(),
            pki_dir: None,
            trust_on_first_use: true,
        };
        let mut c = OpcUaConfig::new(url.clone(), NodeMap::ambr250(&r.id));
        c.pki_dir = dir.path().join("pki-client");
        c.trust_on_first_use = true;
        conns.push(Arc::new(OpcUaConnector::new(c).unwrap()));
    }
    let emu = Arc::new(emulator);
    // the server's day moves on once the campaign has finished the current one (a live
    // server only holds the current day)
    let ticker = {
        let emu = emu.clone();
        let out = dir.path().to_path_buf();
        tokio::spawn(async move {
            for day in 0..2usize {
                loop {
                    let done = read_snapshot(&out).ok().flatten().is_some_and(|s| {
                        s.reactors.iter().all(|r| r.observations.len() > day)
                            && s.reactors.iter().all(|r| r.pending.is_none())
                            && s.day as usize == day
                    });
                    if done {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                emu.advance_days(1).unwrap();
            }
        })
    };
    let report = Campaign::with_connectors(cfg, conns)
        .unwrap()
        .sample_wait(Duration::from_secs(10))
        .run()
        .await
        .unwrap();
    ticker.await.unwrap();
    assert_eq!(report.finished.as_deref(), Some("completed"));
    for id in ["R01", "R02"] {
        let recs = log(dir.path(), id);
        let kinds: Vec<(f64, &str, &serde_json::Value)> = recs
            .iter()
            .map(|r| (r.day, r.kind.as_str(), &r.payload))
            .collect();
        assert_eq!(
            recs.iter().filter(|r| r.kind == "sample_read").count(),
            3,
            "{kinds:#?}"
        );
        let written: Vec<SetpointWritten> = recs
            .iter()
            .filter(|r| r.kind == "setpoint_written")
            .map(|r| r.payload_as().unwrap())
            .collect();
        assert_eq!(written.len(), 2);
        for w in &written {
            assert!(
                w.receipt
                    .controls
                    .iter()
                    .all(|c| c.status == perfusio_core::WriteStatus::Confirmed),
                "{id}: {w:?}"
            );
        }
        assert!(recs.iter().all(|r| r.reactor_id == id));
    }
    if let Ok(emu) = Arc::try_unwrap(emu) {
        emu.stop().await;
    }
}

/// Cancels its campaign once day `at` has ended.
#[derive(Debug)]
struct CancelAfter {
    at: u32,
    token: perfusio_twin::CancelToken,
}

impl perfusio_twin::campaign::CampaignObserver for CancelAfter {
    fn day_completed(&self, d: &perfusio_twin::campaign::CampaignDay) {
        if d.day == self.at {
            self.token.cancel();
        }
    }
}

/// Runs a campaign of `cfg` on fresh virtual plants (one per reactor): stopped after day
/// `stop` when given, as a resume when `resume`, waiting for background fits when `wait`.
async fn run_campaign(
    cfg: CampaignConfig,
    stop: Option<u32>,
    resume: bool,
    wait: bool,
) -> Result<CampaignReport, TwinError> {
    let (_, conns) = plants(cfg.reactors.len());
    let mut c = Campaign::with_connectors(cfg, conns)?
        .resume(resume)
        .wait_for_background_fits(wait);
    if let Some(at) = stop {
        let token = perfusio_twin::CancelToken::new();
        c = c
            .cancel_token(token.clone())
            .observer(CancelAfter { at, token });
    }
    c.run().await
}

/// R01's retraining records: day, termination, model hash.
fn retrainings(dir: &Path) -> Vec<(f64, String, String)> {
    log(dir, "R01")
        .iter()
        .filter(|r| r.kind == "model_retrained")
        .map(|r| {
            let text = |k: &str| r.payload[k].as_str().unwrap_or_default().to_string();
            (r.day, text("termination"), text("model_sha256"))
        })
        .collect()
}

/// R01's retraining records: day and payload.
fn retrained_payloads(dir: &Path) -> Vec<(f64, serde_json::Value)> {
    log(dir, "R01")
        .into_iter()
        .filter(|r| r.kind == "model_retrained")
        .map(|r| (r.day, r.payload))
        .collect()
}

/// Runs `cfg` to its end (waiting for background fits when `wait`) and returns R01's
/// retraining records.
async fn completed_retrainings(cfg: CampaignConfig, wait: bool) -> Vec<(f64, serde_json::Value)> {
    let dir = cfg.output_dir.clone();
    let report = run_campaign(cfg, None, false, wait).await.unwrap();
    assert_eq!(report.finished.as_deref(), Some("completed"));
    retrained_payloads(&dir)
}

/// The μ_max in force that a retraining record names, when it names one.
fn calibrated_mu_max(payload: &serde_json::Value) -> Option<f64> {
    payload["calibrated"]["mu_max"]["value"].as_f64()
}

/// The setpoints written to every reactor, by reactor and day.
fn written(dir: &Path, ids: &[&str]) -> Vec<Vec<(f64, Vec<f64>)>> {
    ids.iter()
        .map(|id| {
            log(dir, id)
                .iter()
                .filter(|r| r.kind == "setpoint_written")
                .map(|r| {
                    let w: SetpointWritten = r.payload_as().unwrap();
                    (
                        r.day,
                        w.receipt.controls.iter().map(|c| c.requested).collect(),
                    )
                })
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_calibrates_the_named_parameters_online_and_resumes_alike() {
    let with_cal = |dir: &Path| CampaignConfig {
        calibrate: Some(vec!["mu_max".into()]),
        ..config(dir, 3, 7)
    };
    let full = tempfile::tempdir().unwrap();
    // day 3: 3 reactors × 3 one-day transitions, too few (10) to calibrate, the prior's
    // mechanism in force; day 6: 18 transitions, μ_max calibrated from the prior
    let retrained = completed_retrainings(with_cal(full.path()), false).await;
    assert_eq!(
        retrained.iter().map(|r| r.0).collect::<Vec<_>>(),
        [3.0, 6.0]
    );
    assert_eq!(calibrated_mu_max(&retrained[0].1), None);
    let mu = &retrained[1].1["calibrated"]["mu_max"];
    assert!(mu["std_error"].as_f64().unwrap() > 0.0, "{mu}");
    let v = calibrated_mu_max(&retrained[1].1).unwrap();
    assert!(v > 0.0 && (v / 0.04 - 1.0).abs() > 1e-9, "{mu}");
    // stopped after day 6 and resumed: the replayed calibration gives the logged hashes
    // (else the resume would be refused) and the same setpoints
    let cut = tempfile::tempdir().unwrap();
    let stopped = run_campaign(with_cal(cut.path()), Some(6), false, false)
        .await
        .unwrap();
    assert_eq!(stopped.finished.as_deref(), Some("cancelled"));
    let resumed = run_campaign(with_cal(cut.path()), None, true, false)
        .await
        .unwrap();
    assert_eq!(resumed.finished.as_deref(), Some("completed"));
    assert_eq!(retrainings(cut.path()), retrainings(full.path()));
    let ids = ["R01", "R02", "R03"];
    assert_eq!(written(cut.path(), &ids), written(full.path(), &ids));
    // an unknown name is a typed error naming the setting and the valid names
    let bad = CampaignConfig {
        calibrate: Some(vec!["mumax".into()]),
        ..config(full.path(), 3, 7)
    };
    match bad.check() {
        Err(CampaignError::Invalid { name, reason }) => {
            assert_eq!(name, "calibrate");
            assert!(reason.contains("valid names: mu_max"), "{reason}");
        }
        other => panic!("expected a typed error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_campaign_resumes_where_it_stopped_and_ends_as_an_uninterrupted_one() {
    let ids = ["R01", "R02", "R03"];
    // uninterrupted
    let full = tempfile::tempdir().unwrap();
    let report = run_campaign(config(full.path(), 3, 8), None, false, false)
        .await
        .unwrap();
    assert_eq!(report.finished.as_deref(), Some("completed"));
    // stopped after day 3 (a retraining day), then resumed with fresh connectors
    let cut = tempfile::tempdir().unwrap();
    let stopped = run_campaign(config(cut.path(), 3, 8), Some(3), false, false)
        .await
        .unwrap();
    assert_eq!(stopped.finished.as_deref(), Some("cancelled"));
    assert_eq!(CampaignIndex::read(cut.path()).unwrap().days.len(), 4);
    // what a crash in the middle of day 4 would leave: an extra sample taken for day 4
    // that the redone day 4 never had (it must not enter the replay of the redone day)
    {
        use perfusio_audit::{Actor, AuditWriter, Entry, WriterOptions};
        let path = cut.path().join("R01").join("audit.jsonl");
        let (mut w, _) = AuditWriter::open(&path, WriterOptions::new("t-R01", "R01")).unwrap();
        w.append(Entry {
            actor: Actor::operator("ana").unwrap(),
            ..Entry::new(
                4,
                OperatorActionEvent {
                    action_id: "residue".into(),
                    action: "extra_sample".into(),
                    requested_at: "2026-12-02T00:00:00Z".into(),
                    accepted: true,
                    reason: "extra sample of day 4".into(),
                    values: BTreeMap::from([("Glc".to_string(), 9.0)]),
                    before: BTreeMap::new(),
                    after: BTreeMap::from([("Glc".to_string(), 9.0)]),
                },
            )
        })
        .unwrap();
        w.close().unwrap();
    }
    // resumed and stopped again after day 4, then resumed to the end: a second resume
    // replays the days after the first one too, without the cut-short day's records
    let again = run_campaign(config(cut.path(), 3, 8), Some(4), true, false)
        .await
        .unwrap();
    assert_eq!(again.finished.as_deref(), Some("cancelled"));
    assert_eq!(CampaignIndex::read(cut.path()).unwrap().days.len(), 5);
    let resumed = run_campaign(config(cut.path(), 3, 8), None, true, false)
        .await
        .unwrap();
    assert_eq!(resumed.finished.as_deref(), Some("completed"));
    let index = CampaignIndex::read(cut.path()).unwrap();
    assert_eq!(
        index.days.iter().map(|d| d.day).collect::<Vec<_>>(),
        (0..=8).collect::<Vec<_>>()
    );
    for id in ids {
        let recs = log(cut.path(), id);
        assert_eq!(recs.iter().filter(|r| r.kind == "run_resumed").count(), 2);
        // the retrainings of the uninterrupted run, with its hashes: the one of day 3 before
        // the stop (its replay gave the logged hash, else the resume would have been refused)
        let retrained = |recs: &[Record]| -> Vec<(f64, String)> {
            recs.iter()
                .filter(|r| r.kind == "model_retrained")
                .map(|r| {
                    (
                        r.day,
                        r.payload["model_sha256"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        };
        assert_eq!(retrained(&recs), retrained(&log(full.path(), id)));
        // day 6's retraining learned day 4 as redone, not the cut-short day's extra sample
        assert_eq!(
            retrained(&recs).iter().map(|r| r.0).collect::<Vec<_>>(),
            vec![3.0, 6.0]
        );
    }
    assert!(resumed.reactors.iter().all(|r| r.head_matches_index));
    // the same shared model, the same plants: the same setpoints as without the stop
    assert_eq!(written(cut.path(), &ids), written(full.path(), &ids));
    assert_eq!(written(cut.path(), &ids)[0].len(), 8);
    // a completed campaign, or another configuration, is refused with the reason
    let completed = run_campaign(config(cut.path(), 3, 8), None, true, false).await;
    assert!(
        matches!(&completed, Err(TwinError::Resume { reason, .. }) if reason.contains("already completed")),
        "{completed:?}"
    );
    let other = tempfile::tempdir().unwrap();
    run_campaign(config(other.path(), 3, 8), Some(1), false, false)
        .await
        .unwrap();
    let mut changed = config(other.path(), 3, 8);
    changed.seed = Some(12);
    let refused = run_campaign(changed, None, true, false).await;
    assert!(
        matches!(&refused, Err(TwinError::Resume { reason, .. }) if reason.contains("configuration differs")),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_fits_are_adopted_on_the_next_retraining_day_and_resume_exactly() {
    let ids = ["R01", "R02"];
    let cfg = |dir: &Path| {
        let mut c = config(dir, 2, 7);
        c.retrain_in_background = true;
        c
    };
    let full = tempfile::tempdir().unwrap();
    let report = run_campaign(cfg(full.path()), None, false, true)
        .await
        .unwrap();
    assert_eq!(report.finished.as_deref(), Some("completed"));
    // day 3 is fitted on the spot (nothing to adopt yet); day 6 adopts the fit of day 3
    let retrained: Vec<(f64, String, usize)> = log(full.path(), "R01")
        .iter()
        .filter(|r| r.kind == "model_retrained")
        .map(|r| {
            (
                r.day,
                r.payload["termination"].as_str().unwrap().to_string(),
                r.payload["rows"].as_u64().unwrap() as usize,
            )
        })
        .collect();
    assert_eq!(retrained.len(), 2, "{retrained:?}");
    assert_eq!(retrained[0].0, 3.0);
    assert!(!retrained[0].1.starts_with("adopted"), "{retrained:?}");
    assert_eq!(retrained[1].0, 6.0);
    assert!(
        retrained[1].1.starts_with("adopted the fit of day 3"),
        "{retrained:?}"
    );
    // conditioned on the data through day 6, more than the fit saw
    assert!(retrained[1].2 > retrained[0].2, "{retrained:?}");
    // stopped after day 4 (the fit of day 3 pending) and resumed: the replay fits it again
    // and adopts it on day 6 as the live loop did
    let cut = tempfile::tempdir().unwrap();
    run_campaign(cfg(cut.path()), Some(4), false, true)
        .await
        .unwrap();
    let resumed = run_campaign(cfg(cut.path()), None, true, true)
        .await
        .unwrap();
    assert_eq!(resumed.finished.as_deref(), Some("completed"));
    assert_eq!(written(cut.path(), &ids), written(full.path(), &ids));
    let sha = |dir: &Path| -> Vec<String> {
        log(dir, "R02")
            .iter()
            .filter(|r| r.kind == "model_retrained")
            .map(|r| r.payload["model_sha256"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(sha(cut.path()), sha(full.path()));
}

/// A background fit that calibrates the mechanism (the fit started on day 6, with 12
/// one-day transitions) is adopted with its calibration on the next retraining day, and a
/// resume with that fit pending replays it alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_fit_that_calibrates_is_adopted_and_resumes_alike() {
    let ids = ["R01", "R02"];
    let cfg = |dir: &Path| CampaignConfig {
        retrain_in_background: true,
        calibrate: Some(vec!["mu_max".into()]),
        ..config(dir, 2, 10)
    };
    let full = tempfile::tempdir().unwrap();
    let retrained = completed_retrainings(cfg(full.path()), true).await;
    assert_eq!(
        retrained.iter().map(|r| r.0).collect::<Vec<_>>(),
        [3.0, 6.0, 9.0]
    );
    // the fit of day 3 (6 transitions) and the one adopted on day 6 (the same data) keep
    // the prior; day 9 adopts the fit of day 6, which calibrated μ_max
    assert_eq!(calibrated_mu_max(&retrained[0].1), None);
    assert_eq!(calibrated_mu_max(&retrained[1].1), None);
    let day9 = &retrained[2].1;
    assert!(
        day9["termination"]
            .as_str()
            .unwrap()
            .starts_with("adopted the fit of day 6"),
        "{day9}"
    );
    let v = calibrated_mu_max(day9).unwrap();
    assert!(v > 0.0 && (v / 0.04 - 1.0).abs() > 1e-9, "{day9}");
    // stopped after day 7 (the fit of day 6 pending) and resumed: the replay fits and
    // calibrates again and adopts it on day 9 as the live loop did
    let cut = tempfile::tempdir().unwrap();
    run_campaign(cfg(cut.path()), Some(7), false, true)
        .await
        .unwrap();
    let resumed = run_campaign(cfg(cut.path()), None, true, true)
        .await
        .unwrap();
    assert_eq!(resumed.finished.as_deref(), Some("completed"));
    assert_eq!(written(cut.path(), &ids), written(full.path(), &ids));
    assert_eq!(retrainings(cut.path()), retrainings(full.path()));
}

/// Real-time days claim the cores while they compute, and the background fit waits at its
/// checkpoints meanwhile: that changes when work runs, never what it computes. Waiting for
/// the fits makes both campaigns deterministic, so they must write the same setpoints and
/// retrain to the same models; the paced one must end (no day waits for a paused fit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_time_days_that_claim_the_cores_compute_what_unpaced_days_do() {
    let ids = ["R01", "R02"];
    let cfg = |dir: &Path, paced: bool| {
        let mut c = config(dir, 2, 7);
        c.retrain_in_background = true;
        if paced {
            c.run.pacing = perfusio_core::Pacing::RealTime;
            c.run.sampling_interval_hours = 0.3 / 3600.0;
        }
        c
    };
    let fast = tempfile::tempdir().unwrap();
    run_campaign(cfg(fast.path(), false), None, false, true)
        .await
        .unwrap();
    let paced = tempfile::tempdir().unwrap();
    let report = tokio::time::timeout(
        Duration::from_secs(120),
        run_campaign(cfg(paced.path(), true), None, false, true),
    )
    .await
    .expect("the paced campaign did not end within 120 s")
    .unwrap();
    assert_eq!(report.finished.as_deref(), Some("completed"));
    assert_eq!(written(paced.path(), &ids), written(fast.path(), &ids));
    let (a, b) = (retrainings(paced.path()), retrainings(fast.path()));
    assert_eq!(a, b);
    assert!(a[1].1.starts_with("adopted the fit of day 3"), "{a:?}");
}

/// Without waiting, a retraining day conditions on the data while a fit still runs, and a
/// resume replays whichever each day did (its hashes are checked against the logs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_with_background_fits_resumes_whatever_each_retraining_day_did() {
    let cfg = |dir: &Path| {
        let mut c = config(dir, 2, 10);
        c.retrain_in_background = true;
        c
    };
    let cut = tempfile::tempdir().unwrap();
    run_campaign(cfg(cut.path()), Some(7), false, false)
        .await
        .unwrap();
    let terms = |dir: &Path| -> Vec<(f64, String)> {
        retrainings(dir)
            .into_iter()
            .map(|(day, termination, _)| (day, termination))
            .collect()
    };
    let before = terms(cut.path());
    assert_eq!(
        before.iter().map(|t| t.0).collect::<Vec<_>>(),
        vec![3.0, 6.0]
    );
    assert!(
        before[1].1.starts_with("adopted the fit of day 3")
            || before[1]
                .1
                .starts_with("conditioned on the data through day 6"),
        "{before:?}"
    );
    let resumed = run_campaign(cfg(cut.path()), None, true, false)
        .await
        .unwrap();
    assert_eq!(resumed.finished.as_deref(), Some("completed"));
    let after = terms(cut.path());
    assert_eq!(after[..2], before[..]);
    assert_eq!(after.last().unwrap().0, 9.0);
}
