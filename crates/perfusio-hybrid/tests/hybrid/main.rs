//! Integration tests of perfusio-hybrid (one binary, a module per concern).

mod common;
mod errors;
mod filter;
mod forecast;
mod persistence;
mod process;
