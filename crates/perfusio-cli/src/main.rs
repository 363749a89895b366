//! `perfusio`: the command-line tool of perfusio-rs.
//!
//! Each subcommand lives in its own module; `main` turns any error into a one-line
//! message on stderr and a non-zero exit code (never a panic or a backtrace).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod audit_cmd;
mod campaign_cmd;
mod config_cmd;
mod dashboard_cmd;
mod design_space_cmd;
mod emulate_cmd;
mod evaluate_cmd;
mod forecast_cmd;
mod recommend_cmd;
mod run_cmd;
mod runs;
mod simulate_cmd;
mod train_cmd;

/// Writes one line of informational output to stdout. A reader that went away (`| head`)
/// or any other write error never stops the command: what the command records (audit
/// log, files) does not depend on its terminal output.
pub(crate) fn say(text: impl std::fmt::Display) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

/// Sends the command's log (tracing) to stderr, filtered by `RUST_LOG` or else by
/// `default` (e.g. `"info"`). Only the first call in a process installs it.
pub(crate) fn init_tracing(default: &str) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .try_init();
}

/// Online digital twin of a perfusion bioreactor, driven as a self-driving experiment.
#[derive(Debug, Parser)]
#[command(name = "perfusio", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the design space (controls, bounds, species ranges).
    DesignSpace(design_space_cmd::Args),
    /// Inspect and validate run configurations.
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// Simulate the virtual reactor (one operating point or a design) and write daily CSV.
    Simulate(simulate_cmd::Args),
    /// Score the hybrid model's forecasts on held-out simulated runs (with an ablation).
    Evaluate(evaluate_cmd::Args),
    /// Train the hybrid model on a directory of runs and save it as one model file.
    Train(train_cmd::Args),
    /// Forecast a run from its history with a trained model (CSV and SVG fan charts).
    Forecast(forecast_cmd::Args),
    /// Recommend tomorrow's setpoints for a run's history (one decision of the design policy).
    Recommend(recommend_cmd::Args),
    /// Serve simulated ambr250 reactors over OPC UA until Ctrl-C.
    Emulate(emulate_cmd::Args),
    /// Run the digital twin's closed loop (read, learn, forecast, decide, write or withhold,
    /// audit) over a file, the virtual reactor or an OPC UA reactor.
    Run(Box<run_cmd::Args>),
    /// Verify tamper-evident audit logs.
    #[command(subcommand)]
    Audit(audit_cmd::AuditCommand),
    /// Serve the local web dashboard of a campaign directory (live charts, approvals,
    /// manual interventions); `dashboard hash-password` makes users-file entries.
    Dashboard(dashboard_cmd::Args),
    /// Campaigns of 1–24 reactors over one shared model: `campaign run CONFIG.toml`,
    /// `campaign report DIR`.
    #[command(subcommand)]
    Campaign(campaign_cmd::CampaignCommand),
    /// Approve a campaign's pending recommendation for one reactor and day.
    Approve(campaign_cmd::DecisionArgs),
    /// Edit a pending recommendation (CONTROL=VALUE…, inside the design space) and apply it.
    Edit(campaign_cmd::DecisionArgs),
    /// Reject a pending recommendation: the reactor keeps its setpoints.
    Reject(campaign_cmd::DecisionArgs),
    /// Record a manual intervention on a campaign's reactor: glucose-bolus=MMOL_PER_L,
    /// media-exchange=FRACTION, sample SPECIES=VALUE…, setpoint CONTROL=VALUE….
    Intervene(campaign_cmd::InterveneArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version to stdout and usage errors to stderr itself.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let result = match cli.command {
        Command::DesignSpace(args) => design_space_cmd::run(&args),
        Command::Config(cmd) => config_cmd::run(&cmd),
        Command::Simulate(args) => simulate_cmd::run(&args),
        Command::Emulate(args) => emulate_cmd::run(&args),
        Command::Evaluate(args) => evaluate_cmd::run(&args),
        Command::Train(args) => train_cmd::run(&args),
        Command::Forecast(args) => forecast_cmd::run(&args),
        Command::Recommend(args) => recommend_cmd::run(&args),
        Command::Audit(cmd) => audit_cmd::run(&cmd),
        Command::Run(args) => run_cmd::run(&args),
        Command::Dashboard(args) => dashboard_cmd::run(&args),
        Command::Campaign(cmd) => campaign_cmd::run(&cmd),
        Command::Approve(args) => campaign_cmd::decide(campaign_cmd::Verdict::Approve, &args),
        Command::Edit(args) => campaign_cmd::decide(campaign_cmd::Verdict::Edit, &args),
        Command::Reject(args) => campaign_cmd::decide(campaign_cmd::Verdict::Reject, &args),
        Command::Intervene(args) => campaign_cmd::intervene(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
