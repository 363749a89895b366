//! The HTTP side: routes, sessions, CSRF, the loopback guard and the security headers.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the page |
//! | `GET /live` | its live part (reloaded by the page's script) |
//! | `GET /version` | a stamp of the campaign files; it changes when they do |
//! | `GET /login`, `POST /login` | the login form; a session cookie on success |
//! | `POST /logout` | ends the session (CSRF-checked) |
//! | `POST /action` | appends one operator action (session and CSRF required) |

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Form, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use perfusio_core::{DesignSpace, Secret};
use perfusio_twin::campaign_files::{OperatorAction, append_action};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::actions::{ActionForm, Refusal, build_action};
use crate::error::{DashboardError, Result};
use crate::files;
use crate::page::{self, LiveData, Viewer};
use crate::session::{Session, Sessions, clear_cookie, session_cookie, token_from_cookie_header};
use crate::users::{Users, random_hex, valid_user_name};

/// The largest request body accepted (bytes).
pub const MAX_BODY_BYTES: usize = 64 << 10;
/// Added to every refused login, to slow down guessing.
const LOGIN_FAILURE_DELAY: Duration = Duration::from_millis(200);
/// The most password checks that run at once (each costs [`crate::users::DEFAULT_ROUNDS`]
/// hashes); more logins wait their turn.
pub const MAX_CONCURRENT_LOGINS: usize = 2;

/// What the routes share: the campaign directory, the users, the design space and the
/// sessions. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DashboardState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    campaign_dir: PathBuf,
    users: Users,
    design_space: DesignSpace,
    sessions: Sessions,
    logins: tokio::sync::Semaphore,
    /// Accept any `Host` header (the listener is not on loopback).
    any_host: bool,
    csp: String,
}

impl DashboardState {
    /// State over `campaign_dir` (which must be a directory). `any_host = false` refuses
    /// requests whose `Host` header is not a loopback name (DNS-rebinding guard).
    pub fn new(
        campaign_dir: PathBuf,
        users: Users,
        design_space: DesignSpace,
        any_host: bool,
    ) -> Result<Self> {
        match std::fs::metadata(&campaign_dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(DashboardError::CampaignDir {
                    path: campaign_dir,
                    reason: "not a directory".into(),
                });
            }
            Err(e) => {
                return Err(DashboardError::CampaignDir {
                    path: campaign_dir,
                    reason: e.to_string(),
                });
            }
        }
        let script_hash = base64(&Sha256::digest(page::SCRIPT.as_bytes()));
        let csp = format!(
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{script_hash}'; \
             connect-src 'self'; img-src 'self' data:; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'"
        );
        Ok(Self {
            inner: Arc::new(Inner {
                campaign_dir,
                users,
                design_space,
                sessions: Sessions::default(),
                logins: tokio::sync::Semaphore::new(MAX_CONCURRENT_LOGINS),
                any_host,
                csp,
            }),
        })
    }

    /// The campaign directory served.
    pub fn campaign_dir(&self) -> &std::path::Path {
        &self.inner.campaign_dir
    }
}

/// The dashboard's routes over `state` (for tests and for embedding in another server).
pub fn router(state: DashboardState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/live", get(live))
        .route("/version", get(version))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/action", post(action))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Whether a `Host` header names this machine's loopback interface.
fn loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Refuses foreign `Host` headers on a loopback dashboard and adds the security headers.
async fn guard(State(st): State<DashboardState>, req: Request, next: Next) -> Response {
    if !st.inner.any_host {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !loopback_host(host) {
            tracing::warn!(host, "request with a non-loopback Host header refused");
            return (
                StatusCode::MISDIRECTED_REQUEST,
                "this dashboard answers on loopback only\n",
            )
                .into_response();
        }
    }
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&st.inner.csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

fn session_of(st: &DashboardState, headers: &HeaderMap) -> Option<(String, Session)> {
    let token = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(token_from_cookie_header)?;
    let s = st.inner.sessions.get(token)?;
    Some((token.to_string(), s))
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "request failed");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Html(format!(
            "<p>internal error: {}</p>",
            page::escape(&e.to_string())
        )),
    )
        .into_response()
}

/// Reads the campaign files and renders the live part (on the blocking pool).
async fn render_live(st: &DashboardState, session: Option<&Session>) -> Result<String> {
    let st2 = st.clone();
    let sess = session.map(|s| (s.user.clone(), s.csrf.clone()));
    tokio::task::spawn_blocking(move || {
        let dir = &st2.inner.campaign_dir;
        let version = files::version(dir);
        let snapshot = files::snapshot(dir);
        let actions = files::recent_actions(dir);
        let outcomes = files::recent_outcomes(dir);
        let viewer = Viewer {
            session: sess.as_ref().map(|(u, c)| (u.as_str(), c.as_str())),
            can_login: !st2.inner.users.is_empty(),
        };
        page::live(
            &LiveData {
                version: &version,
                snapshot: snapshot.as_ref().map(Option::as_ref).map_err(Clone::clone),
                actions: &actions,
                outcomes: &outcomes,
                design_space: &st2.inner.design_space,
            },
            &viewer,
        )
    })
    .await
    .map_err(|e| DashboardError::Chart(format!("rendering task failed: {e}")))
}

async fn full_page(
    st: &DashboardState,
    session: Option<&(String, Session)>,
    flash: Option<(bool, String)>,
) -> Result<String> {
    let live = render_live(st, session.map(|(_, s)| s)).await?;
    let viewer = Viewer {
        session: session.map(|(_, s)| (s.user.as_str(), s.csrf.as_str())),
        can_login: !st.inner.users.is_empty(),
    };
    let title = format!("perfusio dashboard – {}", st.inner.campaign_dir.display());
    Ok(page::page(
        &title,
        &viewer,
        flash.as_ref().map(|(ok, t)| (*ok, t.as_str())),
        &live,
    ))
}

async fn index(State(st): State<DashboardState>, headers: HeaderMap) -> Response {
    let session = session_of(&st, &headers);
    let flash = session
        .as_ref()
        .and_then(|(token, _)| st.inner.sessions.take_flash(token));
    match full_page(&st, session.as_ref(), flash).await {
        Ok(html) => Html(html).into_response(),
        Err(e) => internal(e),
    }
}

async fn live(State(st): State<DashboardState>, headers: HeaderMap) -> Response {
    let session = session_of(&st, &headers);
    match render_live(&st, session.as_ref().map(|(_, s)| s)).await {
        Ok(html) => Html(html).into_response(),
        Err(e) => internal(e),
    }
}

async fn version(State(st): State<DashboardState>) -> Response {
    let st2 = st.clone();
    match tokio::task::spawn_blocking(move || files::version(&st2.inner.campaign_dir)).await {
        Ok(v) => v.into_response(),
        Err(e) => internal(e),
    }
}

async fn login_form(State(st): State<DashboardState>) -> Html<String> {
    Html(page::login_page(None, !st.inner.users.is_empty()))
}

/// The login form's fields (the password never leaves [`Secret`]).
#[derive(Deserialize)]
struct LoginForm {
    user: String,
    password: Secret,
}

async fn login(State(st): State<DashboardState>, Form(form): Form<LoginForm>) -> Response {
    let can_login = !st.inner.users.is_empty();
    let user = form.user.trim().to_string();
    let ok = if valid_user_name(&user) && form.password.expose().len() <= 1024 {
        let Ok(_permit) = st.inner.logins.acquire().await else {
            return internal("the login queue is closed");
        };
        let st2 = st.clone();
        let (u, pw) = (user.clone(), form.password);
        tokio::task::spawn_blocking(move || st2.inner.users.verify(&u, &pw))
            .await
            .unwrap_or(false)
    } else {
        false
    };
    if !ok {
        // name the user only when it is one: a mistyped password in the user field stays out of the log
        if st.inner.users.contains(&user) {
            tracing::warn!(user = %user, "login refused: wrong password");
        } else {
            tracing::warn!("login refused: unknown user");
        }
        tokio::time::sleep(LOGIN_FAILURE_DELAY).await;
        return (
            StatusCode::UNAUTHORIZED,
            Html(page::login_page(
                Some("wrong user name or password"),
                can_login,
            )),
        )
            .into_response();
    }
    match st.inner.sessions.create(&user) {
        Ok(token) => {
            tracing::info!(user = %user, "logged in");
            let mut resp = Redirect::to("/").into_response();
            if let Ok(v) = HeaderValue::from_str(&session_cookie(&token)) {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            resp
        }
        Err(e) => internal(e),
    }
}

fn unauthenticated() -> Response {
    tracing::warn!("POST without a session refused");
    (
        StatusCode::UNAUTHORIZED,
        Html(page::login_page(Some("log in to act"), true)),
    )
        .into_response()
}

fn csrf_refused(user: &str) -> Response {
    tracing::warn!(user = %user, "POST with a wrong CSRF token refused");
    (
        StatusCode::FORBIDDEN,
        Html(
            "<!DOCTYPE html><p>The form's CSRF token does not match your session: reload the page and try again. <a href=\"/\">back</a></p>".to_string(),
        ),
    )
        .into_response()
}

fn csrf_of(pairs: &[(String, String)]) -> &str {
    pairs
        .iter()
        .find(|(k, _)| k == "csrf")
        .map_or("", |(_, v)| v.as_str())
}

async fn logout(
    State(st): State<DashboardState>,
    headers: HeaderMap,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let Some((token, session)) = session_of(&st, &headers) else {
        return unauthenticated();
    };
    if !session.csrf_matches(csrf_of(&pairs)) {
        return csrf_refused(&session.user);
    }
    st.inner.sessions.remove(&token);
    tracing::info!(user = %session.user, "logged out");
    let mut resp = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&clear_cookie()) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// A new action id: the actor, the time in nanoseconds and 4 random bytes.
fn action_id(actor: &str, now: OffsetDateTime) -> Result<String> {
    Ok(format!(
        "{actor}-{}-{}",
        now.unix_timestamp_nanos(),
        random_hex(4)?
    ))
}

async fn action(
    State(st): State<DashboardState>,
    headers: HeaderMap,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let Some((token, session)) = session_of(&st, &headers) else {
        return unauthenticated();
    };
    if !session.csrf_matches(csrf_of(&pairs)) {
        return csrf_refused(&session.user);
    }
    let form = match ActionForm::from_pairs(pairs) {
        Ok(f) => f,
        Err(r) => return refused(&st, &token, &session, r).await,
    };
    let now = OffsetDateTime::now_utc();
    let (id, at) = match (action_id(&session.user, now), now.format(&Rfc3339)) {
        (Ok(id), Ok(at)) => (id, at),
        (Err(e), _) => return internal(e),
        (_, Err(e)) => return internal(e),
    };
    let st2 = st.clone();
    let actor = session.user.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let dir = &st2.inner.campaign_dir;
        let snapshot = files::snapshot(dir).map_err(Refusal)?;
        let action = build_action(
            &form,
            snapshot.as_ref(),
            &st2.inner.design_space,
            &actor,
            id,
            at,
        )?;
        append_action(dir, &action).map_err(|e| Refusal(format!("could not record it: {e}")))?;
        Ok::<OperatorAction, Refusal>(action)
    })
    .await;
    match outcome {
        Ok(Ok(a)) => {
            tracing::info!(
                user = %a.actor, reactor = %a.reactor, day = a.day, kind = a.kind.name(), id = %a.id,
                "operator action recorded"
            );
            st.inner.sessions.set_flash(
                &token,
                true,
                format!(
                    "recorded: {} for {} day {} (id {}); the campaign's answer appears below",
                    a.kind.name(),
                    a.reactor,
                    a.day,
                    a.id
                ),
            );
            Redirect::to(&format!("/#{}", a.reactor)).into_response()
        }
        Ok(Err(r)) => refused(&st, &token, &session, r).await,
        Err(e) => internal(e),
    }
}

async fn refused(st: &DashboardState, token: &str, session: &Session, r: Refusal) -> Response {
    tracing::info!(user = %session.user, reason = %r, "operator action refused");
    let flash = Some((false, format!("refused: {r}")));
    match full_page(st, Some(&(token.to_string(), session.clone())), flash).await {
        Ok(html) => (StatusCode::UNPROCESSABLE_ENTITY, Html(html)).into_response(),
        Err(e) => internal(e),
    }
}

/// Standard base64 with padding (for the script's CSP hash).
fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(T[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Whether the dashboard may listen on `addr` (loopback, or explicitly allowed).
pub(crate) fn check_listen(addr: SocketAddr, allow_non_loopback: bool) -> Result<()> {
    if addr.ip().is_loopback() || allow_non_loopback {
        Ok(())
    } else {
        Err(DashboardError::NotLoopback(addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        for h in [
            "127.0.0.1:8080",
            "localhost:1",
            "LOCALHOST",
            "[::1]:80",
            "127.1.2.3",
        ] {
            assert!(loopback_host(h), "{h}");
        }
        for h in ["example.com:8080", "10.0.0.1:80", "", "[fe80::1]:80"] {
            assert!(!loopback_host(h), "{h}");
        }
    }

    #[test]
    fn only_loopback_listens_without_permission() {
        let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert!(check_listen(lo, false).is_ok());
        assert!(check_listen(any, false).is_err());
        assert!(check_listen(any, true).is_ok());
    }
}
