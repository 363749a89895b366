//! `perfusio design-space`: print the default ambr250 design space or a TOML one.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use perfusio_core::{DEFAULT_AMBR250_DESIGN_SPACE, Derived, DesignSpace, Species, Variable};

/// Arguments of `perfusio design-space`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// A design space in TOML (default: the built-in ambr250 design space).
    #[arg(long)]
    file: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Table,
    Toml,
    Json,
}

pub(crate) fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let ds = match &args.file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            DesignSpace::from_toml_str(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => DEFAULT_AMBR250_DESIGN_SPACE,
    };
    let text = match args.format {
        Format::Toml => ds.to_toml_string()?,
        Format::Json => serde_json::to_string_pretty(&ds)? + "\n",
        Format::Table => table(&ds),
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

fn table(ds: &DesignSpace) -> String {
    let mut s = String::from("control           unit    lower    upper   limits            kind\n");
    for c in ds.controls() {
        s += &format!(
            "{:<17} {:<6} {:>7} {:>8}   [{}, {}]{:<8} {}\n",
            c.control.name(),
            c.control.unit(),
            c.lower,
            c.upper,
            c.limits.lower,
            c.limits.upper,
            "",
            if c.hard { "hard" } else { "soft" }
        );
    }
    s += "\nvariable  unit           plausible range\n";
    let vars = Species::ALL
        .into_iter()
        .map(Variable::Species)
        .chain(Derived::ALL.into_iter().map(Variable::Derived));
    for v in vars {
        let b = ds.bounds(v);
        s += &format!(
            "{:<9} {:<14} [{}, {}]\n",
            v.name(),
            v.unit(),
            b.lower,
            b.upper
        );
    }
    s += &format!(
        "\nviability_min = {} %\nvcv_target    = {} %\n",
        ds.viability_min(),
        ds.vcv_target()
    );
    s
}
