//! Integration tests of the twin: one test binary, one module per concern.

mod common;
mod daily_loop;
