//! Write a realistic audit log of a simulated perfusion run, then verify it.
//!
//! ```text
//! cargo run -p perfusio-audit --example audit_demo -- OUT.jsonl N [SEED]
//! ```
//!
//! The log is written through the async handle (as the twin does) with the default
//! fsync-every-record policy, so N = 10 000 takes a few seconds on a slow disk.

use anyhow::{Context, bail};
use perfusio_audit::{AuditHandle, AuditWriter, VerifyOptions, WriterOptions, demo, verify_file};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 || args.len() > 3 {
        bail!("usage: audit_demo OUT.jsonl N [SEED]   (OUT.jsonl must not exist yet)");
    }
    let out = std::path::PathBuf::from(&args[0]);
    let n: usize = args[1]
        .parse()
        .with_context(|| format!("N must be a record count, got {:?}", args[1]))?;
    let seed: u64 = match args.get(2) {
        Some(s) => s
            .parse()
            .with_context(|| format!("SEED must be an unsigned integer, got {s:?}"))?,
        None => 42,
    };
    if out.exists() {
        bail!(
            "{} already exists; the demo writes a fresh log (choose another path)",
            out.display()
        );
    }
    let (writer, _) = AuditWriter::open(&out, WriterOptions::new(format!("demo-{seed}"), "R1"))?;
    let handle = AuditHandle::spawn(writer)?;
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    let head = rt.block_on(async {
        for entry in demo::simulated_run(n, seed) {
            handle.append(entry).await?;
        }
        handle.close().await
    })?;
    let report = verify_file(
        &out,
        &VerifyOptions {
            expect_head: Some(head.hash.clone()),
        },
    )?;
    #[allow(clippy::print_stdout)]
    {
        println!("wrote {} records to {}", head.seq, out.display());
        println!("{report}");
    }
    Ok(())
}
