//! [`CampaignReport`]: what a campaign found, read back from its directory (the index, the
//! snapshot and every reactor's verified audit log), so a finished, a running and a crashed
//! campaign are reported the same way.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use perfusio_audit::{Event, read_verified};
use perfusio_bed::objective::parse_objective;
use perfusio_core::{Control, ControlArray, N_SPECIES, Species, SpeciesArray};
use serde::Serialize;

use super::CampaignIndex;
use crate::campaign_files::{self, BestPoint};
use crate::error::Result;
pub use crate::report::SpeciesAccuracy;
use crate::report::{DayRecord, OneDayPairs, accuracy_of, push_one_day_pairs};

/// What a campaign found.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignReport {
    /// Campaign name.
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
    /// How it ended (`None`: still running, or it crashed).
    pub finished: Option<String>,
    /// Days completed (entries of the index).
    pub days: usize,
    /// The objective in the CLI's spelling, with the medium cost.
    pub objective: String,
    /// `auto` or `required`.
    pub approval: String,
    /// The best constant operating point found: its predicted objective under the shared
    /// model, run constant from the day-0 state over the culture.
    pub best_point: Option<BestPoint>,
    /// With two or three objectives: the operating points found that no other one
    /// dominates under the model's means, each with every objective's mean and sd (absent
    /// with one objective).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pareto_front: Vec<BestPoint>,
    /// One entry per reactor.
    pub reactors: Vec<ReactorOutcome>,
    /// The shared model's one-day-ahead accuracy on the campaign's own data: every live
    /// forecast's day+1 band against the next day's accepted measurement.
    pub accuracy: Vec<SpeciesAccuracy>,
}

/// What one reactor did.
#[derive(Debug, Clone, Serialize)]
pub struct ReactorOutcome {
    /// Reactor id.
    pub id: String,
    /// Connector, for display.
    pub connector: String,
    /// Audit log, relative to the campaign directory.
    pub audit: String,
    /// Records in its log (it verified: a log that does not verify is an error).
    pub records: u64,
    /// Hash of its last record.
    pub head: String,
    /// Whether the head equals the one the index recorded for its last day.
    pub head_matches_index: bool,
    /// Days with a complete record (written or withheld).
    pub days_completed: usize,
    /// The latest sample (species name → value; `None` = not measured).
    pub latest: BTreeMap<String, Option<f64>>,
    /// The setpoints applied last (control name → value).
    pub last_applied: BTreeMap<String, f64>,
    /// The objective of its observed trajectory (missing values carried forward), under the
    /// controls it applied.
    pub observed_objective: Option<f64>,
    /// Setpoints written.
    pub written: usize,
    /// Recommendations withheld or held.
    pub withheld: usize,
    /// Operator actions in its log (interventions and approvals, accepted or refused).
    pub operator_actions: usize,
    /// Alarms raised.
    pub alarms_raised: usize,
}

impl CampaignReport {
    /// Reads a campaign directory: `campaign.json`, `snapshot.json` and every reactor's
    /// audit log, which must verify.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let index = CampaignIndex::read(dir)?;
        let snapshot = campaign_files::read_snapshot(dir)?;
        let cfg = &index.config;
        let objective = cfg
            .objective_specs()
            .first()
            .and_then(|(spec, cost)| parse_objective(spec, *cost).ok());
        let mut reactors = Vec::new();
        let mut pairs = OneDayPairs::default();
        for r in &index.reactors {
            let path = dir.join(&r.audit);
            let (report, records) = read_verified(&path)?;
            let mut days: Vec<DayRecord> = Vec::new();
            let mut operator_actions = 0;
            for rec in &records {
                let event = rec.event()?;
                if matches!(event, Event::OperatorAction(_)) {
                    operator_actions += 1;
                }
                if matches!(
                    event,
                    Event::RunStarted(_) | Event::RunFinished(_) | Event::RunResumed(_)
                ) {
                    continue;
                }
                let day = rec.day.max(0.0) as u32;
                match days.last_mut() {
                    Some(d) if d.day == day => d.push(&event),
                    _ => {
                        let mut d = DayRecord::new(day);
                        d.push(&event);
                        days.push(d);
                    }
                }
            }
            let value = |d: &DayRecord, s: Species| -> Option<f64> {
                d.sample.as_ref()?.values.get(s.name()).copied().flatten()
            };
            push_one_day_pairs(&days, &mut pairs);
            let latest = days
                .iter()
                .rev()
                .find_map(|d| d.sample.as_ref())
                .map(|s| {
                    Species::ALL
                        .iter()
                        .map(|sp| {
                            (
                                sp.name().to_string(),
                                s.values.get(sp.name()).copied().flatten(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let applied: Vec<(u32, ControlArray<f64>)> = days
                .iter()
                .filter_map(|d| {
                    let a = d.written.as_ref().map(|w| {
                        let mut v = Control::defaults();
                        for c in &w.receipt.controls {
                            v[c.control.index()] = c.readback.unwrap_or(c.requested);
                        }
                        v
                    });
                    a.map(|a| (d.day, a))
                })
                .collect();
            let last_applied = applied
                .last()
                .map(|(_, a)| {
                    Control::ALL
                        .iter()
                        .map(|c| (c.name().to_string(), a[c.index()]))
                        .collect()
                })
                .unwrap_or_default();
            // the observed trajectory with carried-forward values, under the applied controls
            let observed_objective = objective.as_ref().and_then(|obj| {
                let mut state: Option<SpeciesArray<f64>> = None;
                let mut control = Control::defaults();
                let mut states = Vec::new();
                let mut schedule = Vec::new();
                for d in &days {
                    let mut s = state.unwrap_or([0.0; N_SPECIES]);
                    let mut any = false;
                    for sp in Species::ALL {
                        if let Some(v) = value(d, sp) {
                            s[sp.index()] = v;
                            any = true;
                        }
                    }
                    if !any && state.is_none() {
                        continue;
                    }
                    if state.is_some() {
                        states.push(s);
                        schedule.push(control);
                    }
                    state = Some(s);
                    if let Some((_, a)) = applied.iter().find(|(day, _)| *day == d.day) {
                        control = *a;
                    }
                }
                if states.is_empty() {
                    return None;
                }
                let v = obj.value(&states, &schedule);
                v.is_finite().then_some(v)
            });
            let head = records.last().map(|r| r.hash.clone()).unwrap_or_default();
            let indexed = index
                .days
                .last()
                .and_then(|d| d.heads.get(&r.id))
                .cloned()
                .unwrap_or_default();
            reactors.push(ReactorOutcome {
                id: r.id.clone(),
                connector: r.connector.clone(),
                audit: r.audit.clone(),
                records: report.records,
                head_matches_index: indexed == head,
                head,
                days_completed: days.iter().filter(|d| d.is_complete()).count(),
                latest,
                last_applied,
                observed_objective,
                written: days.iter().filter(|d| d.written.is_some()).count(),
                withheld: days.iter().filter(|d| d.withheld.is_some()).count(),
                operator_actions,
                alarms_raised: days
                    .iter()
                    .flat_map(|d| &d.alarms)
                    .filter(|a| a.state == perfusio_audit::event::AlarmState::Raised)
                    .count(),
            });
        }
        let accuracy = accuracy_of(&pairs);
        Ok(Self {
            name: index.name.clone(),
            dir: dir.to_path_buf(),
            finished: index.finished.clone(),
            days: index.days.len(),
            objective: cfg
                .objective_specs()
                .iter()
                .map(|(spec, cost)| {
                    if *cost > 0.0 {
                        format!("{spec} (medium cost {cost})")
                    } else {
                        spec.clone()
                    }
                })
                .collect::<Vec<_>>()
                .join(", "),
            approval: cfg.approval.mode.as_str().into(),
            pareto_front: snapshot
                .as_ref()
                .map(|s| s.pareto_front.clone())
                .unwrap_or_default(),
            best_point: snapshot.and_then(|s| s.best_point),
            reactors,
            accuracy,
        })
    }
}

impl fmt::Display for CampaignReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "campaign {} ({} reactors, {} days, objective {}, approval {}): {}",
            self.name,
            self.reactors.len(),
            self.days,
            self.objective,
            self.approval,
            self.finished.as_deref().unwrap_or("not finished")
        )?;
        match &self.best_point {
            Some(b) => {
                write!(
                    f,
                    "best operating point: predicted objective {:.0} ± {:.0}{}\n ",
                    b.objective_mean,
                    b.objective_sd,
                    b.reactor
                        .as_deref()
                        .map_or(String::new(), |r| format!(" (run by {r})"))
                )?;
                for c in Control::ALL {
                    if let Some(v) = b.controls.get(c.name()) {
                        write!(f, " {}={v:.3}", c.name())?;
                    }
                }
                writeln!(f)?;
                if let Some(search) = &b.search {
                    writeln!(f, "  ({search})")?;
                }
            }
            None => writeln!(f, "best operating point: none yet")?,
        }
        if !self.pareto_front.is_empty() {
            writeln!(
                f,
                "Pareto front of the operating points found ({} points, predicted mean ± sd):",
                self.pareto_front.len()
            )?;
            for p in &self.pareto_front {
                let values: Vec<String> = p
                    .objectives
                    .iter()
                    .map(|o| format!("{} {:.1} ± {:.1}", o.name, o.mean, o.sd))
                    .collect();
                write!(f, "  {}:", values.join(", "))?;
                for c in Control::ALL {
                    if let Some(v) = p.controls.get(c.name()) {
                        write!(f, " {}={v:.3}", c.name())?;
                    }
                }
                writeln!(f)?;
            }
        }
        writeln!(
            f,
            "{:<6} {:>5} {:>7} {:>8} {:>7} {:>6} {:>6} {:>7} {:>9} {:>6}",
            "reactor",
            "days",
            "written",
            "withheld",
            "actions",
            "VCD",
            "Via",
            "Titer",
            "objective",
            "log"
        )?;
        for r in &self.reactors {
            let v = |s: Species| {
                r.latest
                    .get(s.name())
                    .copied()
                    .flatten()
                    .map_or_else(|| "-".to_string(), |x| format!("{x:.1}"))
            };
            writeln!(
                f,
                "{:<7} {:>5} {:>7} {:>8} {:>7} {:>6} {:>6} {:>7} {:>9} {:>6}",
                r.id,
                r.days_completed,
                r.written,
                r.withheld,
                r.operator_actions,
                v(Species::VCD),
                v(Species::Via),
                v(Species::Titer),
                r.observed_objective
                    .map_or_else(|| "-".to_string(), |x| format!("{x:.0}")),
                if r.head_matches_index { "ok" } else { "head?" }
            )?;
        }
        writeln!(
            f,
            "shared model, one day ahead on the campaign's own data: each decision's expected \
             next sample (measured-value bands, recommended setpoints written as they stand) \
             against the next sample (rRMSE against the measurements, 90 % coverage):"
        )?;
        if self.accuracy.is_empty() {
            writeln!(
                f,
                "  no pairs (no decision recorded its expected next sample and was written as \
                 it stands)"
            )?;
        }
        for a in &self.accuracy {
            writeln!(
                f,
                "  {:<6} n={:<4} rRMSE {:.3}  coverage {:.2}",
                a.species, a.n, a.rrmse, a.coverage90
            )?;
        }
        Ok(())
    }
}
