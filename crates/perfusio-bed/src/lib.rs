//! perfusio-bed (work in progress)
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::print_stdout,
        clippy::print_stderr
    )
)]
#![deny(clippy::float_cmp)]

pub mod analytic;
pub mod error;
pub mod hypervolume;
pub mod mc;
pub mod multi;
pub mod objective;
pub mod optimize;
pub mod pareto;
pub mod qmc;
pub mod space;
pub mod special;

pub use error::{BedError, Result};
