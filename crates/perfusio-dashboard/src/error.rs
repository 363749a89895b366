//! Typed errors of the dashboard.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Errors of the dashboard.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DashboardError {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The users file is not valid.
    #[error("users file: {0}")]
    Users(String),
    /// The campaign directory does not exist or is not a directory.
    #[error("campaign directory {}: {reason}", path.display())]
    CampaignDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A non-loopback listen address without the explicit permission.
    #[error(
        "{0} is not a loopback address; the dashboard binds to loopback unless remote access is explicitly allowed"
    )]
    NotLoopback(SocketAddr),
    /// The listener could not be bound or served.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The operating system's random source failed.
    #[error("no randomness from the operating system: {0}")]
    Random(String),
    /// A campaign file could not be read or written.
    #[error(transparent)]
    Campaign(#[from] perfusio_twin::campaign_files::CampaignFileError),
    /// A chart could not be drawn.
    #[error("drawing a chart: {0}")]
    Chart(String),
}

/// Result of the dashboard's functions.
pub type Result<T> = std::result::Result<T, DashboardError>;
