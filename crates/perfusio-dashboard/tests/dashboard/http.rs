//! The dashboard over real HTTP on 127.0.0.1.

use perfusio_dashboard::Users;
use perfusio_twin::campaign_files::{
    ActionKind, ActionOutcome, append_outcome, read_actions, write_snapshot,
};

use crate::common::*;

#[tokio::test]
async fn the_page_has_svg_charts_for_every_reactor_and_a_missing_value_is_a_gap() {
    let dir = fixture_dir();
    let d = start_dashboard(dir.path(), users()).await;
    let r = request(d.addr, "GET", "/", None, None).await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    let csp = r.header("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'sha256-"));
    let html = &r.body;
    // offline: no external asset of any kind
    for bad in ["src=\"http", "href=\"http", "<link", "@import", "cdn"] {
        assert!(!html.contains(bad), "external reference {bad:?}");
    }
    // 4 fan charts per reactor + R01's and R02's setpoint histories
    assert_eq!(html.matches("<svg class=\"chart\"").count(), 8);
    assert_eq!(html.matches("<svg class=\"chart setpoints\"").count(), 2);
    // R01's titer: 7 days observed, day 3 missing -> 6 markers, the line split in two (0-2, 4-6)
    let titer = figure(html, "R01", "Titer");
    assert_eq!(
        titer.matches("class=\"observed-point\"").count(),
        6,
        "{titer}"
    );
    assert_eq!(titer.matches("class=\"observed-line\"").count(), 2);
    assert!(titer.contains("<polygon"), "forecast bands");
    // R01's glucose: no key on day 5 -> 6 markers, runs 0-4 and 6 (a single point has no line)
    let glc = figure(html, "R01", "Glc");
    assert_eq!(glc.matches("class=\"observed-point\"").count(), 6);
    assert_eq!(glc.matches("class=\"observed-line\"").count(), 1);
    // R02 has every value: one unbroken line, 7 markers, no bands (no forecast)
    let t2 = figure(html, "R02", "Titer");
    assert_eq!(t2.matches("class=\"observed-point\"").count(), 7);
    assert_eq!(t2.matches("class=\"observed-line\"").count(), 1);
    assert!(!t2.contains("<polygon"));
    // the rest of the page
    assert!(html.contains("latest sample, day 6"));
    assert!(html.contains("qLogEI 1.9 above holding course"));
    assert!(html.contains("2026-12-02T09:00:00Z"));
    assert!(html.contains("viability &lt; 90 within 3 d"));
    assert!(html.contains("objective 1234.5 ± 56.700"));
    // two objectives: the front, one column per point
    let front = html.split("<table id=\"front\">").nth(1).unwrap();
    let front = &front[..front.find("</table>").unwrap()];
    assert!(front.contains("<th>P1</th><th>P2</th>"), "{front}");
    assert!(front.contains("<td>1010.0 ± 50.000</td>"), "{front}");
    assert!(front.contains("<td>402.5 ± 20.000</td>"), "{front}");
    assert!(html.contains("operator:ana"), "setpoint history table");
    // not logged in: no action forms, a login link
    assert!(!html.contains("action=\"/action\""));
    assert!(html.contains("href=\"/login\""));
    d.stop().await;
}

#[tokio::test]
async fn login_works_and_a_wrong_password_is_refused() {
    let dir = fixture_dir();
    let d = start_dashboard(dir.path(), users()).await;
    let bad = request(
        d.addr,
        "POST",
        "/login",
        None,
        Some(&[("user", USER), ("password", "wrong")]),
    )
    .await;
    assert_eq!(bad.status, 401);
    assert!(bad.session_cookie().is_none());
    assert!(bad.body.contains("wrong user name or password"));
    let unknown = request(
        d.addr,
        "POST",
        "/login",
        None,
        Some(&[("user", "mallory"), ("password", PASSWORD)]),
    )
    .await;
    assert_eq!(unknown.status, 401);

    let ok = request(
        d.addr,
        "POST",
        "/login",
        None,
        Some(&[("user", USER), ("password", PASSWORD)]),
    )
    .await;
    assert_eq!(ok.status, 303);
    let set = ok.header("set-cookie").unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let cookie = ok.session_cookie().unwrap();
    let page = request(d.addr, "GET", "/", Some(&cookie), None).await;
    assert!(page.body.contains("signed in as <b id=\"user\">ana</b>"));
    assert!(page.body.contains("action=\"/action\""));
    let csrf = page.csrf();
    assert_eq!(csrf.len(), 64);
    // every form carries the token
    assert_eq!(
        page.body.matches("<form method=\"post\"").count(),
        page.body.matches("name=\"csrf\"").count()
    );

    // logout ends the session
    let out = request(
        d.addr,
        "POST",
        "/logout",
        Some(&cookie),
        Some(&[("csrf", &csrf)]),
    )
    .await;
    assert_eq!(out.status, 303);
    let after = request(d.addr, "GET", "/", Some(&cookie), None).await;
    assert!(!after.body.contains("signed in as"));
    d.stop().await;
}

#[tokio::test]
async fn an_unauthenticated_post_is_refused_and_appends_nothing() {
    let dir = fixture_dir();
    let d = start_dashboard(dir.path(), users()).await;
    let form = [
        ("csrf", "x"),
        ("kind", "approve"),
        ("reactor", "R01"),
        ("day", "7"),
    ];
    let r = request(d.addr, "POST", "/action", None, Some(&form)).await;
    assert_eq!(r.status, 401);
    let forged = request(
        d.addr,
        "POST",
        "/action",
        Some("perfusio_session=0123456789abcdef"),
        Some(&form),
    )
    .await;
    assert_eq!(forged.status, 401);
    assert!(read_actions(dir.path()).unwrap().is_empty());
    assert!(!dir.path().join("actions.jsonl").exists());
    d.stop().await;
}

#[tokio::test]
async fn an_approve_with_a_session_appends_exactly_one_approve_action() {
    let dir = fixture_dir();
    let d = start_dashboard(dir.path(), users()).await;
    let (cookie, csrf) = login(d.addr).await;
    let r = request(
        d.addr,
        "POST",
        "/action",
        Some(&cookie),
        Some(&[
            ("csrf", &csrf),
            ("kind", "approve"),
            ("reactor", "R01"),
            ("day", "7"),
        ]),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), Some("/#R01"));
    let actions = read_actions(dir.path()).unwrap();
    assert_eq!(actions.len(), 1);
    let a = &actions[0];
    assert_eq!(
        (a.actor.as_str(), a.reactor.as_str(), a.day, &a.kind),
        ("ana", "R01", 7, &ActionKind::Approve)
    );
    assert!(a.id.starts_with("ana-"));
    time::OffsetDateTime::parse(&a.at, &time::format_description::well_known::Rfc3339)
        .expect("an RFC 3339 time");
    // the next page says what was recorded, and lists the action as waiting for an answer
    let page = request(d.addr, "GET", "/", Some(&cookie), None).await;
    assert!(page.body.contains("recorded: approve for R01 day 7"));
    assert!(page.body.contains(&format!("data-action=\"{}\"", a.id)));
    assert!(page.body.contains(">waiting<"));
    // the campaign answers: the page shows it
    append_outcome(
        dir.path(),
        &ActionOutcome {
            action: a.id.clone(),
            accepted: false,
            reason: "the deadline had passed; setpoints held".into(),
            at: "2026-12-02T09:00:01Z".into(),
        },
    )
    .unwrap();
    let live = request(d.addr, "GET", "/live", Some(&cookie), None).await;
    assert!(live.body.starts_with("<main id=\"live\""));
    assert!(live.body.contains(">refused<") && live.body.contains("the deadline had passed"));
    d.stop().await;
}

#[tokio::test]
async fn an_edit_outside_the_design_space_is_refused_with_the_reason() {
    let dir = fixture_dir();
    let d = start_dashboard(dir.path(), users()).await;
    let (cookie, csrf) = login(d.addr).await;
    let r = request(
        d.addr,
        "POST",
        "/action",
        Some(&cookie),
        Some(&[
            ("csrf", &csrf),
            ("kind", "edit"),
            ("reactor", "R01"),
            ("day", "7"),
            ("c:perfusion_rate", "2.6"),
            ("c:temperature", "36"),
        ]),
    )
    .await;
    assert_eq!(r.status, 422);
    assert!(
        r.body
            .contains("refused: the edit refused: outside the design space")
            && r.body.contains("perfusion_rate = 2.6 vvd is above 2"),
        "{}",
        r.body
    );
    assert!(read_actions(dir.path()).unwrap().is_empty());
    // inside the design space it is recorded with the edited values
    let ok = request(
        d.addr,
        "POST",
        "/action",
        Some(&cookie),
        Some(&[
            ("csrf", &csrf),
            ("kind", "edit"),
            ("reactor", "R01"),
            ("day", "7"),
            ("c:perfusion_rate", "1.9"),
            ("c:bleed_rate", ""),
        ]),
    )
    .await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    let actions = read_actions(dir.path()).unwrap();
    assert_eq!(actions.len(), 1);
    match &actions[0].kind {
        ActionKind::Edit { values } => {
            assert_eq!(values.len(), 1);
            assert_eq!(values.get("perfusion_rate").copied(), Some(1.9));
        }
        other => panic!("expected an edit, got {other:?}"),
    }
    d.stop().await;
}

#[tokio::test]
async fn a_csrf_mismatch_is_refused_and_appends_nothing() {
    let dir = fixture_dir();
    let d = start_dashboard(dir.path(), users()).await;
    let (cookie, csrf) = login(d.addr).await;
    let wrong: String = csrf.chars().rev().collect();
    for token in [wrong.as_str(), ""] {
        let r = request(
            d.addr,
            "POST",
            "/action",
            Some(&cookie),
            Some(&[
                ("csrf", token),
                ("kind", "approve"),
                ("reactor", "R01"),
                ("day", "7"),
            ]),
        )
        .await;
        assert_eq!(r.status, 403);
    }
    // another session's token is no good either
    let (_, other_csrf) = login(d.addr).await;
    let r = request(
        d.addr,
        "POST",
        "/action",
        Some(&cookie),
        Some(&[
            ("csrf", &other_csrf),
            ("kind", "approve"),
            ("reactor", "R01"),
            ("day", "7"),
        ]),
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(read_actions(dir.path()).unwrap().is_empty());
    d.stop().await;
}

#[tokio::test]
async fn manual_interventions_append_their_action_kinds() {
    let dir = fixture_dir();
    let d = start_dashboard(dir.path(), users()).await;
    let (cookie, csrf) = login(d.addr).await;
    let post = |fields: Vec<(&'static str, &'static str)>| {
        let (cookie, csrf) = (cookie.clone(), csrf.clone());
        async move {
            let mut form: Vec<(&str, &str)> =
                vec![("csrf", &csrf), ("reactor", "R02"), ("day", "6")];
            form.extend(fields);
            request(d.addr, "POST", "/action", Some(&cookie), Some(&form)).await
        }
    };
    assert_eq!(
        post(vec![("kind", "glucose_bolus"), ("mmol_per_l", "4.5")])
            .await
            .status,
        303
    );
    assert_eq!(
        post(vec![("kind", "media_exchange"), ("fraction", "0.5")])
            .await
            .status,
        303
    );
    assert_eq!(
        post(vec![
            ("kind", "extra_sample"),
            ("s:Titer", "321"),
            ("s:VCD", "")
        ])
        .await
        .status,
        303
    );
    assert_eq!(
        post(vec![("kind", "setpoint_override"), ("c:temperature", "36")])
            .await
            .status,
        303
    );
    let refused = post(vec![("kind", "setpoint_override"), ("c:agitation", "2000")]).await;
    assert_eq!(refused.status, 422);
    assert!(refused.body.contains("agitation = 2000"));
    let kinds: Vec<ActionKind> = read_actions(dir.path())
        .unwrap()
        .into_iter()
        .map(|a| {
            assert_eq!(
                (a.actor.as_str(), a.reactor.as_str(), a.day),
                ("ana", "R02", 6)
            );
            a.kind
        })
        .collect();
    assert_eq!(kinds.len(), 4);
    assert_eq!(kinds[0], ActionKind::GlucoseBolus { mmol_per_l: 4.5 });
    assert_eq!(kinds[1], ActionKind::MediaExchange { fraction: 0.5 });
    assert!(matches!(&kinds[2], ActionKind::ExtraSample { values } if values.len() == 1));
    assert!(
        matches!(&kinds[3], ActionKind::SetpointOverride { values } if values.get("temperature") == Some(&36.0))
    );
    d.stop().await;
}

#[tokio::test]
async fn the_version_changes_with_the_files_and_a_missing_snapshot_waits() {
    let dir = tempfile::tempdir().unwrap();
    let d = start_dashboard(dir.path(), Users::none()).await;
    let page = request(d.addr, "GET", "/", None, None).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Waiting for the campaign to publish"));
    assert!(page.body.contains("read-only (no users file)"));
    let v0 = request(d.addr, "GET", "/version", None, None).await.body;
    write_snapshot(dir.path(), &fixture_snapshot()).unwrap();
    let v1 = request(d.addr, "GET", "/version", None, None).await.body;
    assert_ne!(v0, v1);
    let live = request(d.addr, "GET", "/live", None, None).await;
    assert!(live.body.contains(&format!("data-version=\"{v1}\"")));
    // a read-only dashboard lets nobody log in
    let r = request(
        d.addr,
        "POST",
        "/login",
        None,
        Some(&[("user", USER), ("password", PASSWORD)]),
    )
    .await;
    assert_eq!(r.status, 401);
    d.stop().await;
}

#[tokio::test]
async fn a_foreign_host_header_is_refused_on_loopback() {
    let dir = fixture_dir();
    let d = start_dashboard(dir.path(), users()).await;
    let r = request_with_host(d.addr, "attacker.example:80", "GET", "/", None, None).await;
    assert_eq!(r.status, 421);
    let ok = request_with_host(d.addr, "localhost", "GET", "/version", None, None).await;
    assert_eq!(ok.status, 200);
    d.stop().await;
}

#[tokio::test]
async fn a_24_reactor_campaign_renders_every_chart() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = fixture_snapshot();
    let template = s.reactors[0].clone();
    s.day = 27;
    s.reactors = (1..=24)
        .map(|i| {
            let mut r = template.clone();
            r.id = format!("R{i:02}");
            r.observations = (0..28)
                .map(|day| {
                    let mut o = template.observations[usize::from(day % 7 == 3)].clone();
                    o.day = day;
                    o
                })
                .collect();
            r
        })
        .collect();
    write_snapshot(dir.path(), &s).unwrap();
    let d = start_dashboard(dir.path(), users()).await;
    let (cookie, _) = login(d.addr).await;
    let start = std::time::Instant::now();
    let r = request(d.addr, "GET", "/", Some(&cookie), None).await;
    let took = start.elapsed();
    eprintln!(
        "24 reactors x 28 days: page of {} kB in {took:.2?}",
        r.body.len() / 1024
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body.matches("<svg class=\"chart\"").count(), 96);
    assert_eq!(r.body.matches("<svg class=\"chart setpoints\"").count(), 24);
    assert_eq!(r.body.matches("class=\"approve\"").count(), 24);
    d.stop().await;
}

#[tokio::test]
async fn edits_are_checked_against_the_configured_design_space() {
    use perfusio_core::{Control, DEFAULT_AMBR250_DESIGN_SPACE};
    let dir = fixture_dir();
    let mut config = perfusio_dashboard::DashboardConfig::new(dir.path());
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.users = users();
    config.design_space = DEFAULT_AMBR250_DESIGN_SPACE
        .with_control_range(Control::PerfusionRate, 0.5, 1.8)
        .unwrap();
    let d = perfusio_dashboard::Dashboard::bind(config).await.unwrap();
    let addr = d.local_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(d.run_until(async {
        let _ = rx.await;
    }));
    let (cookie, csrf) = login(addr).await;
    let r = request(
        addr,
        "POST",
        "/action",
        Some(&cookie),
        Some(&[
            ("csrf", &csrf),
            ("kind", "edit"),
            ("reactor", "R01"),
            ("day", "7"),
            ("c:perfusion_rate", "1.9"),
        ]),
    )
    .await;
    assert_eq!(r.status, 422);
    assert!(
        r.body.contains("perfusion_rate = 1.9 vvd is above 1.8"),
        "{}",
        r.body
    );
    assert!(read_actions(dir.path()).unwrap().is_empty());
    let _ = tx.send(());
    task.await.unwrap().unwrap();
}
