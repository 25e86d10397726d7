//! Calibration: run the lowered float graph (the IR interpreter) through the reverse
//! process from seeded noise, and record every lowered tensor's values at the visited
//! timesteps. The interpreter is deterministic, so the calibrated ranges, and the
//! artifact, are the same on every host; tract's float model computes the same
//! function up to rounding and remains the float reference ([`trajectories`]).

use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressStyle};

use crate::ingest::float::FloatModel;
use crate::ingest::ir::{Graph, OpKind};
use crate::quantize::interp;
use crate::quantize::schedule::Schedule;

/// How a tensor's clipping range is chosen from its samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Observed minimum and maximum.
    MinMax,
    /// The 0.01 % and 99.99 % percentiles.
    Percentile,
    /// The range minimizing the int8 quantization mean squared error.
    Mse,
}

impl Method {
    /// Parses `minmax|percentile|mse`.
    ///
    /// # Errors
    /// Any other name.
    pub fn parse(s: &str) -> Result<Method> {
        Ok(match s {
            "minmax" => Method::MinMax,
            "percentile" => Method::Percentile,
            "mse" => Method::Mse,
            _ => bail!("unknown calibration method {s:?}; expected minmax, percentile or mse"),
        })
    }
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Method::MinMax => "minmax",
            Method::Percentile => "percentile",
            Method::Mse => "mse",
        }
    }
}

/// Calibration settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    /// Reverse trajectories from independent noise.
    pub trajectories: usize,
    /// Timesteps per trajectory (DDIM, spread over 0..T−1).
    pub timesteps: usize,
    /// Seed of the Gaussian noise.
    pub seed: u64,
    /// Range selection.
    pub method: Method,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { trajectories: 16, timesteps: 50, seed: 0, method: Method::Mse }
    }
}

/// A small deterministic PRNG (splitmix64) with a Box–Muller Gaussian.
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in (0, 1).
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    /// Standard normal (Box–Muller; `ln` and `cos` from the `libm` crate, so the same
    /// bits on every host).
    pub fn gauss(&mut self) -> f32 {
        let (u1, u2) = (self.uniform(), self.uniform());
        ((-2.0 * libm::log(u1)).sqrt() * libm::cos(2.0 * std::f64::consts::PI * u2)) as f32
    }
}

/// The network timesteps a DDIM run of `n` steps visits, from T−1 down to 0.
pub fn ddim_timesteps(t_max: usize, n: usize) -> Vec<usize> {
    let n = n.clamp(1, t_max);
    if n == 1 {
        return vec![t_max - 1];
    }
    let mut v: Vec<usize> = (0..n)
        .map(|i| ((t_max - 1) as f64 * (n - 1 - i) as f64 / (n - 1) as f64).round() as usize)
        .collect();
    v.dedup();
    v
}

/// One visited state of a float trajectory: `x_t` (NCHW) and the network timestep.
#[derive(Clone, Debug)]
pub struct State {
    /// x_t, NCHW.
    pub x: Vec<f32>,
    /// Network timestep.
    pub t: usize,
    /// ε predicted by the float model (NCHW): the IR interpreter's in calibration,
    /// tract's for the float reference.
    pub eps: Vec<f32>,
}

/// Runs `trajectories` deterministic DDIM (η = 0, x̂₀ clipped to [−1, 1]) reverse
/// processes with tract and returns every visited state: the float reference (ε from
/// tract's kernels, whose rounding depends on the CPU). Calibration uses
/// [`calibrate`].
///
/// # Errors
/// On a tract failure or a non-finite ε.
pub fn trajectories(
    fm: &FloatModel,
    chw: [usize; 3],
    sched: &Schedule,
    s: &Settings,
    progress: bool,
) -> Result<Vec<State>> {
    walk(chw, sched, s, progress, |x, t| {
        let eps = fm.eps(x, t as i64)?;
        if eps.iter().any(|v| !v.is_finite()) {
            bail!("the float model produced a non-finite ε at t = {t}");
        }
        Ok(eps)
    })
}

/// The DDIM trajectories both calibration engines walk: `s.trajectories` runs from
/// seeded Gaussian noise over `s.timesteps` DDIM timesteps, ε (NCHW) from `eps_of(x,
/// t)`, every visited state recorded.
fn walk(
    chw: [usize; 3],
    sched: &Schedule,
    s: &Settings,
    progress: bool,
    mut eps_of: impl FnMut(&[f32], usize) -> Result<Vec<f32>>,
) -> Result<Vec<State>> {
    let coef = sched.coefficients();
    let ts = ddim_timesteps(sched.timesteps, s.timesteps);
    let n: usize = chw.iter().product();
    let mut rng = Rng::new(s.seed);
    let bar = if progress {
        ProgressBar::new((s.trajectories * ts.len()) as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("calibrating {bar:40} {pos}/{len} float steps {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut out = Vec::new();
    for _ in 0..s.trajectories {
        let mut x: Vec<f32> = (0..n).map(|_| rng.gauss()).collect();
        for (j, &t) in ts.iter().enumerate() {
            let eps = eps_of(&x, t)?;
            out.push(State { x: x.clone(), t, eps: eps.clone() });
            let ab = coef.alpha_bar[t];
            let ab_prev = if j + 1 < ts.len() { coef.alpha_bar[ts[j + 1]] } else { 1.0 };
            ddim_step(&mut x, &eps, ab, ab_prev);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    Ok(out)
}

/// One deterministic DDIM step (η = 0, x̂₀ clipped to [−1, 1]) from ᾱ_t = `ab` to
/// ᾱ_prev = `ab_prev`, in f64 (only `sqrt` and basic arithmetic: exactly rounded).
fn ddim_step(x: &mut [f32], eps: &[f32], ab: f64, ab_prev: f64) {
    for (xv, &e) in x.iter_mut().zip(eps) {
        let x0 = ((*xv as f64 - (1.0 - ab).sqrt() * e as f64) / ab.sqrt()).clamp(-1.0, 1.0);
        *xv = (ab_prev.sqrt() * x0 + (1.0 - ab_prev).sqrt() * e as f64) as f32;
    }
}

/// Calibration: the same DDIM trajectories as [`trajectories`] (same seed, noise and
/// timesteps), with ε from the IR interpreter instead of tract, recording every
/// tensor's statistics from the same interpreter run that gives ε (one run per
/// visited state), then the `t`-only tensors over every timestep (as [`collect`]).
/// Returns the visited states (ε in NCHW) and the statistics.
///
/// Deterministic: the same graph and settings give the same bits on every host
/// (see [`crate::quantize::interp`]); nothing here depends on tract.
///
/// # Errors
/// On a non-finite ε.
pub fn calibrate(
    g: &Graph,
    chw: [usize; 3],
    sched: &Schedule,
    s: &Settings,
    progress: bool,
) -> Result<(Vec<State>, Vec<TensorStats>)> {
    let [c, h, w] = chw;
    let mut stats = vec![TensorStats::default(); g.tensors.len()];
    let time_only = time_only_tensors(g);
    let out = walk(chw, sched, s, progress, |x, t| {
        let vals = interp::run(g, &interp::nchw_to_nhwc(x, c, h, w), t);
        let eps = interp::nhwc_to_nchw(&vals[g.output], c, h, w);
        if eps.iter().any(|v| !v.is_finite()) {
            bail!("the lowered float graph produced a non-finite ε at t = {t}");
        }
        for (i, v) in vals.iter().enumerate() {
            if !time_only[i] {
                stats[i].add(v);
            }
        }
        Ok(eps)
    })?;
    add_time_only(g, &time_only, &mut stats);
    Ok((out, stats))
}

/// Per-tensor statistics: exact range and a deterministic subsample.
#[derive(Clone, Debug, Default)]
pub struct TensorStats {
    /// Minimum seen.
    pub min: f32,
    /// Maximum seen.
    pub max: f32,
    /// Subsampled values.
    pub samples: Vec<f32>,
}

const SAMPLES_PER_RUN: usize = 512;
/// Values the MSE range search evaluates per tensor (a strided subset).
const MSE_SAMPLES: usize = 32_768;

impl TensorStats {
    fn add(&mut self, v: &[f32]) {
        if self.samples.is_empty() {
            self.min = f32::INFINITY;
            self.max = f32::NEG_INFINITY;
        }
        for &x in v {
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
        let step = v.len().div_ceil(SAMPLES_PER_RUN).max(1);
        self.samples.extend(v.iter().step_by(step));
    }

    /// The clipping range `(lo, hi)` for `method`, always containing 0.
    pub fn range(&self, method: Method) -> (f32, f32) {
        let (mn, mx) = (self.min.min(0.0), self.max.max(0.0));
        match method {
            Method::MinMax => (mn, mx),
            Method::Percentile => {
                let mut s = self.samples.clone();
                s.sort_by(|a, b| a.total_cmp(b));
                let at = |p: f64| s[((s.len() - 1) as f64 * p).round() as usize];
                (at(0.0001).min(0.0), at(0.9999).max(0.0))
            }
            Method::Mse => {
                // Coordinate descent over the two ends, each on a grid of 1.0 .. 0.05 of
                // the observed extreme, on at most MSE_SAMPLES evenly strided values.
                let step = self.samples.len().div_ceil(MSE_SAMPLES).max(1);
                let sub: Vec<f32> = self.samples.iter().step_by(step).copied().collect();
                let samples = &sub;
                let grid = |i: usize| 1.0 - i as f32 * 0.02375;
                let (mut lo, mut hi) = (mn, mx);
                for _ in 0..2 {
                    hi = (0..=40)
                        .map(|i| mx * grid(i))
                        .min_by(|a, b| {
                            quant_mse(samples, lo, *a).total_cmp(&quant_mse(samples, lo, *b))
                        })
                        .unwrap_or(mx);
                    lo = (0..=40)
                        .map(|i| mn * grid(i))
                        .min_by(|a, b| {
                            quant_mse(samples, *a, hi).total_cmp(&quant_mse(samples, *b, hi))
                        })
                        .unwrap_or(mn);
                }
                (lo, hi)
            }
        }
    }
}

fn quant_mse(v: &[f32], lo: f32, hi: f32) -> f64 {
    let s = ((hi - lo) / 255.0).max(1e-12);
    let zp = (-128.0 - lo / s).round().clamp(-128.0, 127.0);
    v.iter()
        .map(|&x| {
            let q = (x / s + zp).round().clamp(-128.0, 127.0);
            let d = ((q - zp) * s - x) as f64;
            d * d
        })
        .sum::<f64>()
        / v.len().max(1) as f64
}

/// Collects statistics of every tensor of `g` over `states`, and over every timestep
/// for the tensors that depend on `t` alone (the embedding and its MLP).
pub fn collect(g: &Graph, chw: [usize; 3], states: &[State], progress: bool) -> Vec<TensorStats> {
    let mut stats = vec![TensorStats::default(); g.tensors.len()];
    let time_only = time_only_tensors(g);
    let bar = if progress { ProgressBar::new(states.len() as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("recording ranges {bar:40} {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    for s in states {
        let x = interp::nchw_to_nhwc(&s.x, chw[0], chw[1], chw[2]);
        let vals = interp::run(g, &x, s.t);
        for (i, v) in vals.iter().enumerate() {
            if !time_only[i] {
                stats[i].add(v);
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    add_time_only(g, &time_only, &mut stats);
    stats
}

/// Adds the values of the `t`-only tensors at every timestep to `stats`.
fn add_time_only(g: &Graph, time_only: &[bool], stats: &mut [TensorStats]) {
    let ops: Vec<bool> = g.ops.iter().map(|op| time_only[op.output]).collect();
    let zero = vec![0f32; g.tensors[g.input].len()];
    for t in 0..g.timesteps {
        let vals = interp::run_masked(g, &zero, t, Some(&ops));
        for (i, v) in vals.iter().enumerate() {
            if time_only[i] {
                stats[i].add(v);
            }
        }
    }
}

/// Tensors computed from the timestep alone.
pub fn time_only_tensors(g: &Graph) -> Vec<bool> {
    let mut t = vec![false; g.tensors.len()];
    for op in &g.ops {
        t[op.output] = match op.kind {
            OpKind::TimestepEmbed { .. } => true,
            _ => !op.inputs.is_empty() && op.inputs.iter().all(|&i| t[i]),
        };
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddim_steps_cover_both_ends() {
        let v = ddim_timesteps(1000, 50);
        assert_eq!(v.len(), 50);
        assert_eq!((v[0], v[49]), (999, 0));
        assert!(v.windows(2).all(|w| w[0] > w[1]));
    }

    #[test]
    fn mse_range_is_no_worse_than_minmax() {
        let mut s = TensorStats::default();
        // Laplace(0, 1): a few samples far out in the tails
        let v: Vec<f32> = (1..500)
            .map(|i| {
                let u = i as f32 / 500.0;
                if i % 2 == 0 {
                    -(u.ln())
                } else {
                    u.ln()
                }
            })
            .collect();
        s.add(&v);
        let (lo, hi) = s.range(Method::Mse);
        assert!(lo >= s.min && hi <= s.max && lo < -1.0 && hi > 1.0, "{lo} {hi}");
        let (mlo, mhi) = s.range(Method::MinMax);
        assert!(quant_mse(&s.samples, lo, hi) <= quant_mse(&s.samples, mlo, mhi));
        assert_eq!(s.range(Method::MinMax), (s.min, s.max));
    }

    #[test]
    fn gaussian_moments() {
        let mut r = Rng::new(1);
        let v: Vec<f32> = (0..20000).map(|_| r.gauss()).collect();
        let m = v.iter().sum::<f32>() / v.len() as f32;
        let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f32>() / v.len() as f32;
        assert!(m.abs() < 0.03 && (var - 1.0).abs() < 0.05, "{m} {var}");
    }
}
