//! `FilesystemStore`: samples from CSV/Parquet files, setpoints to a CSV log.
