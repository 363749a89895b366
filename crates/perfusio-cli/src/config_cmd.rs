//! `perfusio config`: print the default run configuration or validate one.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use perfusio_core::RunConfig;

/// Subcommands of `perfusio config`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ConfigCommand {
    /// Print the default run configuration as TOML.
    Default,
    /// Validate a TOML (or `.json`) run configuration and print it with defaults filled in.
    Check {
        /// The configuration file.
        file: PathBuf,
    },
}

pub(crate) fn run(cmd: &ConfigCommand) -> anyhow::Result<ExitCode> {
    let cfg = match cmd {
        ConfigCommand::Default => RunConfig::default(),
        ConfigCommand::Check { file } => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let is_json = file
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("json"));
            let parsed = if is_json {
                RunConfig::from_json_str(&text)
            } else {
                RunConfig::from_toml_str(&text)
            };
            parsed.with_context(|| format!("in {}", file.display()))?
        }
    };
    std::io::stdout()
        .lock()
        .write_all(cfg.to_toml_string()?.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
