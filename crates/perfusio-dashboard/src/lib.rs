//! `perfusio-dashboard`: a local web page over a running (or finished) campaign.
//!
//! The dashboard reads a campaign directory through the contract of
//! [`perfusio_twin::campaign_files`]: the `snapshot.json` the campaign rewrites atomically after
//! every step, and the `outcomes.jsonl` in which it answers operators. It shows, per reactor,
//! the latest sample, forecast fan charts of VCD, viability, glucose and titer with the
//! observations over the bands (a missing value is a gap, never a zero), the setpoint history,
//! the pending recommendation with its reason and deadline, and active alarms; and for the
//! campaign its best point so far and the operators' actions with the campaign's answers. The
//! page polls a version stamp every two seconds and reloads its live part when the files
//! change (not while the operator is typing).
//!
//! Logged-in operators approve, edit or reject a pending recommendation and record manual
//! interventions (glucose bolus, extra sample, media exchange, setpoint override). Each is
//! checked first (an edit or override must lie inside the design space; the reason is shown
//! when it does not) and then appended to `actions.jsonl` as one
//! [`OperatorAction`](perfusio_twin::campaign_files::OperatorAction) with the session's user as
//! actor, an RFC 3339 time and a unique id. Users come from a file ([`users`]); sessions are a
//! random token in an `HttpOnly; SameSite=Strict` cookie, every form carries a CSRF token, and a
//! password is never logged, stored or echoed.
//!
//! Everything is on the page itself: inline CSS, server-rendered SVG (plotters), a few lines of
//! inline script (allowed by its hash in the Content-Security-Policy). No CDN, no fonts, no
//! external assets: the machine next to the bioreactor may be offline. It binds to loopback by
//! default and refuses requests whose `Host` is not a loopback name (a DNS-rebinding guard);
//! another address needs [`DashboardConfig::allow_non_loopback`] and is logged as a warning.
//!
//! Dependencies and why: `axum` (with only `http1`, `tokio` and `form`) is a well-kept server on
//! hyper and tokio, which the workspace already builds; `plotters` draws the SVG, as
//! `perfusio-twin`'s `plot` feature does; `sha2` hashes passwords (already used for the audit
//! chain); `getrandom` gives the operating system's randomness for tokens and salts; `toml`
//! reads the users file; `serde_json` reads the tails of the action and outcome logs; `time`
//! writes the action times. A `tower-http` layer, TLS, and a JavaScript charting library were
//! left out on purpose: the page is small, local and must work offline.
//!
//! ```no_run
//! # async fn demo() -> Result<(), perfusio_dashboard::DashboardError> {
//! use perfusio_dashboard::{DashboardConfig, Users};
//! let mut config = DashboardConfig::new("campaign-out");
//! config.users = Users::load(std::path::Path::new("users.toml"))?;
//! perfusio_dashboard::serve(config).await
//! # }
//! ```
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::print_stdout,
        clippy::print_stderr
    )
)]

pub mod actions;
pub mod charts;
mod error;
pub mod files;
pub mod page;
mod server;
pub mod session;
pub mod users;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

use perfusio_core::{DEFAULT_AMBR250_DESIGN_SPACE, DesignSpace};

pub use error::{DashboardError, Result};
pub use server::{DashboardState, MAX_BODY_BYTES, MAX_CONCURRENT_LOGINS, router};
pub use users::{PasswordHash, Users, hash_password};

/// The default listen address: loopback, port 8080.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8080);

/// What the dashboard serves and how.
#[derive(Debug, Clone)]
pub struct DashboardConfig {
    /// The campaign directory (`snapshot.json`, `actions.jsonl`, `outcomes.jsonl`).
    pub campaign_dir: PathBuf,
    /// Where to listen; [`DEFAULT_LISTEN`] by default. Port 0 picks a free port.
    pub listen: SocketAddr,
    /// Who may act; with no users the dashboard is read-only.
    pub users: Users,
    /// The design space edits and overrides are checked against.
    pub design_space: DesignSpace,
    /// Allow a listen address that is not loopback (logged as a warning).
    pub allow_non_loopback: bool,
}

impl DashboardConfig {
    /// Read-only dashboard of `campaign_dir` on [`DEFAULT_LISTEN`], checked against
    /// [`DEFAULT_AMBR250_DESIGN_SPACE`].
    pub fn new(campaign_dir: impl Into<PathBuf>) -> Self {
        Self {
            campaign_dir: campaign_dir.into(),
            listen: DEFAULT_LISTEN,
            users: Users::none(),
            design_space: DEFAULT_AMBR250_DESIGN_SPACE,
            allow_non_loopback: false,
        }
    }
}

/// A dashboard bound to its address and ready to serve.
#[derive(Debug)]
pub struct Dashboard {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    state: DashboardState,
}

impl Dashboard {
    /// Checks the configuration and binds the listener.
    pub async fn bind(config: DashboardConfig) -> Result<Self> {
        server::check_listen(config.listen, config.allow_non_loopback)?;
        let loopback = config.listen.ip().is_loopback();
        let state = DashboardState::new(
            config.campaign_dir,
            config.users,
            config.design_space,
            !loopback,
        )?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| DashboardError::Listen {
                addr: config.listen,
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| DashboardError::Listen {
                addr: config.listen,
                source,
            })?;
        if !loopback {
            tracing::warn!(
                %addr,
                "the dashboard listens on a non-loopback address: anyone who can reach it sees the campaign (plain HTTP, no TLS)"
            );
        }
        tracing::info!(
            url = %format!("http://{addr}/"),
            campaign = %state.campaign_dir().display(),
            "dashboard listening"
        );
        Ok(Self {
            listener,
            addr,
            state,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The page's URL.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Serves until `shutdown` completes, then finishes the open requests.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let addr = self.addr;
        axum::serve(self.listener, router(self.state))
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|source| DashboardError::Listen { addr, source })
    }
}

/// Binds and serves the dashboard until the listener fails.
pub async fn serve(config: DashboardConfig) -> Result<()> {
    Dashboard::bind(config)
        .await?
        .run_until(std::future::pending())
        .await
}
