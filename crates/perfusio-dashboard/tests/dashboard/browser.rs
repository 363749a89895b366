//! Headless Chromium (the Debian package, `/usr/bin/chromium`) against a running dashboard.
//!
//! When no Chromium is installed the tests print that they were skipped and why, and pass;
//! `.ci/run` installs it. `PERFUSIO_CHROMIUM` names another binary. With
//! `PERFUSIO_UPDATE_SCREENSHOT=1` the logged-in operator's screenshot is also saved as
//! `docs/dashboard.png`.
//!
//! The operator tests drive the page through the DevTools protocol ([`crate::cdp`]): one plays
//! the campaign's part by writing the snapshot and the outcome itself; the other runs a real
//! `Campaign` of virtual reactors on the directory and shows that an approve in the browser
//! changes what the reactor receives.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use perfusio_twin::campaign_files::{
    ActionKind, ActionOutcome, append_outcome, read_actions, write_snapshot,
};

use crate::cdp::Browser;
use crate::common::*;

/// The Chromium binary, or why there is none.
fn chromium() -> Result<PathBuf, String> {
    if let Ok(p) = std::env::var("PERFUSIO_CHROMIUM") {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["chromium", "chromium-browser"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err("no `chromium` or `chromium-browser` on PATH (install it with `apt-get install -y chromium`, as .ci/run does)".into())
}

/// Says that a browser test was skipped and why, on the process's stderr itself (the test
/// harness captures `eprintln!` of passing tests, not direct writes), so `cargo test` shows it.
fn skip(why: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "SKIPPED browser test: {why}");
}

/// Runs headless Chromium with `args` (and a fresh profile), killing it after 90 s; returns
/// its stdout.
fn run_chromium(bin: &Path, profile: &Path, args: &[String]) -> String {
    let mut child = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).unwrap();
        s
    });
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    reader.join().unwrap()
}

async fn chromium_async(bin: PathBuf, profile: PathBuf, args: Vec<String>) -> String {
    tokio::task::spawn_blocking(move || run_chromium(&bin, &profile, &args))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_chromium_renders_the_charts_and_shows_a_missing_value_as_a_gap() {
    let bin = match chromium() {
        Ok(b) => b,
        Err(why) => return skip(&why),
    };
    let dir = fixture_dir();
    let d = start_dashboard(dir.path(), users()).await;
    let profile = tempfile::tempdir().unwrap();

    let dom = chromium_async(
        bin.clone(),
        profile.path().to_path_buf(),
        vec![
            "--virtual-time-budget=3000".into(),
            "--dump-dom".into(),
            d.url(),
        ],
    )
    .await;
    assert!(
        dom.contains("<main id=\"live\""),
        "no dashboard in the DOM: {dom}"
    );
    // the page's script counted the charts that have a laid-out, non-empty box
    assert!(
        dom.contains("data-charts-rendered=\"10\""),
        "8 fan charts + 2 setpoint histories should render: {}",
        &dom[..dom.len().min(600)]
    );
    assert_eq!(dom.matches("<svg class=\"chart\"").count(), 8);
    // R01's titer has no value on day 3: 6 markers and the line in two pieces
    let titer = figure(&dom, "R01", "Titer");
    assert_eq!(titer.matches("class=\"observed-point\"").count(), 6);
    assert_eq!(titer.matches("class=\"observed-line\"").count(), 2);
    let t2 = figure(&dom, "R02", "Titer");
    assert_eq!(t2.matches("class=\"observed-point\"").count(), 7);
    assert_eq!(t2.matches("class=\"observed-line\"").count(), 1);

    let shot_dir = tempfile::tempdir().unwrap();
    let shot = shot_dir.path().join("dashboard.png");
    chromium_async(
        bin,
        profile.path().to_path_buf(),
        vec![
            "--virtual-time-budget=3000".into(),
            "--window-size=1280,1900".into(),
            format!("--screenshot={}", shot.display()),
            d.url(),
        ],
    )
    .await;
    let png = std::fs::read(&shot).expect("chromium wrote a screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_from_a_browser_without_a_session_is_refused_and_appends_nothing() {
    let bin = match chromium() {
        Ok(b) => b,
        Err(why) => return skip(&why),
    };
    let dir = fixture_dir();
    let d = start_dashboard(dir.path(), users()).await;
    let profile = tempfile::tempdir().unwrap();
    // a page elsewhere that submits an approve to the dashboard as soon as it loads
    let attacker = tempfile::tempdir().unwrap();
    let page = attacker.path().join("forge.html");
    std::fs::write(
        &page,
        format!(
            "<!DOCTYPE html><html><body><form id=\"f\" method=\"post\" action=\"{}action\">\
             <input name=\"csrf\" value=\"guess\"><input name=\"kind\" value=\"approve\">\
             <input name=\"reactor\" value=\"R01\"><input name=\"day\" value=\"7\"></form>\
             <script>document.getElementById('f').submit();</script></body></html>",
            d.url()
        ),
    )
    .unwrap();
    let dom = chromium_async(
        bin,
        profile.path().to_path_buf(),
        vec![
            "--virtual-time-budget=3000".into(),
            "--dump-dom".into(),
            format!("file://{}", page.display()),
        ],
    )
    .await;
    assert!(dom.contains("log in to act"), "the refusal page: {dom}");
    assert!(read_actions(dir.path()).unwrap().is_empty());
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_logs_in_approves_in_the_browser_and_the_page_follows_the_campaign() {
    let bin = match chromium() {
        Ok(b) => b,
        Err(why) => return skip(&why),
    };
    let dir = fixture_dir();
    let d = start_dashboard(dir.path(), users()).await;
    let url = d.url();
    let campaign = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let profile = tempfile::tempdir().unwrap();
        let mut b = Browser::start(&bin, profile.path());
        let wait = Duration::from_secs(20);

        // log in through the form
        b.navigate(&format!("{url}login"));
        b.wait_for(
            "document.readyState === 'complete' && !!document.querySelector('input[name=password]')",
            wait,
        );
        b.eval(&format!(
            "document.querySelector('input[name=user]').value = '{USER}'; \
             document.querySelector('input[name=password]').value = {PASSWORD:?}; \
             document.querySelector('form').submit(); true"
        ));
        b.wait_for(
            "location.pathname === '/' && document.readyState === 'complete' && !!document.getElementById('user')",
            wait,
        );
        // the page's own script ran (the CSP allows it by its hash) and counted the charts
        b.wait_for("document.body.getAttribute('data-charts-rendered') === '10'", wait);
        assert_eq!(
            b.eval("document.querySelectorAll('section[data-reactor=\"R01\"] figure[data-species=\"Titer\"] circle.observed-point').length"),
            serde_json::json!(6)
        );
        if std::env::var_os("PERFUSIO_UPDATE_SCREENSHOT").is_some() {
            let png = b.screenshot();
            assert!(png.starts_with(b"\x89PNG"));
            let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/dashboard.png");
            std::fs::write(&out, &png).unwrap();
            eprintln!("saved {}", out.display());
        }

        // approve R01's recommendation with the button
        b.eval("document.querySelector('section[data-reactor=\"R01\"] form.approve button').click(); true");
        b.wait_for(
            "!!document.getElementById('flash') && document.getElementById('flash').textContent.includes('recorded: approve for R01 day 7')",
            wait,
        );
        let actions = read_actions(&campaign).unwrap();
        assert_eq!(actions.len(), 1);
        let a = &actions[0];
        assert_eq!(
            (a.actor.as_str(), a.reactor.as_str(), a.day, &a.kind),
            (USER, "R01", 7, &ActionKind::Approve)
        );

        // the campaign applies it and moves on: the open page follows without a reload
        b.eval("window.__same_page = true; true");
        let mut s = fixture_snapshot();
        s.day = 7;
        s.reactors[0].pending = None;
        write_snapshot(&campaign, &s).unwrap();
        append_outcome(
            &campaign,
            &ActionOutcome {
                action: a.id.clone(),
                accepted: true,
                reason: "applied from day 7".into(),
                at: "2026-12-02T08:30:00Z".into(),
            },
        )
        .unwrap();
        b.wait_for(
            "document.getElementById('campaign').textContent.includes('day 7 ') && \
             !document.querySelector('section[data-reactor=\"R01\"] .pending') && \
             document.getElementById('outcomes').textContent.includes('applied from day 7')",
            wait,
        );
        assert_eq!(b.eval("window.__same_page === true"), serde_json::json!(true));
    })
    .await
    .unwrap();
    d.stop().await;
}

/// A real two-reactor campaign with approval required runs on the directory the dashboard
/// serves. On the first day whose recommendation for R01 differs from what R01 runs on
/// (earlier days are approved through the action log), the operator approves it with the
/// page's button, and the virtual reactor then runs on exactly the recommended setpoints;
/// R02's recommendations are rejected through the action log, and it keeps the defaults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// setpoints are copied from the recommendation to the plant, never recomputed: compared exactly
#[allow(clippy::float_cmp)]
async fn approving_in_the_browser_changes_what_the_campaigns_reactor_receives() {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use perfusio_twin::campaign::{
        ApprovalMode, AtDeadline, Campaign, CampaignConfig, ConnectorSpec, ReactorConfig,
    };
    use perfusio_twin::campaign_files::{
        OperatorAction, append_action, read_outcomes, read_snapshot,
    };
    use perfusio_twin::layers::core::{Acquisition, Connector, Control, RunConfig};
    use perfusio_twin::prelude::{VirtualReactorConfig, VirtualReactorConnector};

    /// Setpoints by control name over `base` for the controls not named.
    fn controls_of(named: &BTreeMap<String, f64>, base: &[f64; 6]) -> [f64; 6] {
        let mut out = *base;
        for c in Control::ALL {
            if let Some(v) = named.get(c.name()) {
                out[c.index()] = *v;
            }
        }
        out
    }
    fn settle(id: String, reactor: &str, day: u32, kind: ActionKind) -> OperatorAction {
        OperatorAction {
            id,
            actor: "ben".into(),
            at: "2026-12-02T08:00:00Z".into(),
            reactor: reactor.into(),
            day,
            kind,
        }
    }
    const DAYS: u32 = 4;

    let bin = match chromium() {
        Ok(b) => b,
        Err(why) => return skip(&why),
    };
    let dir = tempfile::tempdir().unwrap();
    let plants: Vec<Arc<VirtualReactorConnector>> = (1..=2)
        .map(|seed| {
            Arc::new(
                VirtualReactorConnector::new(VirtualReactorConfig {
                    seed,
                    ..VirtualReactorConfig::default()
                })
                .unwrap(),
            )
        })
        .collect();
    let mut cfg = CampaignConfig {
        name: "browser".into(),
        output_dir: dir.path().to_path_buf(),
        seed: Some(3),
        prior: None,
        objective: "harvest".into(),
        objectives: Vec::new(),
        medium_cost: 0.0,
        constraints: None,
        best_point_days: None,
        forecast_method: perfusio_twin::layers::hybrid::ForecastMethod::MomentMatching,
        retrain_in_background: false,
        calibrate: None,
        approval: Default::default(),
        run: RunConfig {
            duration_days: DAYS,
            allow_write: true,
            acquisition: Acquisition::LogEI,
            forecast_horizon_days: 5,
            decision_horizon_days: 3,
            mc_samples: 32,
            raw_samples: 64,
            optimizer_restarts: 2,
            seed: Some(3),
            ..RunConfig::default()
        },
        reactors: (1..=2)
            .map(|i| ReactorConfig {
                id: format!("R{i:02}"),
                connector: ConnectorSpec::Virtual {
                    truth: "CloneX".into(),
                    seed: Some(i),
                },
            })
            .collect(),
    };
    cfg.approval.mode = ApprovalMode::Required;
    cfg.approval.deadline = Duration::from_secs(120);
    cfg.approval.at_deadline = AtDeadline::Hold;
    let conns = plants
        .iter()
        .map(|p| p.clone() as Arc<dyn Connector>)
        .collect();
    let campaign = Campaign::with_connectors(cfg, conns)
        .unwrap()
        .action_poll(Duration::from_millis(50));
    let run = tokio::spawn(campaign.run());
    let defaults = Control::defaults();

    // waits for the pending recommendations of `day` (false when the run ended first)
    let dir_path = dir.path().to_path_buf();
    let pending_of = |day: u32| {
        let dir = dir_path.clone();
        async move {
            let start = Instant::now();
            loop {
                if let Some(s) = read_snapshot(&dir).unwrap()
                    && s.reactors
                        .iter()
                        .all(|r| r.pending.as_ref().is_some_and(|p| p.day == day))
                {
                    return s;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(90),
                    "no pending recommendations for day {day}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };

    // nothing is written before an operator acts: R02 is rejected, and R01 approved through
    // the log until its recommendation is a change
    let mut day = 0;
    let (recommended, browser_day) = loop {
        let snap = pending_of(day).await;
        assert_eq!(plants[1].snapshot().unwrap().setpoints(), defaults);
        append_action(
            dir.path(),
            &settle(
                format!("ben-R02-{day}"),
                "R02",
                day,
                ActionKind::Reject { reason: None },
            ),
        )
        .unwrap();
        let pending = snap.reactors[0].pending.clone().unwrap();
        if pending.recommended != pending.current {
            assert_eq!(
                plants[0].snapshot().unwrap().setpoints(),
                controls_of(&pending.current, &defaults),
                "R01 runs on its current setpoints while the recommendation waits"
            );
            break (pending.recommended, day);
        }
        append_action(
            dir.path(),
            &settle(format!("ben-R01-{day}"), "R01", day, ActionKind::Approve),
        )
        .unwrap();
        day += 1;
        assert!(
            day < DAYS,
            "no recommendation for R01 changed anything in {DAYS} days"
        );
    };

    let d = start_dashboard(dir.path(), users()).await;
    let url = d.url();
    let campaign_dir = dir.path().to_path_buf();
    let action_id = tokio::task::spawn_blocking(move || {
        let profile = tempfile::tempdir().unwrap();
        let mut b = Browser::start(&bin, profile.path());
        let wait = Duration::from_secs(30);
        b.navigate(&format!("{url}login"));
        b.wait_for(
            "document.readyState === 'complete' && !!document.querySelector('input[name=password]')",
            wait,
        );
        b.eval(&format!(
            "document.querySelector('input[name=user]').value = '{USER}'; \
             document.querySelector('input[name=password]').value = {PASSWORD:?}; \
             document.querySelector('form').submit(); true"
        ));
        b.wait_for(
            "location.pathname === '/' && document.readyState === 'complete' && \
             !!document.querySelector('section[data-reactor=\"R01\"] form.approve button')",
            wait,
        );
        b.eval("document.querySelector('section[data-reactor=\"R01\"] form.approve button').click(); true");
        b.wait_for(
            &format!(
                "!!document.getElementById('flash') && document.getElementById('flash').textContent.includes('recorded: approve for R01 day {browser_day}')"
            ),
            wait,
        );
        let actions = read_actions(&campaign_dir).unwrap();
        let mine: Vec<_> = actions.iter().filter(|a| a.actor == USER).collect();
        assert_eq!(mine.len(), 1);
        assert_eq!(
            (mine[0].reactor.as_str(), mine[0].day, &mine[0].kind),
            ("R01", browser_day, &ActionKind::Approve)
        );
        mine[0].id.clone()
    })
    .await
    .unwrap();

    // the campaign answers the approval and writes R01's recommendation to the reactor
    let start = Instant::now();
    loop {
        if let Some(o) = read_outcomes(dir.path())
            .unwrap()
            .into_iter()
            .find(|o| o.action == action_id)
        {
            assert!(o.accepted, "{o:?}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "no answer");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let approved = controls_of(&recommended, &defaults);
    assert_ne!(approved, defaults);
    let start = Instant::now();
    while plants[0].snapshot().unwrap().setpoints() != approved {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "R01 runs on {:?}, not the approved {approved:?}",
            plants[0].snapshot().unwrap().setpoints()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // the later days are rejected for both: R01 keeps what was approved
    for d in browser_day + 1..DAYS {
        pending_of(d).await;
        for r in ["R01", "R02"] {
            append_action(
                dir.path(),
                &settle(
                    format!("ben-{r}-late-{d}"),
                    r,
                    d,
                    ActionKind::Reject { reason: None },
                ),
            )
            .unwrap();
        }
    }
    let report = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the campaign finishes once every day is settled")
        .unwrap()
        .unwrap();
    assert_eq!(report.finished.as_deref(), Some("completed"));
    assert_eq!(plants[0].snapshot().unwrap().setpoints(), approved);
    assert_eq!(plants[1].snapshot().unwrap().setpoints(), defaults);
    d.stop().await;
}
