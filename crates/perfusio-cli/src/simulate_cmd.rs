//! `perfusio simulate`: run the mechanistic plant model (the virtual ambr250 reactor) for
//! one operating point or a design of experiments and write daily CSV.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use perfusio_connectors::files::{CsvWriteOptions, write_samples_csv};
use perfusio_core::{
    Control, ControlArray, DEFAULT_AMBR250_DESIGN_SPACE, Sample, Setpoints, Species, SpeciesArray,
};
use perfusio_mechanistic::{
    CloneKind, NoiseModel, PlantSpec, VirtualReactorConfig, doe, initial_state,
};

/// Largest number of Latin-hypercube runs accepted.
const MAX_LHS_RUNS: usize = 1000;
/// Maximin swap attempts of the Latin hypercube.
const LHS_MAXIMIN_ITERS: usize = 200;

/// Arguments of `perfusio simulate`. Values are parsed here (not by clap) so that every
/// invalid value gives the same one-line error.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Cell line: CloneX or CloneY (case-insensitive; x and y also work).
    #[arg(long, default_value = "CloneX")]
    clone: String,
    /// Plant file (TOML: `clone = "CloneY"` plus kinetic-parameter overrides such as
    /// `mu_max = 0.046`); replaces --clone.
    #[arg(long, value_name = "FILE")]
    params: Option<String>,
    /// Number of culture days to simulate (output has days 0..=DAYS).
    #[arg(long, default_value = "28")]
    days: String,
    /// Initial-state override, e.g. `--init VCD=2.0` (species name or alias; repeatable).
    #[arg(long = "init", value_name = "NAME=VALUE")]
    init: Vec<String>,
    /// Control setting, e.g. `--set perfusion_rate=2.0` (repeatable); validated against the
    /// design space's hard limits.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    set: Vec<String>,
    /// Measurement noise and missing values: on or off.
    #[arg(long, default_value = "on")]
    noise: String,
    /// Seed of the measurement noise (run i of a design uses SEED + i) and of the Latin
    /// hypercube.
    #[arg(long, default_value = "42")]
    seed: String,
    /// Design of experiments: box-behnken (the 27-run 4-factor training design) or lhs
    /// (Latin hypercube over every control not fixed with --set).
    #[arg(long)]
    design: Option<String>,
    /// Number of runs of the Latin-hypercube design.
    #[arg(long)]
    runs: Option<String>,
    /// `-` writes CSV to stdout (single run only); a directory gets one CSV per run plus
    /// `design.csv` with the control settings of each run.
    #[arg(long, default_value = "-")]
    out: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DesignKind {
    BoxBehnken,
    Lhs,
}

fn parse_number<T: std::str::FromStr>(option: &str, value: &str) -> anyhow::Result<T> {
    value
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("{option} {value}: not a valid number"))
}

fn parse_init(assignments: &[String]) -> anyhow::Result<SpeciesArray<f64>> {
    let mut y0 = initial_state();
    for a in assignments {
        let Some((name, value)) = a.split_once('=') else {
            bail!("--init {a}: expected NAME=VALUE, e.g. VCD=2.0");
        };
        let species: Species = name.parse().with_context(|| format!("--init {a}"))?;
        let v: f64 = value
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("--init {a}: '{}' is not a number", value.trim()))?;
        let b = DEFAULT_AMBR250_DESIGN_SPACE.bounds(perfusio_core::Variable::Species(species));
        if !b.contains(v) {
            bail!(
                "--init {a}: {species} must lie in [{}, {}] {}",
                b.lower,
                b.upper,
                species.unit()
            );
        }
        y0[species.index()] = v;
    }
    Ok(y0)
}

fn parse_setpoints(assignments: &[String]) -> anyhow::Result<(ControlArray<f64>, Vec<Control>)> {
    let mut sp = Setpoints::defaults(0);
    let mut named = Vec::new();
    for a in assignments {
        sp = sp
            .with_assignment(a)
            .with_context(|| format!("--set {a}"))?;
        if let Some((name, _)) = a.split_once('=')
            && let Some(c) = Control::lookup(name)
        {
            named.push(c);
        }
    }
    let soft = DEFAULT_AMBR250_DESIGN_SPACE.validate(&sp.values)?;
    for v in soft {
        eprintln!("warning: {v}");
    }
    Ok((sp.values, named))
}

pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let (clone, params) = match &args.params {
        Some(file) => {
            let spec = PlantSpec::from_arg(file).map_err(|e| anyhow::anyhow!("--params {e}"))?;
            (spec.clone, Some(spec.params))
        }
        None => (args.clone.parse::<CloneKind>()?, None),
    };
    let days: u32 = parse_number("--days", &args.days)?;
    if !(1..=perfusio_core::MAX_DURATION_DAYS).contains(&days) {
        bail!(
            "--days {days}: must be between 1 and {}",
            perfusio_core::MAX_DURATION_DAYS
        );
    }
    let seed: u64 = parse_number("--seed", &args.seed)?;
    let noise = match args.noise.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" => NoiseModel::default(),
        "off" | "false" | "no" => NoiseModel::none(),
        other => bail!("--noise {other}: use on or off"),
    };
    let design = match args
        .design
        .as_deref()
        .map(|d| d.trim().to_ascii_lowercase())
    {
        None => None,
        Some(d) if matches!(d.as_str(), "box-behnken" | "bbd" | "boxbehnken") => {
            Some(DesignKind::BoxBehnken)
        }
        Some(d) if matches!(d.as_str(), "lhs" | "latin-hypercube") => Some(DesignKind::Lhs),
        Some(d) => bail!("--design {d}: use box-behnken or lhs"),
    };
    let n_lhs = match (&args.runs, design) {
        (Some(r), Some(DesignKind::Lhs)) => {
            let n: usize = parse_number("--runs", r)?;
            if !(1..=MAX_LHS_RUNS).contains(&n) {
                bail!("--runs {n}: must be between 1 and {MAX_LHS_RUNS}");
            }
            n
        }
        (Some(_), _) => bail!("--runs applies to --design lhs only"),
        (None, _) => 20,
    };
    let y0 = parse_init(&args.init)?;
    let (base, named) = parse_setpoints(&args.set)?;

    let runs: Vec<ControlArray<f64>> = match design {
        None => vec![base],
        Some(DesignKind::BoxBehnken) => {
            if let Some(f) = doe::TRAINING_FACTORS
                .iter()
                .find(|f| named.contains(&f.control))
            {
                bail!(
                    "--set {}: it is a factor of the Box–Behnken design; only agitation and \
                     pyruvate_feed can be fixed",
                    f.control
                );
            }
            let design =
                doe::box_behnken(doe::TRAINING_FACTORS.len(), doe::TRAINING_CENTER_POINTS)?;
            doe::design_to_controls(&design, &doe::TRAINING_FACTORS, &base)?
        }
        Some(DesignKind::Lhs) => {
            let factors: Vec<doe::Factor> = DEFAULT_AMBR250_DESIGN_SPACE
                .controls()
                .iter()
                .filter(|s| !named.contains(&s.control))
                .map(|s| doe::Factor::from(*s))
                .collect();
            if factors.is_empty() {
                bail!("--design lhs: every control is fixed with --set; nothing to vary");
            }
            let design = doe::latin_hypercube(n_lhs, factors.len(), seed, LHS_MAXIMIN_ITERS)?;
            doe::design_to_controls(&design, &factors, &base)?
        }
    };

    let config = VirtualReactorConfig {
        clone,
        params,
        initial_state: y0,
        noise,
        seed,
        ..VirtualReactorConfig::default()
    };
    // run i uses the controls of run i and noise seed SEED + i (doe::run_config)
    if args.out == "-" && design.is_some() {
        bail!("--out -: a design writes one CSV per run; give a directory, e.g. --out runs");
    }
    let samples = doe::simulate_design_samples(&runs, &config, days)
        .context("simulating the virtual reactor")?;

    if args.out == "-" {
        let mut out = std::io::stdout().lock();
        for run in &samples {
            write_samples_csv(&mut out, run, &CsvWriteOptions::default())?;
        }
        out.flush()?;
    } else {
        write_dir(Path::new(&args.out), &runs, &samples)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// One CSV per run (`run-001.csv`, … in the culture-file layout) and `design.csv` with the
/// controls of each run.
fn write_dir(
    dir: &Path,
    runs: &[ControlArray<f64>],
    samples: &[Vec<Sample>],
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (i, run) in samples.iter().enumerate() {
        let path = dir.join(format!("{}.csv", doe::run_id(i)));
        let file = std::fs::File::create(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        write_samples_csv(
            std::io::BufWriter::new(file),
            run,
            &CsvWriteOptions::default(),
        )
        .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let mut summary = String::from("run");
    for c in Control::ALL {
        let _ = write!(summary, ",{}", c.name());
    }
    summary.push('\n');
    for (i, r) in runs.iter().enumerate() {
        summary += &doe::run_id(i);
        for v in r {
            let _ = write!(summary, ",{v}");
        }
        summary.push('\n');
    }
    let path = dir.join("design.csv");
    std::fs::write(&path, summary).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
