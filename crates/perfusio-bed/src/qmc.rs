//! Quasi-Monte-Carlo base samples: randomly shifted rank-1 lattice rules with a
//! component-by-component generating vector, mapped to standard normals.
//!
//! # The rule
//! A rank-1 lattice rule with `n = 2^m` points and generating vector `z ∈ ℤ^d` has points
//! `x_k = {k z / n + Δ}`, `k = 0..n`, where `{·}` is the fractional part and `Δ ~ U[0,1)^d`
//! is a random shift (seeded). Every shifted rule is an unbiased estimator, and independent
//! shifts give an error estimate (L'Ecuyer & Lemieux 2000; Dick, Kuo & Sloan 2013,
//! "High-dimensional integration: the quasi-Monte Carlo way", Acta Numerica 22:133–288,
//! doi:10.1017/S0962492913000044, §5).
//!
//! `z` is built **component by component** (CBC): `z_1 = 1`, and each next `z_j` minimises
//! the shift-averaged squared worst-case error in the weighted unanchored Sobolev space with
//! product weights `γ_j`,
//!
//! `e²(z) = −1 + (1/n) Σ_k Π_j (1 + γ_j B₂({k z_j / n}))`, `B₂(x) = x² − x + 1/6`,
//!
//! over the odd residues modulo `n`. The search uses the **fast CBC** of Nuyens & Cools (2006),
//! "Fast algorithms for component-by-component construction of rank-1 lattice rules in
//! shift-invariant reproducing kernel Hilbert spaces", Math. Comp. 75:903–920,
//! doi:10.1090/S0025-5718-06-01785-6, for `n = 2^m`: the odd residues modulo `2^t` are
//! `{±5^b}`, so for every 2-adic level `k = 2^v k'` the candidate scores are one cyclic
//! correlation of length `2^{m−v−2}`, computed by FFT. Building `z` costs `O(d n log n)`
//! (about 1 ms for `n = 1024`, `d = 200`).
//!
//! Weights: `γ_j = 1/j` ([`lattice_weight`]). Our integrands (one coordinate per candidate,
//! day and species of a forecast) have no strongly dominant coordinates, so the weights decay
//! slowly: early coordinates are favoured, late ones still shape each choice.
//!
//! # Normals
//! [`BaseSamples`] applies the baker's (tent) transform `x ↦ 1 − |2x − 1|` to each shifted
//! point — still uniform, and it lifts lattice rules to `O(n^{-2+ε})` convergence for
//! smooth non-periodic integrands (Hickernell 2002, in *Monte Carlo and Quasi-Monte Carlo
//! Methods 2000*, pp. 274–289, doi:10.1007/978-3-642-56046-0_18) — then clamps into
//! `[2⁻⁵³, 1 − 2⁻⁵³]` (normals within ±8.2) and maps through [`norm_ppf`].
//!
//! A sample count that is not a power of two takes the first `n` points of the `2^⌈log₂ n⌉`
//! rule in radical-inverse order (the rule is extensible in that order, and every randomly
//! shifted prefix is still unbiased); powers of two are recommended and the default.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{BedError, Result};
use crate::special::norm_ppf;

/// Largest supported number of lattice points, `2^24`.
pub const MAX_POINTS: usize = 1 << 24;

/// Smallest uniform value handed to [`norm_ppf`] (`2⁻⁵³`, so normals lie within ±8.21).
pub const MIN_UNIFORM: f64 = 1.0 / 9_007_199_254_740_992.0;

/// Product weight `γ_j = 1/j` of coordinate `j` (1-based) in the CBC criterion.
pub fn lattice_weight(j: usize) -> f64 {
    1.0 / j.max(1) as f64
}

/// The Bernoulli polynomial `B₂(x) = x² − x + 1/6`, the kernel of the shift-averaged
/// Sobolev space.
fn b2(x: f64) -> f64 {
    x * x - x + 1.0 / 6.0
}

/// `(cos, sin)(2πj/n)` for `j < n/2`: the twiddle factors of a length-`n` FFT.
fn twiddles(n: usize) -> Vec<(f64, f64)> {
    (0..n / 2)
        .map(|j| {
            let (s, c) = (2.0 * std::f64::consts::PI * j as f64 / n as f64).sin_cos();
            (c, s)
        })
        .collect()
}

/// In-place radix-2 complex FFT of length `n = re.len()` with the [`twiddles`] of `n`
/// (`inverse`: conjugate twiddles, no scaling).
fn fft(re: &mut [f64], im: &mut [f64], tw: &[(f64, f64)], inverse: bool) {
    let n = re.len();
    if n <= 1 {
        return;
    }
    // bit reversal
    let bits = n.trailing_zeros();
    for i in 0..n {
        let j = i.reverse_bits() >> (usize::BITS - bits);
        if j > i {
            re.swap(i, j);
            im.swap(i, j);
        }
    }
    let sign = if inverse { 1.0 } else { -1.0 };
    let mut len = 2;
    while len <= n {
        let half = len / 2;
        let stride = n / len;
        for j in 0..half {
            let (c, s0) = tw[j * stride];
            let s = sign * s0;
            let mut start = 0;
            while start < n {
                let (a, b) = (start + j, start + j + half);
                let tr = re[b] * c - im[b] * s;
                let ti = re[b] * s + im[b] * c;
                re[b] = re[a] - tr;
                im[b] = im[a] - ti;
                re[a] += tr;
                im[a] += ti;
                start += len;
            }
        }
        len *= 2;
    }
}

/// Precomputed data of one 2-adic level `v` of the fast CBC (`N = 2^{m−v} ≥ 8`).
struct Level {
    /// `2^v`.
    scale: usize,
    /// `N = n / 2^v`.
    modulus: usize,
    /// `5^b mod N`, `b = 0..N/4`.
    powers: Vec<usize>,
    /// DFT of `W[c] = B₂((5^c mod N)/N)`.
    w_re: Vec<f64>,
    w_im: Vec<f64>,
    /// Twiddle factors for length `N/4`.
    tw: Vec<(f64, f64)>,
}

/// The fast-CBC search of one rule size: levels and the generator powers modulo `n`.
struct FastCbc {
    n: usize,
    levels: Vec<Level>,
    /// `5^a mod n`, `a = 0..n/4`: the candidate generators (one per ± class).
    candidates: Vec<usize>,
}

impl FastCbc {
    fn new(n: usize) -> Self {
        let m = n.trailing_zeros();
        let mut levels = Vec::new();
        for v in 0..m {
            let modulus = n >> v;
            if modulus < 8 {
                break;
            }
            let len = modulus / 4;
            let mut powers = Vec::with_capacity(len);
            let mut p = 1usize;
            for _ in 0..len {
                powers.push(p);
                p = p * 5 % modulus;
            }
            let mut w_re: Vec<f64> = powers
                .iter()
                .map(|&p| b2(p as f64 / modulus as f64))
                .collect();
            let mut w_im = vec![0.0; len];
            let tw = twiddles(len);
            fft(&mut w_re, &mut w_im, &tw, false);
            levels.push(Level {
                scale: 1 << v,
                modulus,
                powers,
                w_re,
                w_im,
                tw,
            });
        }
        let candidates = levels
            .first()
            .map(|l| l.powers.clone())
            .unwrap_or_else(|| vec![1]);
        Self {
            n,
            levels,
            candidates,
        }
    }

    /// `S[a] = Σ_{k=1}^{n−1} p[k] B₂({k·5^a/n})` for every candidate `a`, by one FFT
    /// correlation per level (the two smallest levels contribute constants and are skipped).
    fn scores(&self, p: &[f64]) -> Vec<f64> {
        let mut s = vec![0.0; self.candidates.len()];
        for level in &self.levels {
            let len = level.powers.len();
            let mut q_re: Vec<f64> = level
                .powers
                .iter()
                .map(|&pw| p[level.scale * pw] + p[level.scale * (level.modulus - pw)])
                .collect();
            let mut q_im = vec![0.0; len];
            fft(&mut q_re, &mut q_im, &level.tw, false);
            // conj(Q̂)·Ŵ
            let mut c_re = vec![0.0; len];
            let mut c_im = vec![0.0; len];
            for k in 0..len {
                c_re[k] = q_re[k] * level.w_re[k] + q_im[k] * level.w_im[k];
                c_im[k] = q_re[k] * level.w_im[k] - q_im[k] * level.w_re[k];
            }
            fft(&mut c_re, &mut c_im, &level.tw, true);
            let inv = 1.0 / len as f64;
            for (a, sa) in s.iter_mut().enumerate() {
                *sa += c_re[a % len] * inv;
            }
        }
        s
    }

    /// The CBC choice: the smallest-index candidate within round-off of the minimum score,
    /// so that the choice does not depend on the FFT's last bits.
    fn choose(&self, p: &[f64]) -> usize {
        let s = self.scores(p);
        let min = s.iter().copied().fold(f64::INFINITY, f64::min);
        let scale = s.iter().map(|v| v.abs()).fold(0.0, f64::max).max(1e-300);
        let a = s
            .iter()
            .position(|&v| v <= min + 1e-11 * scale)
            .unwrap_or(0);
        self.candidates[a] % self.n
    }
}

/// A rank-1 lattice rule with `n = 2^m` points and a CBC generating vector.
///
/// ```
/// use perfusio_bed::qmc::LatticeRule;
/// let rule = LatticeRule::cbc(1024, 8).unwrap();
/// assert_eq!(rule.generating_vector()[0], 1);
/// assert!(rule.generating_vector().iter().all(|z| z % 2 == 1));
/// // far below the error of a random odd generating vector
/// assert!(rule.squared_worst_case_error() < 1e-3);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatticeRule {
    n: usize,
    z: Vec<usize>,
}

impl LatticeRule {
    /// Builds the rule for `n` points (a power of two, `1 ≤ n ≤ 2^24`) in `dims ≥ 1`
    /// dimensions by fast CBC.
    pub fn cbc(n: usize, dims: usize) -> Result<Self> {
        if !n.is_power_of_two() || n > MAX_POINTS {
            return Err(BedError::InvalidParameter {
                name: "n",
                reason: format!(
                    "a lattice rule needs a power of two between 1 and 2^24 points, got {n}"
                ),
            });
        }
        if dims == 0 {
            return Err(BedError::InvalidParameter {
                name: "dims",
                reason: "need at least one dimension".to_string(),
            });
        }
        let mut z = vec![1usize; dims];
        if n >= 8 && dims > 1 {
            let cbc = FastCbc::new(n);
            let mut p = vec![1.0; n];
            for (j, zj) in z.iter_mut().enumerate() {
                if j > 0 {
                    *zj = cbc.choose(&p);
                }
                let g = lattice_weight(j + 1);
                for (k, pk) in p.iter_mut().enumerate() {
                    *pk *= 1.0 + g * b2(((k * *zj) % n) as f64 / n as f64);
                }
            }
        }
        Ok(Self { n, z })
    }

    /// A rule with a given generating vector (for comparisons and tests); `n` a power of two.
    pub fn with_generating_vector(n: usize, z: Vec<usize>) -> Result<Self> {
        if !n.is_power_of_two() || n > MAX_POINTS || z.is_empty() {
            return Err(BedError::InvalidParameter {
                name: "n",
                reason: format!(
                    "need a power of two between 1 and 2^24 points and a non-empty vector, \
                     got n = {n}, {} components",
                    z.len()
                ),
            });
        }
        Ok(Self { n, z })
    }

    /// Number of points.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Number of dimensions.
    pub fn dims(&self) -> usize {
        self.z.len()
    }

    /// The generating vector `z`.
    pub fn generating_vector(&self) -> &[usize] {
        &self.z
    }

    /// The shift-averaged squared worst-case error `e²` of the CBC criterion (direct
    /// `O(n d)` sum), with the weights of [`lattice_weight`].
    pub fn squared_worst_case_error(&self) -> f64 {
        let n = self.n;
        let mut sum = 0.0;
        for k in 0..n {
            let mut prod = 1.0;
            for (j, &zj) in self.z.iter().enumerate() {
                prod *= 1.0 + lattice_weight(j + 1) * b2(((k * zj) % n) as f64 / n as f64);
            }
            sum += prod;
        }
        sum / n as f64 - 1.0
    }

    /// Point `k` shifted by `shift` (`{k z/n + Δ}`), written into `out` (length `dims`).
    pub fn shifted_point(&self, k: usize, shift: &[f64], out: &mut [f64]) {
        let n = self.n;
        for ((o, &zj), &dj) in out.iter_mut().zip(&self.z).zip(shift) {
            let base = ((k % n) * zj % n) as f64 / n as f64;
            let x = base + dj;
            *o = x - x.floor();
        }
    }
}

/// `i`-th index of the extensible order of a rule with `2^bits` points (radical inverse).
fn radical_inverse_index(i: usize, bits: u32) -> usize {
    if bits == 0 {
        0
    } else {
        i.reverse_bits() >> (usize::BITS - bits)
    }
}

/// `n` points of a randomly shifted lattice in `[0, 1)^dims` (row-major, `n × dims`), for
/// space-filling designs such as the optimiser's raw candidates. Deterministic for a seed.
///
/// ```
/// use perfusio_bed::qmc::uniform_points;
/// let x = uniform_points(512, 6, 7).unwrap();
/// assert_eq!(x.len(), 512 * 6);
/// assert!(x.iter().all(|v| (0.0..1.0).contains(v)));
/// assert_eq!(x, uniform_points(512, 6, 7).unwrap());
/// ```
pub fn uniform_points(n: usize, dims: usize, seed: u64) -> Result<Vec<f64>> {
    let (rule, shift, bits) = shifted_rule(n, dims, seed)?;
    let mut out = vec![0.0; n * dims];
    for (i, row) in out.chunks_exact_mut(dims).enumerate() {
        rule.shifted_point(radical_inverse_index(i, bits), &shift, row);
    }
    Ok(out)
}

fn shifted_rule(n: usize, dims: usize, seed: u64) -> Result<(LatticeRule, Vec<f64>, u32)> {
    if n == 0 || n > MAX_POINTS {
        return Err(BedError::InvalidParameter {
            name: "n_samples",
            reason: format!("need between 1 and 2^24 samples, got {n}"),
        });
    }
    let size = n.next_power_of_two();
    let rule = LatticeRule::cbc(size, dims)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let shift: Vec<f64> = (0..dims).map(|_| rng.random::<f64>()).collect();
    Ok((rule, shift, size.trailing_zeros()))
}

/// How [`BaseSamples`] were drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SampleKind {
    /// Randomly shifted CBC lattice with the baker's transform (the default).
    Lattice,
    /// Independent pseudo-random normals (ChaCha8), for comparisons.
    PseudoRandom,
}

/// A fixed `n_samples × dims` matrix of standard-normal base samples.
///
/// Held fixed during one optimisation, they make a Monte-Carlo acquisition a deterministic,
/// smooth function of the candidate (the "sample average approximation" of BoTorch:
/// Balandat et al. 2020, NeurIPS, arXiv:1910.06403). A forecast model turns row `s` into
/// scenario `s` by the reparameterisation `y = μ + L ε_s`.
///
/// ```
/// use perfusio_bed::qmc::BaseSamples;
/// let b = BaseSamples::new(256, 12, 42).unwrap();
/// assert_eq!((b.n_samples(), b.dims()), (256, 12));
/// let mean0: f64 = (0..256).map(|s| b.get(s, 0)).sum::<f64>() / 256.0;
/// assert!(mean0.abs() < 1e-3);
/// assert_eq!(b, BaseSamples::new(256, 12, 42).unwrap()); // deterministic for a seed
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaseSamples {
    n_samples: usize,
    dims: usize,
    seed: u64,
    kind: SampleKind,
    data: Vec<f64>,
}

impl BaseSamples {
    /// Quasi-random normals from a randomly shifted CBC lattice (see the module docs).
    pub fn new(n_samples: usize, dims: usize, seed: u64) -> Result<Self> {
        let (rule, shift, bits) = shifted_rule(n_samples, dims, seed)?;
        let mut data = vec![0.0; n_samples * dims];
        for (i, row) in data.chunks_exact_mut(dims).enumerate() {
            rule.shifted_point(radical_inverse_index(i, bits), &shift, row);
            for x in row.iter_mut() {
                let tent = 1.0 - (2.0 * *x - 1.0).abs();
                *x = norm_ppf(tent.clamp(MIN_UNIFORM, 1.0 - MIN_UNIFORM));
            }
        }
        Ok(Self {
            n_samples,
            dims,
            seed,
            kind: SampleKind::Lattice,
            data,
        })
    }

    /// Independent pseudo-random normals (ChaCha8 seeded with `seed`).
    pub fn pseudo_random(n_samples: usize, dims: usize, seed: u64) -> Result<Self> {
        if n_samples == 0 || dims == 0 {
            return Err(BedError::InvalidParameter {
                name: "n_samples",
                reason: format!(
                    "need at least one sample and one dimension, got {n_samples} × {dims}"
                ),
            });
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let data = (0..n_samples * dims)
            .map(|_| rng.sample(rand_distr::StandardNormal))
            .collect();
        Ok(Self {
            n_samples,
            dims,
            seed,
            kind: SampleKind::PseudoRandom,
            data,
        })
    }

    /// Number of samples (rows).
    pub fn n_samples(&self) -> usize {
        self.n_samples
    }

    /// Number of dimensions (columns).
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// The seed they were drawn with.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// How they were drawn.
    pub fn kind(&self) -> SampleKind {
        self.kind
    }

    /// Row `s` (length `dims`); panics if `s ≥ n_samples` like slice indexing.
    pub fn row(&self, s: usize) -> &[f64] {
        &self.data[s * self.dims..(s + 1) * self.dims]
    }

    /// Element `(s, d)`.
    pub fn get(&self, s: usize, d: usize) -> f64 {
        self.data[s * self.dims + d]
    }

    /// All samples, row-major (`n_samples × dims`).
    pub fn as_slice(&self) -> &[f64] {
        &self.data
    }

    /// Iterates over the rows.
    pub fn rows(&self) -> std::slice::ChunksExact<'_, f64> {
        self.data.chunks_exact(self.dims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct `O(n²)` CBC scores, the reference for the FFT version.
    fn scores_direct(p: &[f64], candidates: &[usize]) -> Vec<f64> {
        let n = p.len();
        candidates
            .iter()
            .map(|&z| {
                (1..n)
                    .map(|k| p[k] * b2(((k * z) % n) as f64 / n as f64))
                    .sum()
            })
            .collect()
    }

    #[test]
    fn fft_round_trip_and_known_transform() {
        let mut re = vec![1.0, 2.0, 3.0, 4.0, 0.0, -1.0, 0.5, 2.0];
        let mut im = vec![0.0; 8];
        let orig = re.clone();
        let tw = twiddles(8);
        fft(&mut re, &mut im, &tw, false);
        assert!((re[0] - 11.5).abs() < 1e-14 && im[0].abs() < 1e-14);
        // X[1] = Σ x_j e^{−2πij/8}
        let (x1r, x1i) = orig.iter().enumerate().fold((0.0, 0.0), |(r, i), (j, &x)| {
            let a = -2.0 * std::f64::consts::PI * j as f64 / 8.0;
            (r + x * a.cos(), i + x * a.sin())
        });
        assert!((re[1] - x1r).abs() < 1e-14 && (im[1] - x1i).abs() < 1e-14);
        fft(&mut re, &mut im, &tw, true);
        for (a, b) in re.iter().zip(&orig) {
            assert!((a / 8.0 - b).abs() < 1e-14);
        }
    }

    #[test]
    fn fast_cbc_scores_equal_the_direct_sum() {
        for n in [8usize, 16, 64, 256] {
            let cbc = FastCbc::new(n);
            let mut rng = ChaCha8Rng::seed_from_u64(n as u64);
            let p: Vec<f64> = (0..n).map(|_| 0.5 + rng.random::<f64>()).collect();
            let fast = cbc.scores(&p);
            let direct = scores_direct(&p, &cbc.candidates);
            // the two smallest levels add a constant that the fast version leaves out
            let offset = direct[0] - fast[0];
            for (f, d) in fast.iter().zip(&direct) {
                assert!((f + offset - d).abs() < 1e-12 * d.abs().max(1.0), "n = {n}");
            }
            // the candidates are the odd residues up to sign
            let mut all: Vec<usize> = cbc
                .candidates
                .iter()
                .flat_map(|&c| [c % n, (n - c) % n])
                .collect();
            all.sort_unstable();
            all.dedup();
            assert_eq!(all, (1..n).step_by(2).collect::<Vec<_>>());
        }
    }

    #[test]
    fn cbc_beats_random_generating_vectors() {
        let (n, d) = (1024, 10);
        let rule = LatticeRule::cbc(n, d).unwrap();
        let e_cbc = rule.squared_worst_case_error();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut random: Vec<f64> = (0..40)
            .map(|_| {
                let mut z: Vec<usize> =
                    (0..d).map(|_| 2 * rng.random_range(0..n / 2) + 1).collect();
                z[0] = 1;
                LatticeRule::with_generating_vector(n, z)
                    .unwrap()
                    .squared_worst_case_error()
            })
            .collect();
        random.sort_by(f64::total_cmp);
        assert!(
            e_cbc < random[0],
            "CBC {e_cbc:e} vs best random {:e}",
            random[0]
        );
        assert!(
            e_cbc < random[20] / 5.0,
            "CBC {e_cbc:e} vs median random {:e}",
            random[20]
        );
        // every 1-D projection of the rule is the full grid {k/n}
        for &z in rule.generating_vector() {
            assert_eq!(z % 2, 1);
        }
    }

    #[test]
    fn lattice_points_are_shifted_grids() {
        let x = uniform_points(64, 3, 11).unwrap();
        for j in 0..3 {
            let mut col: Vec<f64> = x.chunks_exact(3).map(|r| r[j]).collect();
            col.sort_by(f64::total_cmp);
            for w in col.windows(2) {
                assert!((w[1] - w[0] - 1.0 / 64.0).abs() < 1e-12);
            }
        }
        // prefixes in radical-inverse order are sub-lattices
        let first8: Vec<f64> = x.chunks_exact(3).take(8).map(|r| r[0]).collect();
        let mut s = first8.clone();
        s.sort_by(f64::total_cmp);
        for w in s.windows(2) {
            assert!((w[1] - w[0] - 1.0 / 8.0).abs() < 1e-12);
        }
    }

    /// RMS error over `reps` independent seeds of the sample mean of `f(row)`.
    fn rms_error(
        make: &dyn Fn(u64) -> BaseSamples,
        f: &dyn Fn(&[f64]) -> f64,
        exact: f64,
        reps: u64,
    ) -> f64 {
        let mut acc = 0.0;
        for r in 0..reps {
            let b = make(1000 + r);
            let est = b.rows().map(f).sum::<f64>() / b.n_samples() as f64;
            acc += (est - exact).powi(2);
        }
        (acc / reps as f64).sqrt()
    }

    #[test]
    fn qmc_normals_beat_pseudo_random() {
        let (n, d) = (1024, 8);
        let qmc = |s: u64| BaseSamples::new(n, d, s).unwrap();
        let prn = |s: u64| BaseSamples::pseudo_random(n, d, s).unwrap();
        // a smooth integrand: E[exp(Σ a_j Z_j)] = exp(Σ a_j²/2)
        let a: Vec<f64> = (0..d).map(|j| 0.4 / (1.0 + j as f64)).collect();
        let exact = (a.iter().map(|v| v * v).sum::<f64>() / 2.0).exp();
        let f = |row: &[f64]| row.iter().zip(&a).map(|(z, aj)| z * aj).sum::<f64>().exp();
        let e_q = rms_error(&qmc, &f, exact, 8);
        let e_p = rms_error(&prn, &f, exact, 8);
        assert!(e_q < e_p / 10.0, "QMC {e_q:e} vs pseudo-random {e_p:e}");
        // moments of the normals, every column
        let b = qmc(5);
        let p = prn(5);
        let moments = |b: &BaseSamples| {
            let mut worst: f64 = 0.0;
            for j in 0..d {
                let m = (0..n).map(|s| b.get(s, j)).sum::<f64>() / n as f64;
                let v = (0..n).map(|s| b.get(s, j).powi(2)).sum::<f64>() / n as f64;
                worst = worst.max(m.abs()).max((v - 1.0).abs());
            }
            worst
        };
        let (wq, wp) = (moments(&b), moments(&p));
        assert!(wq < 5e-3, "QMC moment error {wq:e}");
        assert!(wq < wp / 5.0, "QMC {wq:e} vs pseudo-random {wp:e}");
    }

    #[test]
    fn base_samples_are_deterministic_and_bounded() {
        let a = BaseSamples::new(100, 200, 9).unwrap(); // not a power of two: prefix of 128
        let b = BaseSamples::new(100, 200, 9).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, BaseSamples::new(100, 200, 10).unwrap());
        assert!(a.as_slice().iter().all(|v| v.is_finite() && v.abs() < 8.3));
        assert_eq!(a.kind(), SampleKind::Lattice);
        assert_eq!(a.row(3).len(), 200);
        assert!(BaseSamples::new(0, 3, 1).is_err());
        assert!(LatticeRule::cbc(100, 3).is_err());
        assert!(LatticeRule::cbc(64, 0).is_err());
    }
}
