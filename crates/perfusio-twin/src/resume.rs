//! Crash-safe resume: rebuild a run's state from its audit log and continue it.
//!
//! A culture day is **complete** when its terminal record (`setpoint_written` or
//! `setpoint_withheld`) is in the log. Resuming replays every complete day of the last
//! `run_started` through the same learning step as the live loop (the sample as recorded,
//! the controls in force, the retrainings on their days), checks that every retraining
//! gives the model hash the log recorded, restores the connector (a simulated plant replays
//! the written setpoints) and continues with the first incomplete day. Records of a day that
//! was cut short stay in the log (it is append-only); the day is done again after the
//! `run_resumed` record.

use std::path::Path;
use std::sync::Arc;

use perfusio_audit::event::{RunResumed, RunStarted};
use perfusio_audit::{
    AuditHandle, AuditWriter, Event, Record, WriterOptions, parse_timestamp, read_records,
    read_verified,
};
use perfusio_core::{Control, CultureDay, N_SPECIES, Setpoints, Species, SpeciesArray};
use time::OffsetDateTime;

use crate::error::{Result, TwinError};
use crate::reactor::ReactorState;
use crate::report::DayRecord;
use crate::twin::{Brain, DigitalTwin, Runner, applied_after, retrain_due};

fn bad(path: &Path, reason: impl Into<String>) -> TwinError {
    TwinError::Resume {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The complete days of the last run in `records` (from its `run_started`), in order,
/// and that record.
fn complete_days(path: &Path, records: &[Record]) -> Result<(usize, Vec<DayRecord>)> {
    let start = records
        .iter()
        .rposition(|r| r.kind == "run_started")
        .ok_or_else(|| bad(path, "the log has no run_started record"))?;
    let mut days: Vec<DayRecord> = Vec::new();
    let mut partial: Option<DayRecord> = None;
    for r in &records[start + 1..] {
        let event = r.event()?;
        match &event {
            Event::RunFinished(f) if f.completed => {
                return Err(bad(
                    path,
                    format!(
                        "the run already finished ({} on day {}); nothing to resume",
                        f.reason, f.last_day
                    ),
                ));
            }
            Event::RunResumed(_) | Event::RunFinished(_) | Event::LogRecovered(_) => {
                partial = None;
                continue;
            }
            _ => {}
        }
        if !(r.day >= 0.0 && r.day.fract() == 0.0 && r.day <= f64::from(u32::MAX)) {
            return Err(bad(path, format!("record {} has day {}", r.seq, r.day)));
        }
        let day = r.day as CultureDay;
        let d = match &mut partial {
            Some(d) if d.day == day => d,
            slot => slot.insert(DayRecord::new(day)),
        };
        d.push(&event);
        if d.is_complete()
            && let Some(done) = partial.take()
        {
            days.push(done);
        }
    }
    for (i, d) in days.iter().enumerate() {
        if d.day as usize != i {
            return Err(bad(
                path,
                format!(
                    "the complete days are not 0, 1, 2, …: day {} follows day {}",
                    d.day,
                    i.saturating_sub(1)
                ),
            ));
        }
    }
    Ok((start, days))
}

/// Accepted measurements of the species and the controls a sample reports.
type Measured = (SpeciesArray<Option<f64>>, [Option<f64>; 6]);

/// The accepted measurements and the reported controls of a recorded sample.
fn measured_of(d: &DayRecord) -> Option<Measured> {
    let s = d.sample.as_ref()?;
    let mut m = [None; N_SPECIES];
    for sp in Species::ALL {
        m[sp.index()] = s.values.get(sp.name()).copied().flatten();
    }
    let c = Control::ALL.map(|c| s.values.get(c.name()).copied().flatten());
    Some((m, c))
}

/// Opens the log of `twin` for a resume, rebuilds the run's state and returns the runner
/// positioned at the first incomplete day.
pub(crate) async fn resume(mut twin: DigitalTwin) -> Result<Runner> {
    let path = twin.audit_path().to_path_buf();
    if !path.exists() {
        return Err(bad(&path, "there is no audit log there"));
    }
    let run_id = match read_records(&path)?.next() {
        Some(Ok(r)) => r.run_id,
        Some(Err(e)) => return Err(e.into()),
        None => return Err(bad(&path, "the log is empty")),
    };
    // opening recovers a torn last line (quarantined, recorded) and continues the chain
    let (writer, open) = AuditWriter::open(
        &path,
        WriterOptions::new(run_id.clone(), twin.reactor_id_str().to_string()),
    )?;
    let (_, records) = read_verified(&path)?;
    let (start, days) = complete_days(&path, &records)?;
    let started: RunStarted = records[start].payload_as()?;
    let seed = started
        .seed
        .ok_or_else(|| bad(&path, "run_started has no seed"))?;
    if let Some(s) = twin.config_mut().seed
        && s != seed
    {
        return Err(bad(
            &path,
            format!("the run was started with seed {seed}, not {s}; resume with the same seed"),
        ));
    }
    twin.config_mut().seed = Some(seed);
    twin.config_mut().run_id.clone_from(&run_id);
    let (mut model, _) = twin.initial_model(seed)?;
    let recorded_sha = started
        .settings
        .get("model_sha256")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    if model.fingerprint() != recorded_sha {
        return Err(bad(
            &path,
            "the model this twin starts from is not the one the run started from (its hash \
             differs from run_started.model_sha256): give the same model and prior",
        ));
    }
    let mut state = ReactorState::new(run_id, *twin.initial_setpoints(), twin.rules().to_vec());
    let mut written: Vec<Setpoints> = Vec::new();
    let cfg = twin.config().clone();
    // replay on the blocking pool: the same learning step as the live loop
    let (model_back, state_back, days, written_back) =
        tokio::task::spawn_blocking(move || -> Result<_> {
            let mut days = days;
            for d in &mut days {
                let m = measured_of(d);
                let learned = state.learn(
                    &mut model,
                    d.day,
                    m.as_ref().map(|x| &x.0),
                    retrain_due(&cfg, d.day),
                )?;
                if let Some((_, reported)) = &m {
                    state.take_reported(reported);
                }
                match (&learned.retrained, &d.retrained) {
                    (Some(_), Some(rec)) if model.fingerprint() != rec.model_sha256 => {
                        return Err(TwinError::Resume {
                            path: std::path::PathBuf::new(),
                            reason: format!(
                                "replaying day {} gives another model than the log records \
                                 ({}…); was the run made by another version?",
                                d.day,
                                &rec.model_sha256[..12.min(rec.model_sha256.len())]
                            ),
                        });
                    }
                    (Some(_), None) | (None, Some(_)) => {
                        return Err(TwinError::Resume {
                            path: std::path::PathBuf::new(),
                            reason: format!(
                                "day {}: the log and the replay disagree on whether the model \
                                 was retrained",
                                d.day
                            ),
                        });
                    }
                    _ => {}
                }
                for a in &d.alarms {
                    state.alarms_mut().replay(a);
                }
                let current = *state.current();
                let applied = match &d.written {
                    Some(w) => {
                        let mut values = current;
                        for c in &w.receipt.controls {
                            values[c.control.index()] = c.requested;
                        }
                        written.push(Setpoints::new(w.receipt.day, values));
                        applied_after(&current, w)
                    }
                    None => current,
                };
                state.applied(&mut model, d.day, applied, m.is_some())?;
                d.applied = Some(applied);
            }
            Ok((model, state, days, written))
        })
        .await?
        .map_err(|e| match e {
            TwinError::Resume { reason, .. } => bad(&path, reason),
            other => other,
        })?;
    twin.connector_ref().restore(&written_back).await?;
    let first_day: CultureDay = days.len() as CultureDay;
    let started_at = parse_timestamp(&records[start].ts).unwrap_or_else(OffsetDateTime::now_utc);
    let audit = AuditHandle::spawn(writer)?;
    let describe = twin.connector_ref().describe();
    let policy = Arc::new(twin.policy(seed)?);
    let mut runner = Runner {
        describe,
        seed,
        policy,
        brain: Some(Box::new(Brain {
            model: model_back,
            state: state_back,
        })),
        audit,
        days,
        first_day,
        started: started_at,
        last_forecast: None,
        twin,
    };
    let reason = match first_day.checked_sub(1) {
        Some(k) => format!("resumed after day {k}: continuing with day {first_day}"),
        None => "resumed before day 0 completed: starting again with day 0".to_string(),
    };
    runner
        .record(
            first_day.saturating_sub(1),
            RunResumed {
                records_found: open.records_found,
                reason,
            },
        )
        .await?;
    runner.announce();
    Ok(runner)
}
