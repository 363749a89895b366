//! `perfusio run`: the digital twin's closed loop over a CSV file, the virtual reactor or an
//! OPC UA reactor, with a progress line per day and a JSON summary.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use perfusio_connectors::opcua::{NodeMap, OpcUaConfig, OpcUaConnector};
use perfusio_core::{Acquisition, Connector, DEFAULT_AMBR250_DESIGN_SPACE, RunConfig, Species};
use perfusio_hybrid::{CalibrationConfig, HybridConfig};
use perfusio_mechanistic::{PlantSpec, VirtualReactorConfig};
use perfusio_twin::prelude::*;
use perfusio_twin::{RunInfo, RunReport};

/// Arguments of `perfusio run`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Where the reactor is: `file:PATH` (CSV/Parquet culture file; setpoints go to its
    /// setpoint log), `virtual` (the built-in simulated ambr250, see --truth) or
    /// `opcua:URL` (an ambr250 over OPC UA, reactor R01).
    #[arg(long, value_name = "file:PATH|virtual|opcua:URL")]
    connector: String,
    /// The simulated plant of `--connector virtual`: a clone name or a plant file (TOML).
    #[arg(long, value_name = "CLONE|FILE.toml", default_value = "CloneX")]
    truth: String,
    /// The mechanism the hybrid model starts from: a clone name or a plant file (TOML).
    #[arg(long, value_name = "CLONE|FILE.toml")]
    prior: Option<String>,
    /// A pre-trained hybrid model (written by `HybridModel::save`) instead of learning online.
    #[arg(long, value_name = "FILE", conflicts_with = "prior")]
    model: Option<PathBuf>,
    /// Calibrate these kinetic parameters of the mechanism online, from the run's own data
    /// (comma-separated field names of a plant file; the bare flag: mu_max, q_glc_max,
    /// q_gln_max, k_d, beta_p and the test of the pathway switch consumes_lactate): the
    /// first retrain with 10 or more one-day transitions calibrates from the prior (and
    /// tests the switches), every 5th retrain after it again, warm-started. Name the
    /// parameters the cell line may differ in (e.g. lac_consump_rate for a clone that may
    /// not take up lactate). Give it again with --resume.
    #[arg(
        long,
        value_name = "NAMES",
        num_args = 0..=1,
        default_missing_value = "",
        conflicts_with = "model"
    )]
    calibrate: Option<String>,
    /// With --calibrate: weigh each species by the misfit the mechanism leaves in it, not
    /// by its noise model alone (see `perfusio train --help`). Give it again with --resume.
    #[arg(long, requires = "calibrate")]
    species_weights: bool,
    /// The run configuration (TOML; `perfusio config default` prints one). Options given
    /// here override it.
    #[arg(long, value_name = "run.toml")]
    config: Option<PathBuf>,
    /// Culture days to run (decisions on days 0..N-1, day N read only).
    #[arg(long, value_name = "N")]
    days: Option<u32>,
    /// Seed of the run: noise of the virtual plant, forecasts, decisions (default: the
    /// configuration's, else 42; a resumed run keeps the seed of its log).
    #[arg(long, value_name = "S")]
    seed: Option<u64>,
    /// The objective: `harvest`, `track:VCV=10` (any species, any target) or `final-titer`.
    #[arg(long, default_value = "harvest")]
    objective: String,
    /// Cost of medium in the harvest objective, mg of titer per L of medium.
    #[arg(long, value_name = "C", default_value_t = 0.0)]
    medium_cost: f64,
    /// Acquisition function (e.g. LogEI, qLogEI, UCB; `perfusio design-space` lists them).
    #[arg(long, value_name = "NAME")]
    acquisition: Option<String>,
    /// Write the chosen setpoints to the reactor (otherwise they are recorded as withheld).
    #[arg(long)]
    allow_write: bool,
    /// The audit log.
    #[arg(long, value_name = "PATH", default_value = "audit.jsonl")]
    audit: PathBuf,
    /// Write SVG charts (forecast fan charts, setpoint history) into this directory.
    #[arg(long, value_name = "DIR")]
    plot: Option<PathBuf>,
    /// Continue the run recorded in --audit (after a crash or Ctrl-C).
    #[arg(long)]
    resume: bool,
    /// Write the run's summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    summary_json: Option<PathBuf>,
    /// PKI directory of the OPC UA client.
    #[arg(long, value_name = "DIR", default_value = "pki")]
    pki_dir: PathBuf,
}

/// The connector chosen on the command line, and the simulated plant when it is one.
type Chosen = (Arc<dyn Connector>, Option<Arc<VirtualReactorConnector>>);

fn connector(args: &Args, seed: u64) -> anyhow::Result<Chosen> {
    let spec = args.connector.trim();
    if let Some(path) = spec.strip_prefix("file:") {
        if path.is_empty() {
            bail!("--connector file:PATH needs a path, e.g. file:culture.csv");
        }
        return Ok((Arc::new(FilesystemStore::from_path(path)?), None));
    }
    if let Some(url) = spec.strip_prefix("opcua:") {
        let mut cfg = OpcUaConfig::new(url, NodeMap::ambr250("R01"));
        cfg.pki_dir.clone_from(&args.pki_dir);
        cfg.check()?;
        return Ok((Arc::new(OpcUaConnector::new(cfg)?), None));
    }
    if spec.eq_ignore_ascii_case("virtual") {
        let plant = PlantSpec::from_arg(&args.truth).context("--truth")?;
        let vr = VirtualReactorConnector::new(VirtualReactorConfig {
            clone: plant.clone,
            params: Some(plant.params),
            seed,
            ..VirtualReactorConfig::default()
        })?;
        let vr = Arc::new(vr);
        return Ok((vr.clone(), Some(vr)));
    }
    bail!("--connector {spec}: expected file:PATH, virtual or opcua:URL")
}

fn run_config(args: &Args) -> anyhow::Result<RunConfig> {
    let mut cfg = match &args.config {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            RunConfig::from_toml_str(&text).with_context(|| format!("in {}", file.display()))?
        }
        None => RunConfig::default(),
    };
    if let Some(d) = args.days {
        cfg.duration_days = d;
    }
    if args.seed.is_some() {
        cfg.seed = args.seed;
    }
    if let Some(a) = &args.acquisition {
        cfg.acquisition = a.parse::<Acquisition>().context("--acquisition")?;
    }
    cfg.allow_write |= args.allow_write;
    cfg.validate()?;
    Ok(cfg)
}

/// One line per day: a progress bar on a terminal, plain lines when piped.
#[derive(Debug)]
struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template("{bar:30} day {pos}/{len} {elapsed_precise} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        Self { bar }
    }

    fn line(&self, text: String) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => crate::say(text),
        }
    }
}

impl Observer for Progress {
    fn run_started(&self, info: &RunInfo) {
        if let Some(bar) = &self.bar {
            bar.set_length(u64::from(info.last_day) + 1);
            bar.set_position(u64::from(info.first_day));
        }
        self.line(format!(
            "run {} (seed {}) on {}: days {}..={}, audit {}",
            info.run_id,
            info.seed,
            info.connector,
            info.first_day,
            info.last_day,
            info.audit_path.display()
        ));
    }

    fn day_completed(&self, d: &DayRecord) {
        let v = |s: Species, p: usize| {
            d.species(s)
                .map_or_else(|| "-".to_string(), |x| format!("{x:.p$}"))
        };
        let outcome = if d.written.is_some() {
            "written"
        } else if d.withheld.is_some() {
            "withheld"
        } else {
            "-"
        };
        let decided = d.decision.as_ref().map_or_else(String::new, |x| {
            let g = |c: Control| x.controls.get(c.name()).copied().unwrap_or(f64::NAN);
            format!(
                "perfusion {:.2} bleed {:.2}",
                g(Control::PerfusionRate),
                g(Control::BleedRate)
            )
        });
        self.line(format!(
            "day {:>3}  VCD {:>6}  Via {:>5}  Titer {:>5}  {decided} {outcome}{}{}",
            d.day,
            v(Species::VCD, 2),
            v(Species::Via, 1),
            v(Species::Titer, 0),
            if d.retrained.is_some() {
                ", retrained"
            } else {
                ""
            },
            if d.alarms.is_empty() {
                String::new()
            } else {
                format!(", {} alarm record(s)", d.alarms.len())
            }
        ));
        if let Some(bar) = &self.bar {
            bar.set_position(u64::from(d.day) + 1);
        }
    }

    fn run_finished(&self, _report: &RunReport) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let cfg = run_config(args)?;
    let prior = args
        .prior
        .as_deref()
        .map(PlantSpec::from_arg)
        .transpose()
        .context("--prior")?;
    let calibrate =
        crate::train_cmd::calibration_arg(args.calibrate.as_deref())?.map(|c| CalibrationConfig {
            online_from_prior: true,
            species_weights: args.species_weights,
            ..c
        });
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        // the plant's noise follows the run's seed; a resumed run takes the log's seed
        let seed = match (args.resume, cfg.seed) {
            (true, _) => resumed_seed(&args.audit)?,
            (false, Some(s)) => s,
            (false, None) => 42,
        };
        let mut cfg = cfg;
        cfg.seed = Some(seed);
        let (shared, plant) = connector(args, seed)?;
        let cancel = CancelToken::new();
        let mut b = DigitalTwin::builder_shared(shared, DEFAULT_AMBR250_DESIGN_SPACE, cfg)
            .objective_spec(args.objective.clone(), args.medium_cost)
            .audit_path(&args.audit)
            .observer(Progress::new())
            .cancel_token(cancel.clone())
            .resume(args.resume);
        if prior.is_some() || calibrate.is_some() {
            let mut hc = match prior {
                Some(p) => HybridConfig::with_prior(p.params, p.source),
                None => HybridConfig::online(),
            };
            if let Some(c) = calibrate {
                hc.calibrate = Some(c);
            }
            b = b.hybrid_config(hc);
        }
        if let Some(m) = &args.model {
            b = b.model_file(m);
        }
        let twin = b.build()?;
        let ctrl_c = tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("Ctrl-C: finishing the run cleanly");
                cancel.cancel();
            }
        });
        let report = twin.run().await?;
        ctrl_c.abort();
        crate::say(&report);
        let true_states = match &plant {
            Some(v) => Some(v.snapshot()?.clean_history().to_vec()),
            None => None,
        };
        if let Some(dir) = &args.plot {
            write_plots(&report, dir)?;
        }
        if let Some(file) = &args.summary_json {
            let summary = report.summary(true_states.as_deref());
            let text = serde_json::to_string_pretty(&summary)?;
            std::fs::write(file, text + "\n")
                .with_context(|| format!("cannot write {}", file.display()))?;
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// The seed recorded in the `run_started` record of an audit log.
fn resumed_seed(audit: &Path) -> anyhow::Result<u64> {
    let records = perfusio_audit::read_records(audit)
        .with_context(|| format!("--resume: cannot read {}", audit.display()))?;
    let mut seed = None;
    for r in records.flatten() {
        if r.kind == "run_started" {
            let started: perfusio_audit::event::RunStarted = r.payload_as()?;
            seed = started.seed;
        }
    }
    seed.with_context(|| format!("--resume: {} records no seed", audit.display()))
}

fn write_plots(report: &RunReport, dir: &Path) -> anyhow::Result<()> {
    use perfusio_twin::plot::{FanChart, fan_chart_svg, setpoint_history_svg};
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for s in [Species::Titer, Species::VCD, Species::Via] {
        if let Some(chart) = FanChart::from_report(report, s) {
            let path = dir.join(format!("forecast_{}.svg", s.name()));
            std::fs::write(&path, fan_chart_svg(&chart)?)?;
        }
    }
    std::fs::write(
        dir.join("setpoints.svg"),
        setpoint_history_svg(&report.applied(), &DEFAULT_AMBR250_DESIGN_SPACE)?,
    )?;
    Ok(())
}
