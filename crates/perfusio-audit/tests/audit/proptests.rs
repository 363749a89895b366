//! Property tests: every single-byte change is detected; arbitrary input never panics the
//! verifier. Seeds are fixed so runs are reproducible.

use std::sync::OnceLock;

use perfusio_audit::{VerifyOptions, verify_bytes};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

use crate::common::write_demo;

fn valid_log() -> &'static [u8] {
    static LOG: OnceLock<Vec<u8>> = OnceLock::new();
    LOG.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = write_demo(dir.path(), "p.jsonl", 12, 40);
        std::fs::read(path).unwrap()
    })
}

fn config(cases: u32, seed: u64) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config(1000, 0x5eed_0001))]

    #[test]
    fn every_single_byte_change_is_detected(pos in 0usize..1_000_000, delta in 1u8..=255) {
        let log = valid_log();
        prop_assert!(verify_bytes(log, &VerifyOptions::default()).is_ok());
        let pos = pos % log.len();
        let mut bad = log.to_vec();
        bad[pos] = bad[pos].wrapping_add(delta);
        let r = verify_bytes(&bad, &VerifyOptions::default());
        prop_assert!(r.is_err(), "byte {} changed {:#04x} -> {:#04x} was not detected", pos, log[pos], bad[pos]);
    }
}

proptest! {
    #![proptest_config(config(1500, 0x5eed_0002))]

    #[test]
    fn verifier_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = verify_bytes(&bytes, &VerifyOptions::default());
        let _ = verify_bytes(&bytes, &VerifyOptions { expect_head: Some("00".into()) });
    }

    #[test]
    fn verifier_never_panics_on_spliced_logs(
        cut_a in 0usize..1_000_000,
        cut_b in 0usize..1_000_000,
        insert in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'"'), Just(b'{'), Just(b'}'), any::<u8>()], 0..64),
    ) {
        // Splice junk into a valid log between two cut points: hits the deeper code paths.
        let log = valid_log();
        let (a, b) = (cut_a % log.len(), cut_b % log.len());
        let (a, b) = (a.min(b), a.max(b));
        let mut bad = log[..a].to_vec();
        bad.extend_from_slice(&insert);
        bad.extend_from_slice(&log[b..]);
        let r = verify_bytes(&bad, &VerifyOptions::default());
        if bad != log {
            prop_assert!(r.is_err());
        }
    }
}
