//! `perfusio dashboard`: serve the local web page of a campaign directory until Ctrl-C, and
//! `perfusio dashboard hash-password`: a line for the users file.

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use perfusio_core::{DesignSpace, Secret};
use perfusio_dashboard::{Dashboard, DashboardConfig, Users, hash_password};

/// Arguments of `perfusio dashboard`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Option<DashboardCommand>,
    /// The campaign directory (its snapshot.json, actions.jsonl and outcomes.jsonl).
    #[arg(long)]
    campaign: Option<PathBuf>,
    /// Address to listen on; loopback unless --allow-remote.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Users file (TOML, `[users] name = "sha256:…"`, see `dashboard hash-password`);
    /// without it the page is read-only.
    #[arg(long)]
    users: Option<PathBuf>,
    /// Design space (TOML, as `perfusio design-space --format toml` prints) that edits and overrides
    /// are checked against; default: the ambr250 design space.
    #[arg(long)]
    design_space: Option<PathBuf>,
    /// Allow a --listen address that is not loopback (plain HTTP: anyone who can reach it sees
    /// the campaign and the login form).
    #[arg(long)]
    allow_remote: bool,
}

#[derive(Debug, clap::Subcommand)]
enum DashboardCommand {
    /// Read a password from the first line of stdin and print its salted hash for the users
    /// file (e.g. `read -rs PW; echo "$PW" | perfusio dashboard hash-password --user ana`).
    HashPassword {
        /// Print the whole users-file line for this user name.
        #[arg(long)]
        user: Option<String>,
    },
}

pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    if let Some(DashboardCommand::HashPassword { user }) = &args.command {
        return hash_password_cmd(user.as_deref());
    }
    let Some(campaign) = &args.campaign else {
        bail!("give --campaign DIR (or the hash-password subcommand)");
    };
    let mut config = DashboardConfig::new(campaign);
    config.listen = args.listen;
    config.allow_non_loopback = args.allow_remote;
    if let Some(file) = &args.users {
        config.users = Users::load(file)?;
    }
    if let Some(file) = &args.design_space {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        config.design_space =
            DesignSpace::from_toml_str(&text).with_context(|| format!("in {}", file.display()))?;
    }
    crate::init_tracing("info");
    let users = config.users.len();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let dashboard = Dashboard::bind(config).await?;
        crate::say(format!(
            "dashboard of {} at {} ({}); Ctrl-C stops",
            campaign.display(),
            dashboard.url(),
            if users == 0 {
                "read-only: no users file".to_string()
            } else {
                format!("{users} user(s) may act")
            }
        ));
        dashboard
            .run_until(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        crate::say("stopped");
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

fn hash_password_cmd(user: Option<&str>) -> anyhow::Result<ExitCode> {
    if let Some(u) = user
        && !perfusio_dashboard::users::valid_user_name(u)
    {
        bail!("user name {u:?} is not 1-64 characters of A-Z a-z 0-9 _ . -");
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from stdin")?;
    let password = Secret::new(line.trim_end_matches(['\r', '\n']));
    if password.expose().is_empty() {
        bail!("the password (first line of stdin) is empty");
    }
    let hash = hash_password(&password)?;
    match user {
        Some(u) => crate::say(format!("{u} = \"{hash}\"")),
        None => crate::say(hash),
    }
    Ok(ExitCode::SUCCESS)
}
