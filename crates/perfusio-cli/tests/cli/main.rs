//! End-to-end tests of the `perfusio` binary: one test binary, one module per subcommand.

use std::process::Command;

mod audit_verify;
mod basic;
mod campaign;
mod dashboard;
mod emulate;
mod model;
mod recommend;
mod run;
mod simulate;

/// Runs the built `perfusio` binary; returns its exit code, stdout and stderr.
pub(crate) fn perfusio(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_perfusio"))
        .args(args)
        .output()
        .expect("run perfusio");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
