//! Integration tests of perfusio-hybrid (one binary, a module per concern).

// the tests index several per-species arrays with one day or species index
#![allow(clippy::needless_range_loop)]

mod calibrate;
mod common;
mod controls;
mod errors;
mod evaluate;
mod filter;
mod forecast;
mod lines;
mod persistence;
mod process;
mod retrain;
