//! Designs of experiments: Box–Behnken, central composite and Latin hypercube designs,
//! scaling to physical bounds, the 27-run training design of `docs/plant-model.md`, and
//! [`simulate_design`], which turns a design into noisy trajectories.
//!
//! Coded designs live in `[-extent, extent]^k` (Box–Behnken and face-centred central
//! composite: extent 1; rotatable or spherical central composite: extent α); Latin
//! hypercubes live in `[0, 1]^k`. [`Design::scale`] maps the whole coded range linearly onto
//! the given physical bounds, so every point of every design stays inside the bounds
//! (for a rotatable central composite this is the *inscribed* variant: the axial points sit
//! on the bounds and the factorial points at `±1/α` of the half-range).
//!
//! ```
//! use perfusio_mechanistic::doe::{box_behnken, training_design};
//! let bbd = box_behnken(4, 3).unwrap();
//! assert_eq!(bbd.n_runs(), 27);
//! assert_eq!(training_design().len(), 27);
//! ```

use perfusio_core::{Control, ControlArray, ControlSpec, Sample, Trajectory};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{MechError, Result};
use crate::reactor::{VirtualReactor, VirtualReactorConfig};

/// How the coordinates of a [`Design`] are coded.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Coding {
    /// Coordinates in `[-extent, extent]`.
    Symmetric {
        /// Largest absolute coordinate (1 for Box–Behnken, α for a central composite).
        extent: f64,
    },
    /// Coordinates in `[0, 1]`.
    Unit,
}

/// A design in coded units: one row per run, one column per factor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Design {
    /// Coded points, `n_runs × n_factors`.
    pub points: Vec<Vec<f64>>,
    /// Coding of the coordinates.
    pub coding: Coding,
}

impl Design {
    /// Number of runs.
    pub fn n_runs(&self) -> usize {
        self.points.len()
    }

    /// Number of factors.
    pub fn n_factors(&self) -> usize {
        self.points.first().map_or(0, Vec::len)
    }

    /// The points mapped to `[0, 1]^k`.
    pub fn to_unit(&self) -> Vec<Vec<f64>> {
        match self.coding {
            Coding::Unit => self.points.clone(),
            Coding::Symmetric { extent } => self
                .points
                .iter()
                .map(|p| p.iter().map(|x| 0.5 * (x / extent + 1.0)).collect())
                .collect(),
        }
    }

    /// The points in physical units: the coded range of factor `j` maps linearly onto
    /// `bounds[j] = (lower, upper)`. Errors if the number of bounds differs from the number
    /// of factors or a bound is not finite and ordered.
    ///
    /// ```
    /// # use perfusio_mechanistic::doe::box_behnken;
    /// let d = box_behnken(3, 1).unwrap();
    /// let x = d.scale(&[(0.5, 1.5), (0.1, 0.2), (36.5, 37.5)]).unwrap();
    /// assert!((x[12][2] - 37.0).abs() < 1e-12); // the centre run
    /// ```
    pub fn scale(&self, bounds: &[(f64, f64)]) -> Result<Vec<Vec<f64>>> {
        if bounds.len() != self.n_factors() {
            return Err(MechError::arg(
                "bounds",
                bounds.len(),
                format!(
                    "need one (lower, upper) pair per factor ({})",
                    self.n_factors()
                ),
            ));
        }
        if let Some((lo, hi)) = bounds
            .iter()
            .find(|(lo, hi)| !(lo.is_finite() && hi.is_finite() && lo <= hi))
        {
            return Err(MechError::arg(
                "bounds",
                format!("({lo}, {hi})"),
                "each bound must be finite with lower <= upper",
            ));
        }
        Ok(scale_unit(&self.to_unit(), bounds))
    }
}

fn scale_unit(unit: &[Vec<f64>], bounds: &[(f64, f64)]) -> Vec<Vec<f64>> {
    unit.iter()
        .map(|p| {
            p.iter()
                .zip(bounds)
                .map(|(u, (lo, hi))| lo + u * (hi - lo))
                .collect()
        })
        .collect()
}

/// Incomplete-block structure of the tabulated Box–Behnken designs for 6 and 7 factors
/// (Box & Behnken 1960, *Technometrics* 2(4):455–475, doi:10.1080/00401706.1960.10489912):
/// each block is a set of three factors run at all `(±1, ±1, ±1)` with the others at 0.
const BBD6_BLOCKS: [[usize; 3]; 6] = [
    [0, 1, 3],
    [1, 2, 4],
    [2, 3, 5],
    [0, 3, 4],
    [1, 4, 5],
    [0, 2, 5],
];
/// The 7-factor design uses the balanced incomplete block design of seven blocks of three
/// (every pair of factors appears together exactly once); it is rotatable.
const BBD7_BLOCKS: [[usize; 3]; 7] = [
    [3, 4, 5],
    [0, 5, 6],
    [1, 4, 6],
    [0, 1, 3],
    [2, 3, 6],
    [0, 2, 4],
    [1, 2, 5],
];

fn bbd_points(k: usize, center_points: usize) -> Vec<Vec<f64>> {
    let mut pts = Vec::new();
    match k {
        6 | 7 => {
            let blocks: &[[usize; 3]] = if k == 6 { &BBD6_BLOCKS } else { &BBD7_BLOCKS };
            for block in blocks {
                for signs in 0..8u32 {
                    let mut p = vec![0.0; k];
                    for (bit, &j) in block.iter().enumerate() {
                        p[j] = if signs >> bit & 1 == 1 { 1.0 } else { -1.0 };
                    }
                    pts.push(p);
                }
            }
        }
        _ => {
            // 3 to 5 factors: every pair of factors at (±1, ±1), the others at 0.
            for i in 0..k {
                for j in i + 1..k {
                    for (a, b) in [(-1.0, -1.0), (1.0, -1.0), (-1.0, 1.0), (1.0, 1.0)] {
                        let mut p = vec![0.0; k];
                        p[i] = a;
                        p[j] = b;
                        pts.push(p);
                    }
                }
            }
        }
    }
    pts.extend(std::iter::repeat_n(vec![0.0; k], center_points));
    pts
}

/// Box–Behnken design for `k` = 3 to 7 factors with `center_points` centre runs, coded in
/// `{-1, 0, 1}`. For 3–5 factors every pair of factors runs at `(±1, ±1)` (12, 24 and 40
/// edge runs); for 6 and 7 factors the tabulated incomplete-block designs are used (48 and
/// 56 edge runs), not the all-pairs construction.
pub fn box_behnken(k: usize, center_points: usize) -> Result<Design> {
    if !(3..=7).contains(&k) {
        return Err(MechError::arg(
            "factors",
            k,
            "Box–Behnken designs need 3 to 7 factors",
        ));
    }
    Ok(Design {
        points: bbd_points(k, center_points),
        coding: Coding::Symmetric { extent: 1.0 },
    })
}

/// Axial distance of a central composite design.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum CcdAlpha {
    /// `α = (2^k)^{1/4}`: rotatable with the full `2^k` factorial (the prediction variance
    /// depends only on the distance from the centre).
    Rotatable,
    /// `α = √k`: the axial points lie on the sphere through the factorial corners.
    Spherical,
    /// `α = 1`: axial points on the faces of the cube (three levels per factor).
    FaceCentred,
    /// An explicit positive α.
    Value(f64),
}

impl CcdAlpha {
    /// The numeric α for `k` factors.
    pub fn value(self, k: usize) -> f64 {
        let kf = k as f64;
        match self {
            CcdAlpha::Rotatable => 2f64.powf(kf / 4.0),
            CcdAlpha::Spherical => kf.sqrt(),
            CcdAlpha::FaceCentred => 1.0,
            CcdAlpha::Value(a) => a,
        }
    }
}

/// Central composite design for `k` = 2 to 6 factors: the full `2^k` factorial at `±1`,
/// `2k` axial points at `±α` and `center_points` centre runs (`2^k + 2k + center_points`
/// runs), coded in `[-α, α]` (`[-1, 1]` when α < 1).
pub fn central_composite(k: usize, alpha: CcdAlpha, center_points: usize) -> Result<Design> {
    if !(2..=6).contains(&k) {
        return Err(MechError::arg(
            "factors",
            k,
            "central composite designs here support 2 to 6 factors",
        ));
    }
    let a = alpha.value(k);
    if !(a.is_finite() && a > 0.0) {
        return Err(MechError::arg(
            "alpha",
            a,
            "the axial distance must be finite and positive",
        ));
    }
    let mut pts = Vec::with_capacity((1 << k) + 2 * k + center_points);
    for corner in 0..(1u32 << k) {
        pts.push(
            (0..k)
                .map(|j| if corner >> j & 1 == 1 { 1.0 } else { -1.0 })
                .collect(),
        );
    }
    for j in 0..k {
        for s in [-a, a] {
            let mut p = vec![0.0; k];
            p[j] = s;
            pts.push(p);
        }
    }
    pts.extend(std::iter::repeat_n(vec![0.0; k], center_points));
    Ok(Design {
        points: pts,
        coding: Coding::Symmetric { extent: a.max(1.0) },
    })
}

/// Smallest pairwise Euclidean distance between the rows of `pts` (∞ for fewer than 2).
pub fn min_pairwise_distance(pts: &[Vec<f64>]) -> f64 {
    let mut best = f64::INFINITY;
    for i in 0..pts.len() {
        for j in i + 1..pts.len() {
            let d2: f64 = pts[i]
                .iter()
                .zip(&pts[j])
                .map(|(a, b)| (a - b) * (a - b))
                .sum();
            best = best.min(d2);
        }
    }
    best.sqrt()
}

/// Latin hypercube of `n` points in `[0, 1]^k`, seeded: each column puts exactly one point
/// in each of the `n` equal strata, at a uniform position inside it. With
/// `maximin_iters > 0`, that many random within-column swaps are tried and kept when they
/// do not decrease the smallest pairwise distance (a maximin improvement that preserves the
/// Latin property).
///
/// ```
/// # use perfusio_mechanistic::doe::latin_hypercube;
/// let d = latin_hypercube(10, 3, 1, 100).unwrap();
/// assert_eq!(d.n_runs(), 10);
/// assert_eq!(d, latin_hypercube(10, 3, 1, 100).unwrap()); // same seed, same design
/// ```
pub fn latin_hypercube(n: usize, k: usize, seed: u64, maximin_iters: usize) -> Result<Design> {
    if n == 0 || k == 0 {
        return Err(MechError::arg(
            "n × k",
            format!("{n} × {k}"),
            "need at least one run and one factor",
        ));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let nf = n as f64;
    let mut pts = vec![vec![0.0; k]; n];
    for j in 0..k {
        // Fisher–Yates permutation of the strata
        let mut perm: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let r = rng.random_range(0..=i);
            perm.swap(i, r);
        }
        for (i, stratum) in perm.into_iter().enumerate() {
            let u: f64 = rng.random();
            pts[i][j] = (stratum as f64 + u) / nf;
        }
    }
    if n >= 3 {
        let mut best = min_pairwise_distance(&pts);
        for _ in 0..maximin_iters {
            let j = rng.random_range(0..k);
            let a = rng.random_range(0..n);
            let b = rng.random_range(0..n);
            if a == b {
                continue;
            }
            let (va, vb) = (pts[a][j], pts[b][j]);
            pts[a][j] = vb;
            pts[b][j] = va;
            let d = min_pairwise_distance(&pts);
            if d >= best {
                best = d;
            } else {
                pts[a][j] = va;
                pts[b][j] = vb;
            }
        }
    }
    Ok(Design {
        points: pts,
        coding: Coding::Unit,
    })
}

/// One design factor: a control and the physical range its coded range maps onto.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Factor {
    /// The control varied.
    pub control: Control,
    /// Physical value at the low end of the coded range.
    pub lower: f64,
    /// Physical value at the high end of the coded range.
    pub upper: f64,
}

impl From<ControlSpec> for Factor {
    /// A factor spanning the control's design range.
    fn from(spec: ControlSpec) -> Self {
        Self {
            control: spec.control,
            lower: spec.lower,
            upper: spec.upper,
        }
    }
}

/// The four factors of the training design of `docs/plant-model.md`: perfusion 0.5/1.0/1.5 vvd,
/// bleed 0.10/0.15/0.20 vvd, temperature 36.5/37.0/37.5 °C, medium glucose 4/5/6 g/L.
pub const TRAINING_FACTORS: [Factor; 4] = [
    Factor {
        control: Control::PerfusionRate,
        lower: 0.5,
        upper: 1.5,
    },
    Factor {
        control: Control::BleedRate,
        lower: 0.10,
        upper: 0.20,
    },
    Factor {
        control: Control::Temperature,
        lower: 36.5,
        upper: 37.5,
    },
    Factor {
        control: Control::GlucoseSetpoint,
        lower: 4.0,
        upper: 6.0,
    },
];

/// Centre runs of the training design.
pub const TRAINING_CENTER_POINTS: usize = 3;

/// Control vectors of a design: `base` with each factor's control replaced by its scaled
/// value (controls that are not factors keep their `base` value).
pub fn design_to_controls(
    design: &Design,
    factors: &[Factor],
    base: &ControlArray<f64>,
) -> Result<Vec<ControlArray<f64>>> {
    let bounds: Vec<_> = factors.iter().map(|f| (f.lower, f.upper)).collect();
    let scaled = design.scale(&bounds)?;
    Ok(apply_factors(&scaled, factors, base))
}

fn apply_factors(
    scaled: &[Vec<f64>],
    factors: &[Factor],
    base: &ControlArray<f64>,
) -> Vec<ControlArray<f64>> {
    scaled
        .iter()
        .map(|row| {
            let mut c = *base;
            for (f, v) in factors.iter().zip(row) {
                c[f.control.index()] = *v;
            }
            c
        })
        .collect()
}

/// The 27-run training design of `docs/plant-model.md`: a 4-factor Box–Behnken design over
/// [`TRAINING_FACTORS`] with 3 centre runs; agitation (850 rpm) and medium pyruvate
/// (0 mmol/L) at their defaults.
///
/// ```
/// use perfusio_core::Control;
/// let runs = perfusio_mechanistic::doe::training_design();
/// assert_eq!(runs.len(), 27);
/// assert!(runs.iter().all(|c| (c[Control::Agitation.index()] - 850.0).abs() < 1e-12));
/// ```
pub fn training_design() -> Vec<ControlArray<f64>> {
    let design = Design {
        points: bbd_points(TRAINING_FACTORS.len(), TRAINING_CENTER_POINTS),
        coding: Coding::Symmetric { extent: 1.0 },
    };
    let bounds: Vec<_> = TRAINING_FACTORS
        .iter()
        .map(|f| (f.lower, f.upper))
        .collect();
    apply_factors(
        &scale_unit(&design.to_unit(), &bounds),
        &TRAINING_FACTORS,
        &Control::defaults(),
    )
}

/// Identifier of run `index` (0-based) of a design: `run-001`, `run-002`, …
pub fn run_id(index: usize) -> String {
    format!("run-{:03}", index + 1)
}

/// The reactor configuration of run `index` (0-based) of a design: `config` with setpoints
/// `controls` from day 0 and noise seed `config.seed + index` (wrapping), so that runs get
/// independent noise and the whole design is reproducible from one seed.
pub fn run_config(
    config: &VirtualReactorConfig,
    index: usize,
    controls: &ControlArray<f64>,
) -> VirtualReactorConfig {
    let mut c = config.clone();
    c.setpoints = *controls;
    c.seed = config.seed.wrapping_add(index as u64);
    c
}

/// Simulates every run of a design for `n_days` days on a [`VirtualReactor`] configured by
/// [`run_config`] and returns each run's noisy daily samples, days `0..=n_days`, with the
/// derived variables (VCV, Diam) and the controls applied that day.
///
/// ```
/// use perfusio_mechanistic::{doe, VirtualReactorConfig};
/// let runs = doe::training_design();
/// let samples = doe::simulate_design_samples(&runs[..2], &VirtualReactorConfig::default(), 5).unwrap();
/// assert_eq!((samples.len(), samples[0].len()), (2, 6));
/// assert!(samples[1][5].derived[0].is_some() || samples[1][5].derived[1].is_some());
/// ```
pub fn simulate_design_samples(
    runs: &[ControlArray<f64>],
    config: &VirtualReactorConfig,
    n_days: u32,
) -> Result<Vec<Vec<Sample>>> {
    runs.iter()
        .enumerate()
        .map(|(i, controls)| {
            let mut reactor = VirtualReactor::new(run_config(config, i, controls))?;
            reactor.advance_to(n_days)?;
            (0..=n_days).map(|day| reactor.sample(day)).collect()
        })
        .collect()
}

/// Simulates every run of a design for `n_days` days (see [`simulate_design_samples`]:
/// run `i` uses setpoints `runs[i]` throughout and noise seed `config.seed + i`) and returns
/// one noisy trajectory per run, days `0..=n_days`, each row carrying the controls applied
/// that day. Run ids are `run-001`, `run-002`, … ([`run_id`]).
///
/// ```
/// use perfusio_mechanistic::{doe, VirtualReactorConfig};
/// let runs = doe::training_design();
/// let trajs = doe::simulate_design(&runs[..2], &VirtualReactorConfig::default(), 28).unwrap();
/// assert_eq!(trajs.len(), 2);
/// assert_eq!(trajs[0].len(), 29);
/// assert_eq!(trajs[1].run_id, "run-002");
/// ```
pub fn simulate_design(
    runs: &[ControlArray<f64>],
    config: &VirtualReactorConfig,
    n_days: u32,
) -> Result<Vec<Trajectory>> {
    let samples = simulate_design_samples(runs, config, n_days)?;
    runs.iter()
        .zip(samples)
        .enumerate()
        .map(|(i, (controls, days))| {
            let mut t = Trajectory::new(run_id(i));
            t.clone = Some(config.clone.name().to_string());
            t.reactor_id = Some(config.reactor_id.clone());
            for s in &days {
                t.push_sample(s, *controls)?;
            }
            Ok(t)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    /// Rank of a matrix by Gaussian elimination with partial pivoting.
    fn rank(mut m: Vec<Vec<f64>>) -> usize {
        let (rows, cols) = (m.len(), m[0].len());
        let mut r = 0;
        for c in 0..cols {
            let Some(p) = (r..rows).max_by(|&a, &b| m[a][c].abs().total_cmp(&m[b][c].abs())) else {
                break;
            };
            if m[p][c].abs() < 1e-9 {
                continue;
            }
            m.swap(r, p);
            for i in 0..rows {
                if i != r {
                    let f = m[i][c] / m[r][c];
                    for j in 0..cols {
                        m[i][j] -= f * m[r][j];
                    }
                }
            }
            r += 1;
            if r == rows {
                break;
            }
        }
        r
    }

    /// Model matrix of the full quadratic model (1, x_i, x_i², x_i x_j).
    fn quadratic_model_matrix(pts: &[Vec<f64>]) -> Vec<Vec<f64>> {
        pts.iter()
            .map(|p| {
                let k = p.len();
                let mut row = vec![1.0];
                row.extend(p.iter().copied());
                row.extend(p.iter().map(|x| x * x));
                for i in 0..k {
                    for j in i + 1..k {
                        row.push(p[i] * p[j]);
                    }
                }
                row
            })
            .collect()
    }

    fn moment(pts: &[Vec<f64>], f: impl Fn(&[f64]) -> f64) -> f64 {
        pts.iter().map(|p| f(p)).sum()
    }

    #[test]
    fn box_behnken_sizes_balance_and_estimability() {
        for (k, edge_runs) in [(3, 12), (4, 24), (5, 40), (6, 48), (7, 56)] {
            let d = box_behnken(k, 3).unwrap();
            assert_eq!(d.n_runs(), edge_runs + 3, "k = {k}");
            let p = &d.points;
            for i in 0..k {
                assert_relative_eq!(moment(p, |x| x[i]), 0.0);
                // every factor is at ±1 in the same number of runs
                assert_relative_eq!(moment(p, |x| x[i] * x[i]), moment(p, |x| x[0] * x[0]));
                for j in i + 1..k {
                    assert_relative_eq!(moment(p, |x| x[i] * x[j]), 0.0);
                }
            }
            // three levels only
            assert!(
                p.iter()
                    .flatten()
                    .all(|x| [-1.0, 0.0, 1.0].iter().any(|l| (x - l).abs() < 1e-15))
            );
            // the full quadratic model is estimable
            let m = quadratic_model_matrix(p);
            let n_params = m[0].len();
            assert_eq!(rank(m), n_params, "k = {k}");
        }
        assert!(box_behnken(2, 1).is_err());
        assert!(box_behnken(8, 1).is_err());
    }

    #[test]
    fn tabulated_bbd_for_4_and_7_factors_is_rotatable() {
        // rotatability of a second-order design: [iiii] = 3 [iijj]
        for k in [4, 7] {
            let p = box_behnken(k, 0).unwrap().points;
            let pure = moment(&p, |x| x[0].powi(4));
            let mixed = moment(&p, |x| x[0] * x[0] * x[1] * x[1]);
            assert_relative_eq!(pure, 3.0 * mixed);
        }
        // the 7-factor blocks are a balanced incomplete block design: each pair once
        let mut count = [[0; 7]; 7];
        for b in BBD7_BLOCKS {
            for i in 0..3 {
                for j in i + 1..3 {
                    count[b[i].min(b[j])][b[i].max(b[j])] += 1;
                }
            }
        }
        for i in 0..7 {
            for j in i + 1..7 {
                assert_eq!(count[i][j], 1, "pair {i},{j}");
            }
        }
        // 6 factors: each factor in exactly 3 blocks
        for f in 0..6 {
            assert_eq!(BBD6_BLOCKS.iter().filter(|b| b.contains(&f)).count(), 3);
        }
    }

    #[test]
    fn central_composite_alphas_and_rotatability() {
        for k in 2..=6 {
            let d = central_composite(k, CcdAlpha::Rotatable, 4).unwrap();
            assert_eq!(d.n_runs(), (1 << k) + 2 * k + 4);
            let a = 2f64.powf(k as f64 / 4.0);
            assert_relative_eq!(CcdAlpha::Rotatable.value(k), a);
            let pure = moment(&d.points, |x| x[0].powi(4));
            let mixed = moment(&d.points, |x| x[0] * x[0] * x[1] * x[1]);
            assert_relative_eq!(pure, 3.0 * mixed, max_relative = 1e-12);
            assert_eq!(
                rank(quadratic_model_matrix(&d.points)),
                1 + 2 * k + k * (k - 1) / 2
            );
            // inscribed scaling keeps every point inside the bounds
            let b = vec![(0.0, 10.0); k];
            let x = d.scale(&b).unwrap();
            assert!(x.iter().flatten().all(|v| (0.0..=10.0 + 1e-12).contains(v)));
            assert_relative_eq!(x.iter().flatten().fold(0.0f64, |m, v| m.max(*v)), 10.0);
        }
        assert_relative_eq!(CcdAlpha::Spherical.value(3), 3f64.sqrt());
        let fc = central_composite(3, CcdAlpha::FaceCentred, 1).unwrap();
        assert!(fc.points.iter().flatten().all(|x| x.abs() <= 1.0));
        assert!(central_composite(3, CcdAlpha::Value(-1.0), 1).is_err());
        assert!(central_composite(7, CcdAlpha::Rotatable, 1).is_err());
    }

    #[test]
    fn latin_hypercube_is_latin_seeded_and_maximin_helps() {
        let n = 20;
        let d = latin_hypercube(n, 4, 9, 500).unwrap();
        for j in 0..4 {
            let mut strata: Vec<usize> = d
                .points
                .iter()
                .map(|p| (p[j] * n as f64).floor() as usize)
                .collect();
            strata.sort_unstable();
            assert_eq!(strata, (0..n).collect::<Vec<_>>());
        }
        assert_eq!(d, latin_hypercube(n, 4, 9, 500).unwrap());
        assert_ne!(d, latin_hypercube(n, 4, 10, 500).unwrap());
        let plain = latin_hypercube(n, 4, 9, 0).unwrap();
        assert!(min_pairwise_distance(&d.points) > min_pairwise_distance(&plain.points));
        assert!(latin_hypercube(0, 2, 1, 0).is_err());
    }

    #[test]
    fn scaling_and_training_design_levels() {
        let d = box_behnken(3, 1).unwrap();
        assert!(d.scale(&[(0.0, 1.0)]).is_err());
        assert!(d.scale(&[(0.0, 1.0), (1.0, 0.0), (0.0, 1.0)]).is_err());
        let runs = training_design();
        let levels = |c: Control| {
            let mut v: Vec<f64> = runs.iter().map(|r| r[c.index()]).collect();
            v.sort_by(f64::total_cmp);
            v.dedup_by(|a, b| (*a - *b).abs() < 1e-12);
            v
        };
        assert_eq!(levels(Control::PerfusionRate), [0.5, 1.0, 1.5]);
        assert_eq!(levels(Control::BleedRate).len(), 3);
        assert_relative_eq!(levels(Control::BleedRate)[0], 0.10);
        assert_relative_eq!(levels(Control::BleedRate)[2], 0.20);
        assert_eq!(levels(Control::Temperature), [36.5, 37.0, 37.5]);
        assert_eq!(levels(Control::GlucoseSetpoint), [4.0, 5.0, 6.0]);
        assert_eq!(levels(Control::PyruvateFeed), [0.0]);
        // 24 distinct edge runs + 3 identical centre runs = 25 distinct control vectors
        let mut distinct: Vec<_> = runs.iter().map(|r| r.map(f64::to_bits)).collect();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 25);
    }
}
