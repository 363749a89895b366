//! `perfusio campaign run|report`, the operators' `perfusio approve|edit|reject` and
//! `perfusio intervene`: a campaign of many reactors and the actions that supervise it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use perfusio_core::{Control, DEFAULT_AMBR250_DESIGN_SPACE};
use perfusio_twin::campaign::{
    Campaign, CampaignConfig, CampaignDay, CampaignIndex, CampaignObserver, CampaignReport,
    controls_from_names,
};
use perfusio_twin::campaign_files::{ActionKind, OperatorAction, append_action, read_snapshot};
use perfusio_twin::prelude::CancelToken;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `perfusio campaign …`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum CampaignCommand {
    /// Run a campaign of 1–24 reactors over one shared model (TOML configuration; see the
    /// README for its fields).
    Run {
        /// The campaign configuration.
        #[arg(value_name = "CONFIG.toml")]
        config: PathBuf,
        /// Continue the campaign of the configuration's output directory after its last
        /// complete day (after a crash, a kill or Ctrl-C), with the same configuration.
        #[arg(long)]
        resume: bool,
    },
    /// Report a campaign directory: the best operating point, each reactor's outcome, the
    /// shared model's one-day accuracy on the campaign's own data.
    Report {
        /// The campaign directory (`output_dir` of its configuration).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Which reactor, which day, who: the address of every operator action.
#[derive(Debug, clap::Args)]
pub(crate) struct Target {
    /// The campaign directory.
    #[arg(long, value_name = "DIR")]
    campaign: PathBuf,
    /// The reactor, e.g. R07.
    #[arg(long, value_name = "ID")]
    reactor: String,
    /// The culture day the action concerns.
    #[arg(long, value_name = "N")]
    day: u32,
    /// Who acts (default: $USER).
    #[arg(long, value_name = "NAME")]
    actor: Option<String>,
}

/// `perfusio approve|edit|reject`.
#[derive(Debug, clap::Args)]
pub(crate) struct DecisionArgs {
    #[command(flatten)]
    target: Target,
    /// Edited values, `NAME=VALUE` (controls as `perfusio design-space` names them); only
    /// for `edit`.
    #[arg(value_name = "NAME=VALUE")]
    values: Vec<String>,
    /// Why (for `reject`).
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
}

/// `perfusio intervene`.
#[derive(Debug, clap::Args)]
pub(crate) struct InterveneArgs {
    #[command(flatten)]
    target: Target,
    /// What was done: `glucose-bolus=MMOL_PER_L`, `media-exchange=FRACTION`,
    /// `sample SPECIES=VALUE…` (an extra sample) or `setpoint CONTROL=VALUE…` (an override).
    #[arg(value_name = "ACTION", num_args = 1.., required = true)]
    action: Vec<String>,
}

/// Which of approve, edit, reject.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Verdict {
    Approve,
    Edit,
    Reject,
}

/// Progress lines through `say()`.
#[derive(Debug)]
struct Lines;

impl CampaignObserver for Lines {
    fn day_completed(&self, d: &CampaignDay) {
        crate::say(format!(
            "day {:>3}: {} sampled, {} written, {} held{}{}, compute {:.2} s (learn {:.2}, retrain {:.2}, forecast {:.2}, decide {:.2}, best {:.2}){}",
            d.day,
            d.sampled,
            d.written,
            d.held,
            if d.retrained { ", retrained" } else { "" },
            if d.alarms > 0 {
                format!(", {} active alarm(s)", d.alarms)
            } else {
                String::new()
            },
            d.compute.as_secs_f64(),
            d.timings.learn.as_secs_f64(),
            d.timings.retrain.as_secs_f64(),
            d.timings.forecast.as_secs_f64(),
            d.timings.decide.as_secs_f64(),
            d.timings.best.as_secs_f64(),
            d.best.as_ref().map_or(String::new(), |b| format!(
                ", best point {:.0} ± {:.0}",
                b.objective_mean, b.objective_sd
            )),
        ));
    }
}

pub(crate) fn run(cmd: &CampaignCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        CampaignCommand::Run { config, resume } => {
            let cfg = CampaignConfig::from_file(config)?;
            // warnings (a background fit that cannot be adopted, a connector retry) on
            // stderr; RUST_LOG=perfusio_twin=debug adds e.g. the batch decision's split
            crate::init_tracing("warn,opcua=error");
            crate::say(format!(
                "campaign {}{}: {} reactors, days 0..={}, approval {}, directory {}",
                cfg.name,
                if *resume { " (resuming)" } else { "" },
                cfg.reactors.len(),
                cfg.run.duration_days,
                cfg.approval.mode.as_str(),
                cfg.output_dir.display()
            ));
            let runtime =
                tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            runtime.block_on(async move {
                let cancel = CancelToken::new();
                let c = Campaign::from_config(cfg)?
                    .observer(Lines)
                    .cancel_token(cancel.clone())
                    .resume(*resume);
                let ctrl_c = tokio::spawn(async move {
                    if tokio::signal::ctrl_c().await.is_ok() {
                        eprintln!("Ctrl-C: ending the campaign cleanly");
                        cancel.cancel();
                    }
                });
                let report = c.run().await?;
                ctrl_c.abort();
                crate::say(&report);
                anyhow::Ok(ExitCode::SUCCESS)
            })
        }
        CampaignCommand::Report { dir, json } => {
            let report = CampaignReport::from_dir(dir)?;
            if *json {
                crate::say(serde_json::to_string_pretty(&report)?);
            } else {
                crate::say(&report);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn actor(t: &Target) -> anyhow::Result<String> {
    let name = t
        .actor
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "operator".into());
    if name.trim().is_empty() || name.chars().any(char::is_control) {
        bail!("--actor {name:?}: give a name without control characters");
    }
    Ok(name)
}

fn pairs(items: &[String], what: &str) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    for item in items {
        let (name, value) = item
            .split_once('=')
            .with_context(|| format!("{item:?}: expected {what}=VALUE"))?;
        let v: f64 = value
            .trim()
            .parse()
            .with_context(|| format!("{item:?}: {value:?} is not a number"))?;
        if !v.is_finite() {
            bail!("{item:?}: the value must be finite");
        }
        out.insert(name.trim().to_string(), v);
    }
    Ok(out)
}

/// Checks the campaign and the reactor exist and appends the action.
fn submit(t: &Target, kind: ActionKind) -> anyhow::Result<ExitCode> {
    let index = CampaignIndex::read(&t.campaign)
        .with_context(|| format!("--campaign {}", t.campaign.display()))?;
    if !index.reactors.iter().any(|r| r.id == t.reactor) {
        bail!(
            "--reactor {}: campaign {} has reactors {}",
            t.reactor,
            index.name,
            index
                .reactors
                .iter()
                .map(|r| r.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if let Some(how) = &index.finished {
        // recorded all the same (an action is never lost), but no running campaign answers it
        eprintln!(
            "warning: campaign {} has finished ({how}): the action is recorded, but no campaign \
             will answer it",
            index.name
        );
    }
    let actor = actor(t)?;
    let now = OffsetDateTime::now_utc();
    let action = OperatorAction {
        id: format!("{actor}-{}", now.unix_timestamp_nanos()),
        actor,
        at: now.format(&Rfc3339).unwrap_or_default(),
        reactor: t.reactor.clone(),
        day: t.day,
        kind,
    };
    append_action(&t.campaign, &action)?;
    crate::say(format!(
        "action {} recorded for {} day {}; the campaign answers it in {}",
        action.id,
        t.reactor,
        t.day,
        t.campaign.join("outcomes.jsonl").display()
    ));
    Ok(ExitCode::SUCCESS)
}

/// The values an edit or an override starts from: the pending recommendation of that day,
/// else the reactor's latest setpoints, else the defaults.
fn base_of(dir: &Path, reactor: &str, day: u32, pending: bool) -> anyhow::Result<[f64; 6]> {
    let mut base = Control::defaults();
    if let Some(s) = read_snapshot(dir)?
        && let Some(r) = s.reactors.iter().find(|r| r.id == reactor)
    {
        let from = match (&r.pending, pending) {
            (Some(p), true) if p.day == day => Some(&p.recommended),
            _ => r.setpoints.last().map(|e| &e.values),
        };
        if let Some(values) = from {
            for c in Control::ALL {
                if let Some(v) = values.get(c.name()) {
                    base[c.index()] = *v;
                }
            }
        }
    }
    Ok(base)
}

/// Refuses values outside the campaign's design space, with the reason and exit code 1.
fn check_in_design_space(
    t: &Target,
    values: &BTreeMap<String, f64>,
    pending: bool,
) -> anyhow::Result<Option<ExitCode>> {
    let base = base_of(&t.campaign, &t.reactor, t.day, pending)?;
    match controls_from_names(&DEFAULT_AMBR250_DESIGN_SPACE, &base, values) {
        Ok(_) => Ok(None),
        Err(why) => {
            eprintln!("refused: {why}");
            Ok(Some(ExitCode::FAILURE))
        }
    }
}

pub(crate) fn decide(verdict: Verdict, args: &DecisionArgs) -> anyhow::Result<ExitCode> {
    let t = &args.target;
    let kind = match verdict {
        Verdict::Approve | Verdict::Reject if !args.values.is_empty() => {
            bail!("values are for `perfusio edit`; approve and reject take none")
        }
        Verdict::Approve => ActionKind::Approve,
        Verdict::Reject => ActionKind::Reject {
            reason: args.reason.clone(),
        },
        Verdict::Edit => {
            if args.values.is_empty() {
                bail!("`perfusio edit` needs at least one CONTROL=VALUE");
            }
            let values = pairs(&args.values, "CONTROL")?;
            if let Some(code) = check_in_design_space(t, &values, true)? {
                return Ok(code);
            }
            ActionKind::Edit { values }
        }
    };
    submit(t, kind)
}

pub(crate) fn intervene(args: &InterveneArgs) -> anyhow::Result<ExitCode> {
    let t = &args.target;
    let first = args.action[0].as_str();
    let rest = &args.action[1..];
    let number = |text: &str, what: &str| -> anyhow::Result<f64> {
        let v: f64 = text
            .trim()
            .parse()
            .with_context(|| format!("{what}: {text:?} is not a number"))?;
        if !v.is_finite() {
            bail!("{what}: the value must be finite");
        }
        Ok(v)
    };
    let kind = if let Some(v) = first.strip_prefix("glucose-bolus=") {
        let kind = ActionKind::GlucoseBolus {
            mmol_per_l: number(v, "glucose-bolus (mmol/L)")?,
        };
        if let Err(why) = kind.check_amount() {
            bail!("glucose-bolus={v}: {why}");
        }
        kind
    } else if let Some(v) = first.strip_prefix("media-exchange=") {
        let kind = ActionKind::MediaExchange {
            fraction: number(v, "media-exchange (fraction of the volume)")?,
        };
        if let Err(why) = kind.check_amount() {
            bail!("media-exchange={v}: {why}");
        }
        kind
    } else if first == "sample" {
        if rest.is_empty() {
            bail!("`sample` needs at least one SPECIES=VALUE");
        }
        let values = pairs(rest, "SPECIES")?;
        for name in values.keys() {
            if perfusio_core::Species::lookup(name).is_none() {
                bail!(
                    "{name} is not a species ({})",
                    perfusio_core::Species::valid_names()
                );
            }
        }
        ActionKind::ExtraSample { values }
    } else if first == "setpoint" {
        if rest.is_empty() {
            bail!("`setpoint` needs at least one CONTROL=VALUE");
        }
        let values = pairs(rest, "CONTROL")?;
        if let Some(code) = check_in_design_space(t, &values, false)? {
            return Ok(code);
        }
        ActionKind::SetpointOverride { values }
    } else {
        bail!(
            "{first:?}: expected glucose-bolus=MMOL_PER_L, media-exchange=FRACTION, \
             sample SPECIES=VALUE… or setpoint CONTROL=VALUE…"
        );
    };
    if !matches!(
        kind,
        ActionKind::ExtraSample { .. } | ActionKind::SetpointOverride { .. }
    ) && !rest.is_empty()
    {
        bail!("unexpected arguments after {first}: {rest:?}");
    }
    submit(t, kind)
}
