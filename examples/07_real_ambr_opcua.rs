//! T07 — the digital twin against an ambr250 over OPC UA.
//!
//! The same closed loop as T06 (read, learn, forecast, decide, write or withhold, audit),
//! with an [`OpcUaConnector`] to one reactor of an ambr250-class system.
//!
//! - With `--endpoint opc.tcp://HOST:PORT/` it connects to that server (a real ambr250 or
//!   `perfusio emulate`), reactor `--reactor R01`.
//! - Without `--endpoint` it needs no hardware and no server to start: it starts the
//!   ambr250 OPC UA emulator in this process on 127.0.0.1 (a free port), where one culture
//!   day passes every `--seconds-per-day` seconds (default 1; 3 in a debug build, whose
//!   twin takes longer than a second per day), and runs against it.
//!
//! Writing is off unless `--allow-write` is given: the twin then only records each
//! recommendation as withheld. Security: `--security none|sign|sign-and-encrypt`,
//! `--user NAME --password-file FILE` (the password is never printed or logged),
//! `--pki-dir DIR` (the client's certificate and the trusted server certificates) and
//! `--trust-server` (trust the server's certificate on first use).
//!
//! ```sh
//! cargo run -p perfusio-examples --example 07_real_ambr_opcua -- --days 7 --allow-write
//! cargo run -p perfusio-examples --example 07_real_ambr_opcua -- \
//!     --endpoint opc.tcp://ambr.lab.local:4840/ --reactor R03 --security sign-and-encrypt \
//!     --user twin --password-file ~/.ambr-password --days 14
//! ```
//! Output: `t07_output/audit.jsonl` (verified at the end).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use perfusio_audit::{VerifyOptions, verify_file};
use perfusio_core::Secret;
use perfusio_twin::layers::connectors::opcua::{
    Emulator, EmulatorConfig, Identity, NodeMap, OpcUaConfig, OpcUaConnector, Security,
};
use perfusio_twin::layers::connectors::virtual_reactor::virtual_plants;
use perfusio_twin::prelude::*;

/// Command-line options (parsed by hand: the examples crate has no argument parser).
#[derive(Debug)]
struct Options {
    endpoint: Option<String>,
    reactor: String,
    days: u32,
    allow_write: bool,
    security: Security,
    user: Option<String>,
    password_file: Option<PathBuf>,
    pki_dir: PathBuf,
    trust_server: bool,
    seconds_per_day: f64,
    seed: u64,
    out: PathBuf,
}

const USAGE: &str = "options: --endpoint URL --reactor R01 --days N --allow-write \
    --security none|sign|sign-and-encrypt --user NAME --password-file FILE --pki-dir DIR \
    --trust-server --seconds-per-day S --seed S --out DIR";

fn parse_args() -> anyhow::Result<Options> {
    let mut o = Options {
        endpoint: None,
        reactor: "R01".into(),
        days: 14,
        allow_write: false,
        security: Security::None,
        user: None,
        password_file: None,
        pki_dir: PathBuf::from("t07_output/pki"),
        trust_server: false,
        // one culture day per second; a debug build of the twin needs longer per day
        seconds_per_day: if cfg!(debug_assertions) { 3.0 } else { 1.0 },
        seed: 7,
        out: PathBuf::from("t07_output"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("{flag} needs a value; {USAGE}"))
        };
        match flag.as_str() {
            "--endpoint" => o.endpoint = Some(value()?),
            "--reactor" => o.reactor = value()?,
            "--days" => o.days = value()?.parse().context("--days")?,
            "--allow-write" => o.allow_write = true,
            "--security" => {
                o.security = match value()?.as_str() {
                    "none" => Security::None,
                    "sign" => Security::Basic256Sha256Sign,
                    "sign-and-encrypt" => Security::Basic256Sha256SignAndEncrypt,
                    other => bail!("--security {other}: use none, sign or sign-and-encrypt"),
                }
            }
            "--user" => o.user = Some(value()?),
            "--password-file" => o.password_file = Some(PathBuf::from(value()?)),
            "--pki-dir" => o.pki_dir = PathBuf::from(value()?),
            "--trust-server" => o.trust_server = true,
            "--seconds-per-day" => {
                o.seconds_per_day = value()?.parse().context("--seconds-per-day")?;
            }
            "--seed" => o.seed = value()?.parse().context("--seed")?,
            "--out" => o.out = PathBuf::from(value()?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown option {other}; {USAGE}"),
        }
    }
    if o.seconds_per_day <= 0.0 || !o.seconds_per_day.is_finite() {
        bail!("--seconds-per-day must be positive");
    }
    Ok(o)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let o = parse_args()?;
    std::fs::create_dir_all(&o.out)?;
    // without an endpoint: the ambr250 emulator in this process, loopback only
    let emulator = match &o.endpoint {
        Some(_) => None,
        None => {
            let em = Emulator::start(
                EmulatorConfig {
                    host: "127.0.0.1".into(),
                    port: 0,
                    seconds_per_day: Some(o.seconds_per_day),
                    pki_dir: o.out.join("pki-emulator"),
                    ..EmulatorConfig::default()
                },
                virtual_plants(1, o.seed)?,
            )
            .await?;
            println!(
                "no --endpoint: started the ambr250 emulator at {} (reactor {}), one culture \
                 day every {} s",
                em.endpoint_url(),
                em.reactor_ids().join(", "),
                o.seconds_per_day
            );
            Some(em)
        }
    };
    let endpoint = match (&o.endpoint, &emulator) {
        (Some(url), _) => url.clone(),
        (None, Some(em)) => em.endpoint_url().to_string(),
        (None, None) => bail!("no endpoint"),
    };
    let reactor = if emulator.is_some() {
        "R01".to_string()
    } else {
        o.reactor.clone()
    };
    let mut cfg = OpcUaConfig::new(&endpoint, NodeMap::ambr250(&reactor));
    cfg.security = o.security;
    cfg.pki_dir.clone_from(&o.pki_dir);
    cfg.trust_on_first_use = o.trust_server || emulator.is_some();
    if let (Some(user), Some(file)) = (&o.user, &o.password_file) {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the password file {}", file.display()))?;
        cfg.identity = Identity::UserName {
            user: user.clone(),
            password: Secret::new(text.lines().next().unwrap_or_default().to_string()),
        };
    } else if o.user.is_some() {
        bail!("--user needs --password-file");
    }
    let connector = OpcUaConnector::new(cfg)?;

    let audit = o.out.join("audit.jsonl");
    if audit.exists() {
        std::fs::remove_file(&audit)?;
    }
    let run_cfg = RunConfig {
        duration_days: o.days,
        sampling_interval_hours: 24.0,
        retrain_every: 3,
        acquisition: Acquisition::LogEI,
        allow_write: o.allow_write,
        seed: Some(o.seed),
        ..RunConfig::default()
    };
    println!(
        "reactor {reactor} at {endpoint}; writing is {}",
        if o.allow_write {
            "ON: recommended setpoints are written to the reactor"
        } else {
            "off: recommendations are only recorded (give --allow-write to write them)"
        }
    );
    let cancel = CancelToken::new();
    let stop = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            stop.cancel();
        }
    });
    let twin = DigitalTwin::builder(connector, DEFAULT_AMBR250_DESIGN_SPACE, run_cfg)
        .reactor_id(&reactor)
        .audit_path(&audit)
        // a day's sample is polled for until the next one would be due
        .sample_wait(Duration::from_secs_f64(
            (o.seconds_per_day * 3.0).clamp(2.0, 3600.0),
        ))
        .cancel_token(cancel)
        .build()?;
    let report = twin.run().await?;
    println!("{report}");
    let verified = verify_file(
        &audit,
        &VerifyOptions {
            expect_head: Some(report.audit_head.clone()),
        },
    )?;
    println!(
        "audit log {} verified: {} records",
        audit.display(),
        verified.records
    );
    if let Some(em) = emulator {
        if o.allow_write {
            let sp = em.setpoints(0)?;
            println!(
                "the emulator now holds perfusion {:.2} 1/d, bleed {:.2} 1/d",
                sp[Control::PerfusionRate.index()],
                sp[Control::BleedRate.index()]
            );
        }
        em.stop().await;
    }
    Ok(())
}
