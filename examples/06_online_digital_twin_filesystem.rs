//! T06 — Online digital twin (filesystem connector): a 14-day self-driving experiment
//! driven by a CSV file, no hardware and no server.
//!
//! What it does, as the T06 tutorial describes:
//! 1. writes a synthetic 14-day CSV with daily samples of 10 process variables (the nine
//!    modelled species and the viable cell volume, from the virtual ambr250 reactor with a
//!    clone-Y cell line);
//! 2. creates a `FilesystemStore` connector over it;
//! 3. builds `DigitalTwin::new(connector, DEFAULT_AMBR250_DESIGN_SPACE, run_cfg)` with
//!    `retrain_every = 3` and `acquisition = LogEI`, and runs it: every day it reads the
//!    next sample, buffers it, forecasts 28 days, asks the design policy for the next
//!    setpoints, writes them back through the connector (a CSV connector appends them to its
//!    setpoint log, so writing is on) and retrains the hybrid model every 3 days;
//! 4. prints a daily table, verifies `audit.jsonl` (written to the working directory) and
//!    draws the forecast fan chart and the setpoint history as SVG.
//!
//! ```sh
//! cargo run --release -p perfusio-examples --example 06_online_digital_twin_filesystem
//! cargo run --release -p perfusio-examples --example 06_online_digital_twin_filesystem -- --days 7
//! ```
//! Outputs: `./audit.jsonl` and `./t06_output/` (the CSV, its setpoint log, the charts).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use perfusio_audit::{VerifyOptions, verify_file};
use perfusio_core::Derived;
use perfusio_mechanistic::{CloneKind, VirtualReactor};
use perfusio_twin::plot::{FanChart, fan_chart_svg, setpoint_history_svg};
use perfusio_twin::prelude::*;

/// The 10 process variables of the synthetic file: CSV header and what they are.
const VARIABLES: [(&str, &str); 10] = [
    ("VCD", "viable cell density, 1e6 cells/mL"),
    ("viability", "viability, %"),
    ("glucose", "glucose, g/L"),
    ("glutamine", "glutamine, mmol/L"),
    ("glutamate", "glutamate, mmol/L"),
    ("lactate", "lactate, mmol/L"),
    ("ammonium", "ammonium, mmol/L"),
    ("pyruvate", "pyruvate, mmol/L"),
    ("titer", "antibody titer, mg/L"),
    ("VCV", "viable cell volume, %"),
];

/// Writes days `0..=days` of a noisy clone-Y culture at the default controls.
fn write_synthetic_csv(path: &Path, days: u32) -> anyhow::Result<()> {
    let mut r = VirtualReactor::new(VirtualReactorConfig {
        clone: CloneKind::CloneY,
        seed: 6,
        ..VirtualReactorConfig::default()
    })?;
    r.advance_to(days)?;
    let mut text = String::from("day");
    for (h, _) in VARIABLES {
        write!(text, ",{h}")?;
    }
    text.push('\n');
    let cell = |v: Option<f64>| v.map_or_else(String::new, |x| format!("{x:.6}"));
    for day in 0..=days {
        let s = r.sample(day)?;
        write!(text, "{day}")?;
        for sp in Species::ALL {
            write!(text, ",{}", cell(s.get(sp)))?;
        }
        writeln!(text, ",{}", cell(s.derived[Derived::VCV.index()]))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Moves an audit log of an earlier run out of the way (a new run never appends to one).
fn set_aside(audit: &Path) -> anyhow::Result<()> {
    if audit.exists() {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let old = PathBuf::from(format!("{}.{stamp}.old", audit.display()));
        std::fs::rename(audit, &old)?;
        println!(
            "an earlier {} was moved to {}",
            audit.display(),
            old.display()
        );
    }
    Ok(())
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).collect::<String>() + "…"
    }
}

/// What the example did (for its smoke test).
#[derive(Debug)]
struct Outcome {
    report: RunReport,
    records: u64,
    charts: Vec<PathBuf>,
    setpoint_log: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let days = match std::env::args().nth(1).as_deref() {
        Some("--days") => std::env::args()
            .nth(2)
            .context("--days needs a number")?
            .parse()
            .context("--days")?,
        Some(other) => anyhow::bail!("unknown option {other} (the only one is --days N)"),
        None => 14,
    };
    let o = run(Path::new("."), days).await?;
    if !o.report.completed {
        anyhow::bail!("the run did not complete: {}", o.report.reason);
    }
    println!(
        "done: {} audit records, {} charts, setpoints written to {}",
        o.records,
        o.charts.len(),
        o.setpoint_log.display()
    );
    Ok(())
}

/// The tutorial in `dir` (the working directory of `main`) over `days` culture days.
async fn run(dir: &Path, days: u32) -> anyhow::Result<Outcome> {
    let out = dir.join("t06_output");
    std::fs::create_dir_all(&out)?;
    let csv = out.join("my_data.csv");
    write_synthetic_csv(&csv, days)?;
    println!(
        "wrote {} (days 0..={days}) with daily samples of 10 process variables:\n  {}",
        csv.display(),
        VARIABLES
            .map(|(h, what)| format!("{h} ({what})"))
            .join("\n  ")
    );
    let log = out.join("my_data.setpoints.csv");
    let _ = std::fs::remove_file(&log);
    let audit = dir.join("audit.jsonl");
    set_aside(&audit)?;

    // the tutorial's key code
    let connector = FilesystemStore::from_path(&csv)?;
    let run_cfg = RunConfig {
        duration_days: days,
        sampling_interval_hours: 24.0,
        retrain_every: 3,
        acquisition: Acquisition::LogEI,
        allow_write: true,
        seed: Some(6),
        ..RunConfig::default()
    };
    println!(
        "\nallow_write is on: a CSV connector writes setpoints only to its own log, {}",
        log.display()
    );
    // as `DigitalTwin::new`, with the audit log in `dir` (`new` puts it in the working
    // directory, which is `dir` when this runs as the example)
    let twin = DigitalTwin::builder(connector, DEFAULT_AMBR250_DESIGN_SPACE, run_cfg)
        .audit_path(&audit)
        .build()?;
    let t0 = Instant::now();
    let report = twin.run().await?;
    let loop_s = t0.elapsed().as_secs_f64();

    println!(
        "\n{:>3} {:>6} {:>5} {:>6} {:>15} {:>24} {:<9} {:<8} reason",
        "day", "VCD", "Via", "Titer", "Titer +7 d 80 %", "perf/bleed/glc/T", "setpoint", "retrain"
    );
    for d in &report.days {
        let v = |s: Species, p: usize| d.species(s).map_or("-".into(), |x| format!("{x:.p$}"));
        let band = d
            .forecast_band(Species::Titer, 7)
            .map_or("-".into(), |(lo, _, hi)| format!("{lo:.0}–{hi:.0}"));
        let (decided, reason) = d
            .decision
            .as_ref()
            .map_or(("-".into(), String::new()), |x| {
                let g = |c: Control| x.controls.get(c.name()).copied().unwrap_or(f64::NAN);
                (
                    format!(
                        "{:.2}/{:.2}/{:.1}/{:.1}",
                        g(Control::PerfusionRate),
                        g(Control::BleedRate),
                        g(Control::GlucoseSetpoint),
                        g(Control::Temperature)
                    ),
                    x.reason.clone(),
                )
            });
        let outcome = if d.written.is_some() {
            "written"
        } else if d.withheld.is_some() {
            "withheld"
        } else {
            "(last)"
        };
        let retrain = d
            .retrained
            .as_ref()
            .map_or(String::new(), |m| format!("{} rows", m.rows));
        println!(
            "{:>3} {:>6} {:>5} {:>6} {:>15} {:>24} {:<9} {:<8} {}",
            d.day,
            v(Species::VCD, 2),
            v(Species::Via, 1),
            v(Species::Titer, 0),
            band,
            decided,
            outcome,
            retrain,
            short(&reason, 70)
        );
    }
    println!(
        "\n{}: {} on day {}",
        report.run_id, report.reason, report.last_day
    );
    println!(
        "{} decisions, {} written, {} withheld, {} retrains (days {}), {} alarms",
        report.decisions(),
        report.written(),
        report.withheld(),
        report.retrains(),
        report
            .days
            .iter()
            .filter(|d| d.retrained.is_some())
            .map(|d| d.day.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        report.alarms_raised()
    );
    println!(
        "the twin's {} days took {loop_s:.2} s",
        report.days.len() - 1
    );

    let verified = verify_file(
        &audit,
        &VerifyOptions {
            expect_head: Some(report.audit_head.clone()),
        },
    )?;
    println!(
        "audit log {} verified: {} records, head {}",
        audit.display(),
        verified.records,
        verified.head
    );
    println!("  check it independently: python3 docs/verify_audit.py audit.jsonl");

    let mut charts = Vec::new();
    for s in [Species::Titer, Species::VCD] {
        if let Some(chart) = FanChart::from_report(&report, s) {
            let path = out.join(format!("forecast_{}.svg", s.name()));
            std::fs::write(&path, fan_chart_svg(&chart)?)?;
            println!("forecast fan chart: {}", path.display());
            charts.push(path);
        }
    }
    let path = out.join("setpoints.svg");
    std::fs::write(
        &path,
        setpoint_history_svg(&report.applied(), &DEFAULT_AMBR250_DESIGN_SPACE)?,
    )?;
    println!("setpoint history:   {}", path.display());
    charts.push(path);
    Ok(Outcome {
        report,
        records: verified.records,
        charts,
        setpoint_log: log,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's main command, for four culture days in a scratch directory: the loop
    /// runs every step, writes through the CSV connector's setpoint log, retrains on day 3,
    /// and its audit log verifies.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn t06_runs_end_to_end_for_a_few_days() {
        let dir = tempfile::tempdir().unwrap();
        let o = run(dir.path(), 4).await.unwrap();
        let r = &o.report;
        assert!(r.completed, "{}", r.reason);
        assert_eq!(r.days.len(), 5);
        assert_eq!((r.decisions(), r.written(), r.withheld()), (4, 4, 0));
        assert_eq!(r.retrains(), 1);
        assert!(r.days[3].retrained.is_some());
        // run_started, 5 sample_read, 4 x (forecast, decision, setpoint_written),
        // 1 model_retrained, run_finished, plus any rejections, alarms and waits
        let least: u64 = 1 + 5 + 12 + 1 + 1;
        assert!(o.records >= least, "{} records", o.records);
        let rows = std::fs::read_to_string(&o.setpoint_log).unwrap();
        assert_eq!(rows.lines().count(), 1 + 4, "{rows}");
        assert_eq!(o.charts.len(), 3);
        for c in &o.charts {
            let svg = std::fs::read_to_string(c).unwrap();
            assert!(svg.contains("<svg"), "{}", c.display());
        }
    }
}
