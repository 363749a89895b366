//! The facade snippet of issue 12 and the T06 tutorial, exactly as written.
use perfusio_twin::prelude::*;

// kept byte for byte as the tutorial writes it
#[rustfmt::skip]
#[tokio::main]
async fn main() -> Result<(), TwinError> {
    let connector = FilesystemStore::from_path("my_data.csv")?;
    let run_cfg = RunConfig { duration_days: 14, sampling_interval_hours: 24.0, ..RunConfig::default() };
    let twin = DigitalTwin::new(connector, DEFAULT_AMBR250_DESIGN_SPACE, run_cfg)?;
    let report = twin.run().await?;
    println!("{report}");
    Ok(())
}
