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
