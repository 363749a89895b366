//! Integration tests of perfusio-audit (one binary; see each module).
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

mod common;
mod concurrent;
mod docs;
mod export;
mod payloads;
mod proptests;
mod python;
mod roundtrip;
mod secrets;
mod tamper;
mod writer;
