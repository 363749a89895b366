//! Test parts: a fixture campaign directory, a dashboard started on 127.0.0.1:0, and a small
//! HTTP/1.1 client on a raw tokio `TcpStream`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use perfusio_core::Secret;
use perfusio_dashboard::{Dashboard, DashboardConfig, PasswordHash, Users};
use perfusio_twin::campaign_files::{
    ActiveAlarm, Band, BestPoint, CampaignSnapshot, ForecastBands, ObjectiveValue, Observation,
    PendingRecommendation, ReactorSnapshot, SetpointEntry, write_snapshot,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The operator of the fixture users file and her password.
pub(crate) const USER: &str = "ana";
pub(crate) const PASSWORD: &str = "tr0ub4dor&3-perfusion";

/// The users of the tests (few rounds: the tests log in often).
pub(crate) fn users() -> Users {
    let h = PasswordHash::with_salt(&Secret::new(PASSWORD), vec![9; 16], 1_000);
    Users::from_hashes([(USER.to_string(), h)]).unwrap()
}

/// The fixture: campaign "fixture" on day 6; R01 has titer missing on day 3 (`None`) and no
/// glucose key on day 5, a forecast from day 6, setpoints, an alarm and a recommendation for
/// day 7 waiting for approval; R02 has observations only.
pub(crate) fn fixture_snapshot() -> CampaignSnapshot {
    let obs = |day: u32, missing_titer: bool, no_glucose: bool| {
        let d = f64::from(day);
        let mut values = BTreeMap::from([
            ("VCD".to_string(), Some(5.0 + 8.0 * d)),
            ("Via".to_string(), Some(98.0 - 0.5 * d)),
            ("Glc".to_string(), Some(30.0 - 2.0 * d)),
            (
                "Titer".to_string(),
                (!missing_titer).then_some(40.0 * d + 10.0),
            ),
        ]);
        if no_glucose {
            values.remove("Glc");
        }
        Observation { day, values }
    };
    let days: Vec<u32> = (6..=13).collect();
    let band = |m: f64, w: f64| Band {
        q05: m - 2.0 * w,
        q25: m - w,
        q50: m,
        q75: m + w,
        q95: m + 2.0 * w,
    };
    let species: BTreeMap<String, Vec<Band>> = BTreeMap::from([
        (
            "VCD".to_string(),
            days.iter()
                .map(|d| band(53.0 + 6.0 * f64::from(d - 6), 2.0 + f64::from(d - 6)))
                .collect(),
        ),
        (
            "Via".to_string(),
            days.iter()
                .map(|d| band(95.0 - 0.4 * f64::from(d - 6), 0.5 + 0.2 * f64::from(d - 6)))
                .collect(),
        ),
        (
            "Glc".to_string(),
            days.iter()
                .map(|d| band(18.0 - f64::from(d - 6), 1.0 + 0.3 * f64::from(d - 6)))
                .collect(),
        ),
        (
            "Titer".to_string(),
            days.iter()
                .map(|d| {
                    band(
                        250.0 + 40.0 * f64::from(d - 6),
                        5.0 + 4.0 * f64::from(d - 6),
                    )
                })
                .collect(),
        ),
    ]);
    let sp = |day, perf: f64, source: &str| SetpointEntry {
        day,
        values: BTreeMap::from([
            ("perfusion_rate".to_string(), perf),
            ("bleed_rate".to_string(), 0.1),
            ("glucose_setpoint".to_string(), 5.0),
            ("temperature".to_string(), 36.5),
            ("agitation".to_string(), 800.0),
            ("pyruvate_feed".to_string(), 1.0),
        ]),
        source: source.to_string(),
    };
    let r01 = ReactorSnapshot {
        id: "R01".into(),
        connector: "virtual CloneY seed 1".into(),
        audit: "R01/audit.jsonl".into(),
        observations: (0..=6).map(|d| obs(d, d == 3, d == 5)).collect(),
        forecast: Some(ForecastBands {
            from_day: 6,
            days,
            // the measured value's bands: the latent ones widened by the measurement noise
            measured: species
                .iter()
                .map(|(k, bands)| {
                    let wider: Vec<Band> = bands
                        .iter()
                        .map(|b| Band {
                            q05: b.q05 - (b.q50 - b.q05) * 0.5,
                            q95: b.q95 + (b.q95 - b.q50) * 0.5,
                            ..*b
                        })
                        .collect();
                    (k.clone(), wider)
                })
                .collect(),
            species,
        }),
        setpoints: vec![
            sp(0, 1.0, "twin"),
            sp(3, 1.3, "operator:ana"),
            sp(5, 1.5, "twin"),
        ],
        pending: Some(PendingRecommendation {
            day: 7,
            recommended: BTreeMap::from([
                ("perfusion_rate".to_string(), 1.7),
                ("bleed_rate".to_string(), 0.12),
            ]),
            current: BTreeMap::from([
                ("perfusion_rate".to_string(), 1.5),
                ("bleed_rate".to_string(), 0.1),
            ]),
            reason: "qLogEI 1.9 above holding course".into(),
            deadline: "2026-12-02T09:00:00Z".into(),
            at_deadline: "hold".into(),
        }),
        alarms: vec![ActiveAlarm {
            variable: "Via".into(),
            severity: "warning".into(),
            message: "viability < 90 within 3 d with p ≥ 0.2".into(),
            since_day: 6,
        }],
    };
    let r02 = ReactorSnapshot {
        id: "R02".into(),
        connector: "virtual CloneY seed 2".into(),
        audit: "R02/audit.jsonl".into(),
        observations: (0..=6).map(|d| obs(d, false, false)).collect(),
        forecast: None,
        setpoints: vec![sp(0, 1.0, "twin")],
        pending: None,
        alarms: Vec::new(),
    };
    CampaignSnapshot {
        campaign: "fixture".into(),
        day: 6,
        updated_at: "2026-12-02T08:00:00Z".into(),
        status: "running".into(),
        approval: "required".into(),
        objective: "harvest".into(),
        reactors: vec![r01, r02],
        best_point: Some(BestPoint {
            controls: BTreeMap::from([("perfusion_rate".to_string(), 1.7)]),
            objective_mean: 1234.5,
            objective_sd: 56.7,
            reactor: Some("R01".into()),
            search: None,
            objectives: Vec::new(),
        }),
        pareto_front: [(1.7, 1234.5, 310.0), (1.1, 1010.0, 402.5)]
            .into_iter()
            .map(|(rate, harvest, titer)| BestPoint {
                controls: BTreeMap::from([("perfusion_rate".to_string(), rate)]),
                objective_mean: harvest,
                objective_sd: 50.0,
                reactor: None,
                search: None,
                objectives: vec![
                    ObjectiveValue {
                        name: "harvest".into(),
                        mean: harvest,
                        sd: 50.0,
                    },
                    ObjectiveValue {
                        name: "final-titer".into(),
                        mean: titer,
                        sd: 20.0,
                    },
                ],
            })
            .collect(),
    }
}

/// A temporary campaign directory holding the fixture snapshot.
pub(crate) fn fixture_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_snapshot(dir.path(), &fixture_snapshot()).unwrap();
    dir
}

/// A dashboard serving a directory until dropped.
pub(crate) struct Running {
    pub(crate) addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// The page's URL.
    pub(crate) fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Stops the server and waits for it.
    pub(crate) async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Starts the dashboard of `dir` on 127.0.0.1 with a free port. This is the one way the
/// tests start it, whatever writes the directory (a fixture now, a running campaign later).
pub(crate) async fn start_dashboard(dir: &Path, users: Users) -> Running {
    let mut config = DashboardConfig::new(dir);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.users = users;
    let dashboard = Dashboard::bind(config).await.unwrap();
    let addr = dashboard.local_addr();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        dashboard
            .run_until(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    Running {
        addr,
        stop: Some(tx),
        task: Some(task),
    }
}

/// One HTTP response.
#[derive(Debug)]
pub(crate) struct Resp {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Resp {
    /// The first header of that name (case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The session cookie (`name=value`) set by this response, if any.
    pub(crate) fn session_cookie(&self) -> Option<String> {
        let v = self.header("set-cookie")?;
        let kv = v.split(';').next()?.trim();
        (kv.starts_with("perfusio_session=") && kv.len() > "perfusio_session=".len())
            .then(|| kv.to_string())
    }

    /// The first CSRF token in the body's forms.
    pub(crate) fn csrf(&self) -> String {
        let key = "name=\"csrf\" value=\"";
        let start = self.body.find(key).expect("a form with a CSRF token") + key.len();
        let end = self.body[start..].find('"').unwrap() + start;
        self.body[start..end].to_string()
    }
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Sends one request (`Connection: close`) and reads the whole answer.
pub(crate) async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    form: Option<&[(&str, &str)]>,
) -> Resp {
    request_with_host(addr, &addr.to_string(), method, path, cookie, form).await
}

/// [`request`] with a chosen `Host` header.
pub(crate) async fn request_with_host(
    addr: SocketAddr,
    host: &str,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    form: Option<&[(&str, &str)]>,
) -> Resp {
    let body = form
        .map(|f| {
            f.iter()
                .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
                .collect::<Vec<_>>()
                .join("&")
        })
        .unwrap_or_default();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if let Some(c) = cookie {
        req.push_str(&format!("Cookie: {c}\r\n"));
    }
    if form.is_some() {
        req.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .expect("a complete response head");
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Logs in and returns the session cookie and a CSRF token from the page.
pub(crate) async fn login(addr: SocketAddr) -> (String, String) {
    let r = request(
        addr,
        "POST",
        "/login",
        None,
        Some(&[("user", USER), ("password", PASSWORD)]),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let cookie = r.session_cookie().expect("a session cookie");
    let page = request(addr, "GET", "/", Some(&cookie), None).await;
    assert_eq!(page.status, 200);
    (cookie, page.csrf())
}

/// The `<figure data-species="…">` element of one reactor's chart, as text.
pub(crate) fn figure<'a>(html: &'a str, reactor: &str, species: &str) -> &'a str {
    let section = html
        .find(&format!("data-reactor=\"{reactor}\""))
        .expect("the reactor's section");
    let rest = &html[section..];
    let start = rest
        .find(&format!("<figure data-species=\"{species}\""))
        .expect("the species' figure");
    let end = rest[start..].find("</figure>").unwrap() + start;
    &rest[start..end]
}
