//! `perfusio audit`: check tamper-evident audit logs (`audit.jsonl`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use perfusio_audit::{AuditError, VerifyOptions, verify_file};

/// Subcommands of `perfusio audit`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum AuditCommand {
    /// Verify an audit log: schema, canonical form, every record hash and every chain link.
    ///
    /// Prints `OK <n> records, head hash <hash>` and exits 0, or names the first bad record and
    /// why (edited, deleted, inserted, duplicated, reordered, malformed, wrong genesis, torn
    /// tail, head mismatch) and exits 1. A chain cannot show that records were cut off its end:
    /// pass the head hash printed when the run finished as --expect-head to prove it.
    Verify {
        /// The audit log (`audit.jsonl`).
        file: PathBuf,
        /// Head hash kept elsewhere; the log must end exactly at it.
        #[arg(long, value_name = "HASH")]
        expect_head: Option<String>,
    },
}

pub(crate) fn run(cmd: &AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Verify { file, expect_head } => {
            let opts = VerifyOptions {
                expect_head: expect_head.clone(),
            };
            let mut out = std::io::stdout().lock();
            match verify_file(file, &opts) {
                Ok(report) => {
                    writeln!(out, "{report}")?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(AuditError::Verification { failure, .. }) => {
                    writeln!(out, "FAILED {}: {failure}", file.display())?;
                    Ok(ExitCode::FAILURE)
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}
