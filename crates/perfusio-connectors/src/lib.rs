//! # perfusio-connectors
//!
//! Every way the twin talks to a reactor, behind the [`perfusio_core::Connector`] trait:
//!
//! | module | connector | feature |
//! |---|---|---|
//! | [`files`] | `FilesystemStore`: wide/long CSV (always), Parquet and polars DataFrames | `polars` for Parquet |
//! | `virtual_reactor` | the simulated ambr250 of `perfusio-mechanistic` | — |
//! | `opcua` | OPC UA client and the ambr250 emulator server | `opcua` |
//!
//! Every connector only reads: `read_raw` returns the day's values exactly as found, each
//! with its origin (the file's line and column, the OPC UA node, the simulator), and the
//! one validation step of `perfusio-core` ([`perfusio_core::RawReading::validate`], or
//! [`perfusio_core::read_validated`]) accepts or rejects them. No connector validates or
//! keeps rejections on its own, so a twin holding any `dyn Connector` audits every
//! rejected value the same way.
//!
//! The default build compiles neither polars nor async-opcua: both dominate compile time on
//! small machines, and the CSV path of the T06 tutorial needs neither.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::print_stdout,
        clippy::print_stderr
    )
)]

pub mod files;
#[cfg(feature = "opcua")]
pub mod opcua;
pub mod virtual_reactor;
