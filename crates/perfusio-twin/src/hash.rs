//! Hashes and seeds of the loop.

use perfusio_hybrid::{DayBand, Forecast};
use sha2::{Digest, Sha256};

/// SHA-256 (64 lowercase hex digits) of a whole forecast: the little-endian bytes of its
/// start day, then per forecast day the control schedule and the state and measured bands
/// (day, mean, sd, the five quantiles, the derived quantiles), then every latent and
/// measured Monte-Carlo path in order. Two forecasts hash equal exactly when all of these
/// are bit-identical.
pub fn forecast_sha256(f: &Forecast) -> String {
    let mut h = Sha256::new();
    h.update(b"perfusio-forecast/1");
    h.update(f.start_day.to_le_bytes());
    let floats = |h: &mut Sha256, v: &[f64]| {
        for x in v {
            h.update(x.to_le_bytes());
        }
    };
    let band = |h: &mut Sha256, b: &DayBand| {
        h.update(b.day.to_le_bytes());
        floats(h, &b.mean);
        floats(h, &b.sd);
        for q in &b.quantiles {
            floats(h, q);
        }
        for d in &b.derived {
            floats(h, d);
        }
    };
    for u in &f.schedule {
        floats(&mut h, u);
    }
    for b in f.state.iter().chain(&f.measured) {
        band(&mut h, b);
    }
    for paths in [&f.paths, &f.measured_paths].into_iter().flatten() {
        h.update((paths.len() as u64).to_le_bytes());
        for p in paths {
            for s in p {
                floats(&mut h, s);
            }
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A seed for one purpose and day, derived from the run's seed (SplitMix64 over the seed,
/// a tag and the day): decisions and forecasts depend only on (seed, day, data).
pub(crate) fn derive_seed(seed: u64, tag: &str, day: u32) -> u64 {
    let mut x = seed ^ 0x9e37_79b9_7f4a_7c15;
    for b in tag.bytes().chain(day.to_le_bytes()) {
        x = splitmix(x ^ u64::from(b));
    }
    splitmix(x)
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A seed from the operating system's randomness (for a run configured without one).
pub(crate) fn os_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_seeds_differ_by_tag_and_day_and_repeat() {
        assert_eq!(derive_seed(7, "forecast", 3), derive_seed(7, "forecast", 3));
        assert_ne!(derive_seed(7, "forecast", 3), derive_seed(7, "forecast", 4));
        assert_ne!(derive_seed(7, "forecast", 3), derive_seed(7, "policy", 3));
        assert_ne!(derive_seed(7, "forecast", 3), derive_seed(8, "forecast", 3));
        assert_ne!(os_seed(), os_seed());
    }
}
