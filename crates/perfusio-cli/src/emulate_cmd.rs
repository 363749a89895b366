//! `perfusio emulate`: serve simulated ambr250 reactors over OPC UA until Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use perfusio_connectors::opcua::{Emulator, EmulatorConfig, MAX_REACTORS, NodeMap};
use perfusio_connectors::virtual_reactor::virtual_plants;
use perfusio_core::Secret;

/// Arguments of `perfusio emulate`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// TCP port (0 picks a free one).
    #[arg(long, default_value_t = 4840)]
    port: u16,
    /// Interface to listen on (and host name in the endpoint URLs).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Number of reactors (1 to 24), ids R01, R02, ...
    #[arg(long, default_value_t = 5)]
    reactors: usize,
    /// One culture day every N wall-clock seconds (default: only on demand, by writing
    /// a number of days to a reactor's AdvanceDays variable).
    #[arg(long)]
    seconds_per_day: Option<f64>,
    /// With --seconds-per-day: start the culture clock at the first read by a client, so
    /// day 0 lasts until a supervisor (e.g. `perfusio campaign run`) has connected and
    /// read it, and every later day lasts --seconds-per-day.
    #[arg(long, requires = "seconds_per_day")]
    clock_starts_on_first_read: bool,
    /// Seed of the measurement noise (reactor i uses a seed derived from it).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// PKI directory of the server (certificate created on first start).
    #[arg(long, default_value = "pki-emulator")]
    pki_dir: PathBuf,
    /// Accept this user on every endpoint (password read from --password-file).
    #[arg(long, requires = "password_file")]
    user: Option<String>,
    /// File whose first line is the password of --user.
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// Refuse anonymous sessions (needs --user).
    #[arg(long, requires = "user")]
    no_anonymous: bool,
    /// Do not offer the unsecured endpoint (only Basic256Sha256 Sign / SignAndEncrypt).
    #[arg(long)]
    no_security_none: bool,
}

pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    if args.reactors == 0 || args.reactors > MAX_REACTORS {
        bail!(
            "--reactors {} is out of range: give 1 to {MAX_REACTORS}",
            args.reactors
        );
    }
    let mut users = Vec::new();
    if let (Some(user), Some(file)) = (&args.user, &args.password_file) {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read password file {}", file.display()))?;
        let pw = text.lines().next().unwrap_or_default().to_string();
        if pw.is_empty() {
            bail!("password file {} is empty", file.display());
        }
        users.push((user.clone(), Secret::new(pw)));
    }
    crate::init_tracing("info,opcua=warn");
    let config = EmulatorConfig {
        host: args.host.clone(),
        port: args.port,
        seconds_per_day: args.seconds_per_day,
        clock_starts_on_first_read: args.clock_starts_on_first_read,
        pki_dir: args.pki_dir.clone(),
        security_none: !args.no_security_none,
        allow_anonymous: !args.no_anonymous,
        users,
        ..EmulatorConfig::default()
    };
    let plants = virtual_plants(args.reactors, args.seed)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let mut emulator = Emulator::start(config, plants).await?;
        let ids = emulator.reactor_ids();
        crate::say(format!(
            "ambr250 emulator: {} reactors ({}) at {}",
            ids.len(),
            ids.join(", "),
            emulator.endpoint_url()
        ));
        if let Some(first) = ids.first() {
            crate::say(format!(
                "nodes: e.g. {} (one folder per reactor); Ctrl-C stops",
                NodeMap::ambr250(first).species[&perfusio_core::Species::VCD]
            ));
        }
        let interrupted = tokio::select! {
            r = tokio::signal::ctrl_c() => {
                r.context("cannot listen for Ctrl-C")?;
                true
            }
            r = emulator.wait() => {
                r?;
                false
            }
        };
        if interrupted {
            crate::say("stopping");
            emulator.stop().await;
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
