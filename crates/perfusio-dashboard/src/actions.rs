//! From an operator's form to an [`OperatorAction`], validated before it is appended.
//!
//! Form fields: `kind` (`approve`, `edit`, `reject`, `glucose_bolus`, `extra_sample`,
//! `media_exchange`, `setpoint_override`), `reactor`, `day`, `reason` (reject), `mmol_per_l`
//! (bolus), `fraction` (media exchange), `c:<control>` (edit, override: control values) and
//! `s:<species>` (extra sample: measured values); empty value fields are ignored.

use std::collections::BTreeMap;

use perfusio_core::{Control, DesignSpace, Species, Variable};
use perfusio_twin::campaign_files::{ActionKind, CampaignSnapshot, OperatorAction};

use crate::charts::setpoint_steps;

/// The most fields one form may carry.
pub const MAX_FIELDS: usize = 64;
/// The longest free text (a rejection reason) kept, in characters.
pub const MAX_REASON_CHARS: usize = 500;
/// The largest glucose bolus accepted (mmol/L added): the campaign's own rule.
pub use perfusio_twin::campaign_files::MAX_GLUCOSE_BOLUS_MMOL_PER_L as MAX_BOLUS_MMOL_PER_L;

/// A refused form: the reason, for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn refuse<T>(text: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal(text.into()))
}

/// The fields of one submitted action form.
#[derive(Debug, Clone, Default)]
pub struct ActionForm {
    fields: BTreeMap<String, String>,
}

impl ActionForm {
    /// Collects `(name, value)` pairs (at most [`MAX_FIELDS`]; a repeated name keeps the last).
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Result<Self, Refusal> {
        if pairs.len() > MAX_FIELDS {
            return refuse(format!(
                "the form has {} fields; at most {MAX_FIELDS}",
                pairs.len()
            ));
        }
        Ok(Self {
            fields: pairs.into_iter().collect(),
        })
    }

    /// A field's trimmed value, `None` when absent or empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    fn number(&self, name: &str, what: &str) -> Result<f64, Refusal> {
        let Some(text) = self.get(name) else {
            return refuse(format!("{what} is missing"));
        };
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => refuse(format!("{what} = {text:?} is not a number")),
        }
    }

    /// Every non-empty `prefix<name>` field as `(name, number)`.
    fn prefixed(&self, prefix: &str) -> Result<Vec<(String, f64)>, Refusal> {
        let mut out = Vec::new();
        for (k, v) in &self.fields {
            let (Some(name), v) = (k.strip_prefix(prefix), v.trim()) else {
                continue;
            };
            if v.is_empty() {
                continue;
            }
            match v.parse::<f64>() {
                Ok(x) if x.is_finite() => out.push((name.to_string(), x)),
                _ => return refuse(format!("{name} = {v:?} is not a number")),
            }
        }
        Ok(out)
    }
}

/// Control values from `c:<control>` fields, by canonical name; an unknown name is refused.
fn control_values(form: &ActionForm) -> Result<BTreeMap<Control, f64>, Refusal> {
    let mut out = BTreeMap::new();
    for (name, v) in form.prefixed("c:")? {
        let Some(c) = Control::lookup(&name) else {
            return refuse(format!(
                "unknown control {name:?}; valid: {}",
                Control::valid_names()
            ));
        };
        out.insert(c, v);
    }
    Ok(out)
}

/// Refuses a full setpoint vector that is not inside the design space (hard or soft).
fn check_inside(
    values: &perfusio_core::ControlArray<f64>,
    ds: &DesignSpace,
    what: &str,
) -> Result<(), Refusal> {
    let violations = ds.check_setpoints(values);
    if violations.is_empty() {
        Ok(())
    } else {
        let list: Vec<String> = violations.iter().map(ToString::to_string).collect();
        refuse(format!(
            "{what} refused: outside the design space: {}",
            list.join("; ")
        ))
    }
}

/// Checks a submitted form against the snapshot and the design space and builds the action
/// (actor, id and time filled in by the caller's arguments).
pub fn build_action(
    form: &ActionForm,
    snapshot: Option<&CampaignSnapshot>,
    ds: &DesignSpace,
    actor: &str,
    id: String,
    at: String,
) -> Result<OperatorAction, Refusal> {
    let Some(snapshot) = snapshot else {
        return refuse("the campaign has not published a snapshot yet");
    };
    let Some(reactor_id) = form.get("reactor") else {
        return refuse("no reactor given");
    };
    let Some(reactor) = snapshot.reactors.iter().find(|r| r.id == reactor_id) else {
        return refuse(format!("the campaign has no reactor {reactor_id:?}"));
    };
    let day: u32 = match form.get("day").map(str::parse) {
        Some(Ok(d)) => d,
        Some(Err(_)) => return refuse("the day is not a whole number"),
        None => return refuse("no day given"),
    };
    let kind_name = form.get("kind").unwrap_or("");
    let pending_for_day = || match &reactor.pending {
        Some(p) if p.day == day => Ok(p),
        Some(p) => refuse(format!(
            "{reactor_id} has a pending recommendation for day {}, not day {day}",
            p.day
        )),
        None => refuse(format!("{reactor_id} has no pending recommendation")),
    };
    let kind = match kind_name {
        "approve" => {
            pending_for_day()?;
            ActionKind::Approve
        }
        "reject" => {
            pending_for_day()?;
            let reason = form
                .get("reason")
                .map(|r| r.chars().take(MAX_REASON_CHARS).collect());
            ActionKind::Reject { reason }
        }
        "edit" => {
            let pending = pending_for_day()?;
            let edits = control_values(form)?;
            if edits.is_empty() {
                return refuse("an edit needs at least one control value");
            }
            let mut full = Control::defaults();
            for (name, v) in pending.current.iter().chain(&pending.recommended) {
                if let Some(c) = Control::lookup(name) {
                    full[c.index()] = *v;
                }
            }
            for (c, v) in &edits {
                full[c.index()] = *v;
            }
            check_inside(&full, ds, "the edit")?;
            // name only what differs from the recommendation: the rest keeps it
            let recommended = crate::charts::controls_of(&pending.recommended);
            let changed: BTreeMap<String, f64> = edits
                .into_iter()
                .filter(|(c, v)| {
                    recommended
                        .get(c)
                        .is_none_or(|r| (r - v).abs() > 1e-12 * r.abs().max(1.0))
                })
                .map(|(c, v)| (c.name().to_string(), v))
                .collect();
            if changed.is_empty() {
                return refuse(
                    "the edit changes no value of the recommendation; approve it instead",
                );
            }
            ActionKind::Edit { values: changed }
        }
        "glucose_bolus" => {
            let v = form.number("mmol_per_l", "the bolus (mmol/L)")?;
            let kind = ActionKind::GlucoseBolus { mmol_per_l: v };
            kind.check_amount().map_err(Refusal)?;
            kind
        }
        "media_exchange" => {
            let v = form.number("fraction", "the exchanged fraction")?;
            let kind = ActionKind::MediaExchange { fraction: v };
            kind.check_amount().map_err(Refusal)?;
            kind
        }
        "extra_sample" => {
            let mut values = BTreeMap::new();
            for (name, v) in form.prefixed("s:")? {
                let Some(s) = Species::lookup(&name) else {
                    return refuse(format!("unknown species {name:?}"));
                };
                let b = ds.bounds(Variable::Species(s));
                if v < b.lower || v > b.upper {
                    return refuse(format!(
                        "{} = {v} {} is outside its plausible range {}–{}",
                        s.name(),
                        s.unit(),
                        b.lower,
                        b.upper
                    ));
                }
                values.insert(s.name().to_string(), v);
            }
            if values.is_empty() {
                return refuse("an extra sample needs at least one measured value");
            }
            ActionKind::ExtraSample { values }
        }
        "setpoint_override" => {
            let edits = control_values(form)?;
            if edits.is_empty() {
                return refuse("a setpoint override needs at least one control value");
            }
            let mut full = setpoint_steps(&reactor.setpoints)
                .last()
                .map_or_else(Control::defaults, |(_, v)| *v);
            for (c, v) in &edits {
                full[c.index()] = *v;
            }
            check_inside(&full, ds, "the override")?;
            ActionKind::SetpointOverride {
                values: edits
                    .into_iter()
                    .map(|(c, v)| (c.name().to_string(), v))
                    .collect(),
            }
        }
        other => return refuse(format!("unknown action {other:?}")),
    };
    if !matches!(
        kind,
        ActionKind::Approve | ActionKind::Edit { .. } | ActionKind::Reject { .. }
    ) && day > snapshot.day.saturating_add(1)
    {
        return refuse(format!(
            "day {day} is after the campaign's day {} (+1)",
            snapshot.day
        ));
    }
    Ok(OperatorAction {
        id,
        actor: actor.to_string(),
        at,
        reactor: reactor_id.to_string(),
        day,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use perfusio_core::DEFAULT_AMBR250_DESIGN_SPACE;
    use perfusio_twin::campaign_files::{PendingRecommendation, ReactorSnapshot};

    fn snapshot() -> CampaignSnapshot {
        CampaignSnapshot {
            campaign: "c".into(),
            day: 5,
            updated_at: "2026-12-02T08:00:00Z".into(),
            status: "running".into(),
            approval: "required".into(),
            objective: "harvest".into(),
            reactors: vec![ReactorSnapshot {
                id: "R01".into(),
                connector: "virtual".into(),
                audit: "R01/audit.jsonl".into(),
                observations: Vec::new(),
                forecast: None,
                setpoints: Vec::new(),
                pending: Some(PendingRecommendation {
                    day: 5,
                    recommended: BTreeMap::from([("perfusion_rate".into(), 1.2)]),
                    current: BTreeMap::from([("perfusion_rate".into(), 1.0)]),
                    reason: "best LogEI".into(),
                    deadline: "2026-12-02T09:00:00Z".into(),
                    at_deadline: "hold".into(),
                }),
                alarms: Vec::new(),
            }],
            best_point: None,
            pareto_front: Vec::new(),
        }
    }

    fn form(pairs: &[(&str, &str)]) -> ActionForm {
        ActionForm::from_pairs(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .unwrap()
    }

    fn build(pairs: &[(&str, &str)]) -> Result<OperatorAction, Refusal> {
        build_action(
            &form(pairs),
            Some(&snapshot()),
            &DEFAULT_AMBR250_DESIGN_SPACE,
            "ana",
            "id-1".into(),
            "2026-12-02T08:01:00Z".into(),
        )
    }

    #[test]
    fn approve_edit_reject_need_the_pending_day() {
        let a = build(&[("kind", "approve"), ("reactor", "R01"), ("day", "5")]).unwrap();
        assert_eq!(
            (a.kind, a.actor.as_str(), a.day),
            (ActionKind::Approve, "ana", 5)
        );
        let e = build(&[("kind", "approve"), ("reactor", "R01"), ("day", "4")]).unwrap_err();
        assert!(e.0.contains("day 5, not day 4"), "{e}");
        let e = build(&[("kind", "approve"), ("reactor", "R09"), ("day", "5")]).unwrap_err();
        assert!(e.0.contains("no reactor"), "{e}");
    }

    #[test]
    fn an_edit_outside_the_design_space_is_refused_with_the_reason() {
        let ok = build(&[
            ("kind", "edit"),
            ("reactor", "R01"),
            ("day", "5"),
            ("c:perfusion_rate", "1.8"),
            ("c:bleed_rate", ""),
        ])
        .unwrap();
        assert_eq!(
            ok.kind,
            ActionKind::Edit {
                values: BTreeMap::from([("perfusion_rate".into(), 1.8)])
            }
        );
        let e = build(&[
            ("kind", "edit"),
            ("reactor", "R01"),
            ("day", "5"),
            ("c:perfusion_rate", "2.5"),
        ])
        .unwrap_err();
        assert!(
            e.0.contains("perfusion_rate = 2.5") && e.0.contains("above 2"),
            "{e}"
        );
        let e = build(&[
            ("kind", "edit"),
            ("reactor", "R01"),
            ("day", "5"),
            ("c:x", "1"),
        ])
        .unwrap_err();
        assert!(e.0.contains("unknown control"), "{e}");
    }

    #[test]
    fn manual_interventions_are_checked() {
        let b = build(&[
            ("kind", "glucose_bolus"),
            ("reactor", "R01"),
            ("day", "5"),
            ("mmol_per_l", "5"),
        ])
        .unwrap();
        assert_eq!(b.kind, ActionKind::GlucoseBolus { mmol_per_l: 5.0 });
        assert!(
            build(&[
                ("kind", "media_exchange"),
                ("reactor", "R01"),
                ("day", "5"),
                ("fraction", "1.5")
            ])
            .is_err()
        );
        let s = build(&[
            ("kind", "extra_sample"),
            ("reactor", "R01"),
            ("day", "5"),
            ("s:titer", "300"),
        ])
        .unwrap();
        assert_eq!(
            s.kind,
            ActionKind::ExtraSample {
                values: BTreeMap::from([("Titer".into(), 300.0)])
            }
        );
        assert!(
            build(&[
                ("kind", "extra_sample"),
                ("reactor", "R01"),
                ("day", "5"),
                ("s:Via", "140")
            ])
            .is_err()
        );
        assert!(
            build(&[
                ("kind", "setpoint_override"),
                ("reactor", "R01"),
                ("day", "5"),
                ("c:agitation", "2000")
            ])
            .is_err()
        );
        assert!(
            build(&[
                ("kind", "glucose_bolus"),
                ("reactor", "R01"),
                ("day", "9"),
                ("mmol_per_l", "5")
            ])
            .is_err()
        );
    }
}
