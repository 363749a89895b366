//! Integration tests of the twin: one test binary, one module per concern.

mod alarms;
mod calibrated;
mod campaign;
mod common;
mod daily_loop;
mod faults;
mod restart;
mod resume;
mod withheld;
