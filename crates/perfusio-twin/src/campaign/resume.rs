//! Resuming a campaign from its directory.
//!
//! A campaign day is complete when `campaign.json` lists it (the index is written after
//! every reactor's day has ended). Resuming reopens every reactor's log (a torn last line is
//! quarantined and recorded), replays the complete days of every reactor through the same
//! steps as the live loop, in the same order (each reactor's learning from its recorded
//! sample, extra samples and additions; the shared retraining, whose model hash must equal
//! the one each log recorded; the alarms; the setpoints applied), restores the connectors
//! (a simulated plant replays the written setpoints), records `run_resumed` in every log and
//! continues with the first day the index does not list. Records of a day that was cut
//! short stay in the logs (they are append-only); that day is done again.
//!
//! The best operating point is scored again, once, over every setpoint the campaign
//! applied, under the replayed model. Interventions that reached a reactor while the
//! day's recommendations waited for approval, and additions to a simulated reactor, cannot
//! be replayed exactly: such a campaign is refused with the reason, never continued from
//! a different state.

use std::collections::BTreeMap;

use perfusio_audit::event::{OperatorAction as OperatorActionEvent, RunResumed, RunStarted};
use perfusio_audit::{AuditHandle, AuditWriter, Event, Record, WriterOptions, read_verified};
use perfusio_core::{
    Addition, Control, ControlArray, CultureDay, N_CONTROLS, N_SPECIES, Setpoints, Species,
    SpeciesArray,
};

use super::foreground::Foreground;
use super::{
    ADOPTED, Adopt, BackgroundFit, CONDITIONED, Campaign, CampaignIndex, Fitted,
    GLUCOSE_G_PER_MMOL, Observation, Runner, SetpointEntry, Shared, Unit, control_map,
    shared_retrain,
};
use crate::error::{Result, TwinError};
use crate::reactor::{ReactorState, retrain_model};
use crate::report::DayRecord;
use crate::twin::{applied_after, retrain_due};

fn bad(dir: &std::path::Path, reason: impl Into<String>) -> TwinError {
    TwinError::Resume {
        path: dir.to_path_buf(),
        reason: reason.into(),
    }
}

/// One recorded day of one reactor, as the replay needs it.
#[derive(Debug, Default)]
struct ReplayDay {
    rec: DayRecord,
    /// Accepted interventions before the day's decision (applied before learning).
    early: Vec<OperatorActionEvent>,
    /// Accepted additions after the day's decision (while approvals waited).
    late: Vec<String>,
}

/// The days `0..=last` of one reactor's last run in `records` (`None` for a day without
/// records: the reactor's data had ended), and its `run_started`.
fn reactor_days(
    dir: &std::path::Path,
    id: &str,
    records: &[Record],
    last: CultureDay,
) -> Result<(RunStarted, Vec<Option<ReplayDay>>)> {
    let start = records
        .iter()
        .rposition(|r| r.kind == "run_started")
        .ok_or_else(|| bad(dir, format!("the log of {id} has no run_started record")))?;
    let started: RunStarted = records[start].payload_as()?;
    let mut days: Vec<Option<ReplayDay>> = (0..=last).map(|_| None).collect();
    let mut decided: Vec<bool> = vec![false; days.len()];
    for r in &records[start + 1..] {
        if !(r.day >= 0.0 && r.day.fract() == 0.0) {
            return Err(bad(
                dir,
                format!("{id}: record {} has day {}", r.seq, r.day),
            ));
        }
        let day = r.day as usize;
        let event = r.event()?;
        match event {
            // a stop or a resume after day `day`: what a later day had recorded before it
            // was cut short, and is done again after the resume
            Event::RunResumed(_) | Event::RunFinished(_) => {
                for later in day.saturating_add(1)..days.len() {
                    days[later] = None;
                    decided[later] = false;
                }
                continue;
            }
            Event::LogRecovered(_) => continue,
            _ => {}
        }
        if day >= days.len() {
            continue; // after the last complete day: done again
        }
        let d = days[day].get_or_insert_with(|| ReplayDay {
            rec: DayRecord::new(day as CultureDay),
            ..ReplayDay::default()
        });
        match &event {
            Event::Decision(_) => decided[day] = true,
            Event::OperatorAction(a) if a.accepted => match a.action.as_str() {
                "glucose_bolus" | "media_exchange" if decided[day] => {
                    d.late.push(a.action.clone());
                }
                "glucose_bolus" | "media_exchange" | "extra_sample" => d.early.push(a.clone()),
                _ => {}
            },
            _ => {}
        }
        d.rec.push(&event);
    }
    Ok((started, days))
}

/// The accepted species of a recorded sample, with an extra sample's values over them.
fn measured_of(d: &ReplayDay) -> Option<SpeciesArray<Option<f64>>> {
    let mut m: Option<SpeciesArray<Option<f64>>> =
        d.rec.sample.as_ref().map(|s| {
            std::array::from_fn(|k| s.values.get(Species::ALL[k].name()).copied().flatten())
        });
    for a in d.early.iter().filter(|a| a.action == "extra_sample") {
        // `after` is the day's whole observation once the extra sample entered it
        let obs = m.get_or_insert([None; N_SPECIES]);
        for s in Species::ALL {
            if let Some(v) = a.after.get(s.name()) {
                obs[s.index()] = Some(*v);
            }
        }
    }
    m
}

/// The controls a recorded sample reports as applied.
fn reported_of(d: &ReplayDay) -> Option<[Option<f64>; N_CONTROLS]> {
    let s = d.rec.sample.as_ref()?;
    Some(Control::ALL.map(|c| s.values.get(c.name()).copied().flatten()))
}

impl Runner {
    /// Opens a campaign directory for a resume and returns the runner positioned at the
    /// first day the index does not list.
    pub(super) async fn resume(c: Campaign) -> Result<Self> {
        let dir = c.config.output_dir.clone();
        let index = CampaignIndex::read(&dir)?;
        if index.finished.as_deref() == Some("completed") {
            return Err(bad(
                &dir,
                "the campaign already completed; nothing to resume",
            ));
        }
        if index.config != c.config {
            return Err(bad(
                &dir,
                "the configuration differs from the one the campaign was started with \
                 (campaign.json): resume with the same configuration",
            ));
        }
        let Some(last) = index.days.last().map(|d| d.day) else {
            return Err(bad(
                &dir,
                "no day completed yet: start the campaign again in an empty directory",
            ));
        };
        let seed = index.seed;
        let (policy, model, _) = Runner::prepare(&c, seed)?;
        let model_sha = model.fingerprint();
        // every reactor's log: reopened (a torn last line is recovered), verified, parsed
        let mut writers = Vec::new();
        let mut per_reactor = Vec::new();
        for (r, conn) in c.config.reactors.iter().zip(&c.connectors) {
            let rel = format!("{}/audit.jsonl", r.id);
            let path = dir.join(&rel);
            if !path.exists() {
                return Err(bad(&dir, format!("{} has no audit log", r.id)));
            }
            let run_id = format!("{}-{}", c.config.name, r.id);
            let (writer, open) =
                AuditWriter::open(&path, WriterOptions::new(run_id.clone(), r.id.clone()))?;
            let (_, records) = read_verified(&path)?;
            let (started, days) = reactor_days(&dir, &r.id, &records, last)?;
            if started.seed != Some(seed) {
                return Err(bad(
                    &dir,
                    format!("{}'s log was started with another seed", r.id),
                ));
            }
            let recorded_sha = started
                .settings
                .get("model_sha256")
                .and_then(|v| v.as_str())
                .unwrap_or_default();
            if recorded_sha != model_sha {
                return Err(bad(
                    &dir,
                    format!(
                        "the shared model this campaign starts from is not the one {} started \
                         from (its hash differs from run_started.model_sha256): give the same \
                         prior",
                        r.id
                    ),
                ));
            }
            for d in days.iter().flatten() {
                if let Some(kind) = d.late.first() {
                    return Err(bad(
                        &dir,
                        format!(
                            "{}: a {kind} reached the reactor on day {} while the day's \
                             recommendation waited for approval; such a day cannot be replayed \
                             exactly",
                            r.id, d.rec.day
                        ),
                    ));
                }
                let adds = d
                    .early
                    .iter()
                    .any(|a| a.action == "glucose_bolus" || a.action == "media_exchange");
                if adds && matches!(r.connector, super::ConnectorSpec::Virtual { .. }) {
                    return Err(bad(
                        &dir,
                        format!(
                            "{}: the simulated reactor received an addition on day {}, which \
                             its restore cannot replay",
                            r.id, d.rec.day
                        ),
                    ));
                }
            }
            let describe = format!("{} ({})", conn.describe(), r.connector.describe());
            writers.push((writer, open, rel, run_id, describe));
            per_reactor.push(days);
        }
        // the replay, on the blocking pool, in the live loop's order
        let initial = Control::defaults();
        let rules = c.alarm_rules.clone();
        let run_cfg = c.config.run.clone();
        let background = c.config.retrain_in_background;
        let ids: Vec<String> = c.config.reactors.iter().map(|r| r.id.clone()).collect();
        let run_ids: Vec<String> = writers.iter().map(|w| w.3.clone()).collect();
        let replay = tokio::task::spawn_blocking(move || -> std::result::Result<_, String> {
            let mut model = model;
            let mut states: Vec<ReactorState> = run_ids
                .iter()
                .map(|id| ReactorState::new(id.clone(), initial, rules.clone()))
                .collect();
            let mut day0 = None;
            let mut ended: Vec<Option<String>> = vec![None; states.len()];
            let mut applied_days: Vec<Vec<(CultureDay, ControlArray<f64>, bool)>> =
                vec![Vec::new(); states.len()];
            let gln_feed = model.mechanism_params().gln_feed;
            let mut pending: Option<Fitted> = None;
            for day in 0..=last {
                let di = day as usize;
                for (i, days) in per_reactor.iter().enumerate() {
                    if ended[i].is_none() && days[di].is_none() {
                        ended[i] = Some(match day.checked_sub(1) {
                            Some(prev) => format!("data ended on day {prev}"),
                            None => "no data".to_string(),
                        });
                    }
                }
                // learning, every reactor in order
                let mut retrained_sha: Option<String> = None;
                let mut retrained_term: Option<String> = None;
                for (i, days) in per_reactor.iter().enumerate() {
                    let Some(d) = days[di].as_ref().filter(|_| ended[i].is_none()) else {
                        continue;
                    };
                    let m = measured_of(d);
                    let current = *states[i].current();
                    states[i]
                        .learn(&mut model, day, m.as_ref(), false)
                        .map_err(|e| e.to_string())?;
                    if let Some(r) = reported_of(d) {
                        states[i].take_reported(&r);
                    }
                    for a in &d.early {
                        let addition = match a.action.as_str() {
                            "glucose_bolus" => Addition::GlucoseBolus {
                                g_per_l: a.values.get("mmol_per_l").copied().unwrap_or(0.0)
                                    * GLUCOSE_G_PER_MMOL,
                            },
                            "media_exchange" => Addition::MediaExchange {
                                fraction: a.values.get("fraction").copied().unwrap_or(0.0),
                                glucose: current[Control::GlucoseSetpoint.index()],
                                glutamine: gln_feed,
                            },
                            _ => continue,
                        };
                        let tr = model.config().transform;
                        if let Some(est) = states[i].estimate() {
                            let before = est.mean_species(&tr);
                            let mut after = before;
                            addition.apply(&mut after);
                            let delta: SpeciesArray<f64> =
                                std::array::from_fn(|k| after[k] - before[k]);
                            states[i]
                                .added(&mut model, day, delta, m.is_some())
                                .map_err(|e| e.to_string())?;
                        }
                    }
                    if let Some(r) = &d.rec.retrained {
                        retrained_sha = Some(r.model_sha256.clone());
                        retrained_term = Some(r.termination.clone());
                    }
                }
                if retrain_due(&run_cfg, day) {
                    // what the live loop did with its background fit, as the log says
                    let adopt = match (background, retrained_term.as_deref()) {
                        (true, Some(t)) if t.starts_with(CONDITIONED) => {
                            Some(Adopt::Condition(pending.as_ref().map_or(0, |p| p.day)))
                        }
                        (true, Some(t)) if t.starts_with(ADOPTED) => {
                            pending.take().map(|f| Adopt::Fit(Box::new(f)))
                        }
                        _ => {
                            pending = None;
                            None
                        }
                    };
                    let conditioned = matches!(adopt, Some(Adopt::Condition(_)));
                    let l = shared_retrain(&mut model, day, adopt);
                    if background && !conditioned {
                        // what the live loop fitted in the background, fitted here at once
                        let mut copy = model.clone();
                        let fl = retrain_model(&mut copy, day);
                        pending = Some(Fitted {
                            day,
                            model: copy,
                            learned: fl,
                        });
                    }
                    match (&l.retrained, &retrained_sha) {
                        (Some(_), Some(sha)) if model.fingerprint() != *sha => {
                            return Err(format!(
                                "replaying day {day} gives another shared model than the logs \
                                 record ({}…); was the campaign run by another version?",
                                &sha[..12.min(sha.len())]
                            ));
                        }
                        (Some(_), None) | (None, Some(_)) => {
                            return Err(format!(
                                "day {day}: the logs and the replay disagree on whether the \
                                 shared model was retrained"
                            ));
                        }
                        _ => {}
                    }
                }
                if day == 0 {
                    day0 = states.iter().find_map(|st| st.estimate().cloned());
                }
                // alarms and the day's end, every reactor in order
                for (i, days) in per_reactor.iter().enumerate() {
                    let Some(d) = days[di].as_ref().filter(|_| ended[i].is_none()) else {
                        continue;
                    };
                    for a in &d.rec.alarms {
                        states[i].alarms_mut().replay(a);
                    }
                    let current = *states[i].current();
                    let applied = match &d.rec.written {
                        Some(w) => applied_after(&current, w),
                        None => current,
                    };
                    let recorded = d.rec.sample.is_some();
                    states[i]
                        .applied(&mut model, day, applied, recorded)
                        .map_err(|e| e.to_string())?;
                    applied_days[i].push((day, applied, recorded));
                }
            }
            Ok((
                model,
                states,
                day0,
                ended,
                applied_days,
                per_reactor,
                pending,
            ))
        })
        .await?
        .map_err(|reason| bad(&dir, reason))?;
        let (model, states, day0, ended, applied_days, per_reactor, pending) = replay;
        // the connectors: a simulated plant replays the written setpoints
        for (i, days) in per_reactor.iter().enumerate() {
            let written: Vec<Setpoints> = days
                .iter()
                .flatten()
                .filter_map(|d| d.rec.written.as_ref())
                .map(|w| {
                    let mut values = Control::defaults();
                    for cw in &w.receipt.controls {
                        values[cw.control.index()] = cw.requested;
                    }
                    Setpoints::new(w.receipt.day, values)
                })
                .collect();
            c.connectors[i].restore(&written).await?;
        }
        // the reactors' views, rebuilt from the replayed days
        let mut units = Vec::new();
        for (i, (writer, open, rel, run_id, describe)) in writers.into_iter().enumerate() {
            let audit = AuditHandle::spawn(writer)?;
            let mut setpoints = vec![SetpointEntry {
                day: 0,
                values: control_map(&initial),
                source: "initial".into(),
            }];
            for (day, applied, _) in &applied_days[i] {
                if setpoints
                    .last()
                    .is_none_or(|e| e.values != control_map(applied))
                {
                    setpoints.push(SetpointEntry {
                        day: *day,
                        values: control_map(applied),
                        source: "twin".into(),
                    });
                }
            }
            let mut days = Vec::new();
            let mut observations = Vec::new();
            for d in per_reactor[i].iter().flatten() {
                if let Some(m) = measured_of(d) {
                    observations.push(Observation {
                        day: d.rec.day,
                        values: Species::ALL
                            .iter()
                            .map(|s| (s.name().to_string(), m[s.index()]))
                            .collect(),
                    });
                }
                let mut rec = d.rec.clone();
                rec.applied = applied_days[i]
                    .iter()
                    .find(|(day, _, _)| *day == rec.day)
                    .map(|(_, a, _)| *a);
                days.push(rec);
            }
            let mut unit = Unit {
                id: ids[i].clone(),
                run_id,
                connector: c.connectors[i].clone(),
                describe,
                audit,
                audit_rel: rel,
                head: String::new(),
                days,
                observations,
                setpoints,
                forecast: None,
                latest_forecast: None,
                pending: None,
                alarms: BTreeMap::new(),
                ended: ended[i].clone(),
            };
            for d in per_reactor[i].iter().flatten() {
                for a in &d.rec.alarms {
                    unit.track_alarm(d.rec.day, a);
                }
            }
            let reason = format!(
                "campaign resumed after day {last}: continuing with day {}",
                last + 1
            );
            unit.record(
                last,
                RunResumed {
                    records_found: open.records_found,
                    reason,
                },
            )
            .await?;
            units.push(unit);
        }
        let answered = super::campaign_files::read_outcomes(&dir)?
            .into_iter()
            .map(|o| o.action)
            .collect();
        let mut index = index;
        index.finished = None;
        let mut runner = Self {
            dir,
            seed,
            policy,
            shared: Some(Box::new(Shared { model, states })),
            units,
            index,
            answered,
            day: last,
            first_day: last + 1,
            fitting: pending.map(|f| BackgroundFit {
                day: f.day,
                handle: std::thread::spawn(move || (f.model, f.learned)),
            }),
            status: "running".into(),
            best: None,
            front: Vec::new(),
            best_pool: Vec::new(),
            best_task: None,
            day0,
            foreground: Foreground::default(),
            paced: c.config.run.pacing == perfusio_core::Pacing::RealTime,
            c,
        };
        // the best point, scored once over every setpoint the campaign applied
        let mut pool: Vec<ControlArray<f64>> = Vec::new();
        for a in applied_days.iter().flatten().map(|(_, a, _)| a) {
            if !pool
                .iter()
                .any(|p| p.iter().zip(a).all(|(x, y)| x.to_bits() == y.to_bits()))
            {
                pool.push(*a);
            }
        }
        let currents: Vec<ControlArray<f64>> = {
            let s = runner.shared()?;
            s.states.iter().map(|st| *st.current()).collect()
        };
        runner.best_pool = pool;
        runner
            .update_best(&[], &currents, super::BestSearch::Daily)
            .await?;
        runner.index.write(&runner.dir)?;
        runner.publish()?;
        Ok(runner)
    }
}
