//! Sampling on both engines with one schedule and one noise stream.
//!
//! - int8: the runtime's fixed-point [`Sampler`] (std build of `ddpm_runtime`).
//! - float: [`FloatSampler`], the same reverse process in f64 around tract's f32 ε,
//!   mirroring `runtime/src/sampler` step for step (FORMAT.md, "Sampler"): the same
//!   DDIM timesteps `⌊j·T/S⌋`, the same σ and η formulas, and noise from the
//!   runtime's own generator ([`Xoshiro128::gaussian_q24`], converted to float), so
//!   a seed means the same x_T and the same per-step draws on both engines. Only
//!   the arithmetic differs (float instead of Q24/Q30 fixed point).
//!
//! State order is the runtime's: flat NHWC; tract is fed NCHW.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use ddpm_runtime::format::table;
use ddpm_runtime::sampler::noise::Xoshiro128;
use ddpm_runtime::sampler::state_to_pixel;
use ddpm_runtime::{Mode, Model, NoHooks, Sampler, SamplerConfig, Sigma};
use indicatif::{ProgressBar, ProgressStyle};
use tract_onnx::prelude::*;

use crate::artifact::convert;
use crate::artifact::tensors::{is_artifact, to_state};
use crate::evaluate::png_out;
use crate::ingest::float::FloatModel;
use crate::ingest::load;
use crate::quantize::interp;
use crate::quantize::precision::Activations;
use crate::quantize::schedule::Schedule;

/// Float precision of the tract engine's weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// Weights as exported.
    F32,
    /// Every f32 constant rounded to f16 and back (compute stays f32).
    F16,
}

impl Precision {
    /// Parses `f32|f16`.
    ///
    /// # Errors
    /// Any other name.
    pub fn parse(s: &str) -> Result<Precision> {
        match s {
            "f32" => Ok(Precision::F32),
            "f16" => Ok(Precision::F16),
            _ => bail!("unknown precision {s:?}; expected f32 or f16"),
        }
    }
}

/// The float schedule: the 8 FORMAT.md tables in f64.
#[derive(Clone, Debug)]
pub struct FloatSchedule {
    /// T.
    pub timesteps: usize,
    /// Tables indexed by `ddpm_runtime::format::table::*`, then by network timestep.
    pub tab: [Vec<f64>; 8],
}

impl FloatSchedule {
    /// The tables an artifact carries, dequantized (`value / 2^frac_bits`): the float
    /// engine then uses exactly the coefficients the int8 engine uses.
    pub fn from_model(m: &Model<'_>) -> FloatSchedule {
        let t = m.timesteps() as usize;
        let tab = std::array::from_fn(|k| {
            let fb = m.schedule_frac_bits(k).unwrap_or(30) as i32;
            let s = 2f64.powi(-fb);
            (0..t as u32).map(|i| m.sched(k, i).unwrap_or(0) as f64 * s).collect()
        });
        FloatSchedule { timesteps: t, tab }
    }

    /// Tables of a schedule, in f64 (for an ONNX model without an artifact).
    pub fn from_schedule(s: &Schedule) -> FloatSchedule {
        FloatSchedule { timesteps: s.timesteps, tab: s.coefficients().tables }
    }

    fn get(&self, k: usize, t: usize) -> f64 {
        self.tab[k][t]
    }

    /// DDIM `(√ᾱ_prev, √(1−ᾱ_prev−σ²), σ)` with the runtime's formula
    /// (`Sampler::ddim_coeffs`) in f64.
    pub fn ddim_coeffs(&self, t: usize, prev: Option<usize>, eta: f64) -> (f64, f64, f64) {
        let ab = self.get(table::SQRT_ALPHA_BAR, t).powi(2);
        let om = self.get(table::SQRT_ONE_MINUS_ALPHA_BAR, t).powi(2);
        let (ab_p, om_p) = match prev {
            Some(p) => (
                self.get(table::SQRT_ALPHA_BAR, p).powi(2),
                self.get(table::SQRT_ONE_MINUS_ALPHA_BAR, p).powi(2),
            ),
            None => (1.0, 0.0),
        };
        let s2 = if eta == 0.0 || om == 0.0 || ab_p == 0.0 {
            0.0
        } else {
            ((om_p / om) * (1.0 - (ab / ab_p).min(1.0)) * eta * eta).min(om_p)
        };
        (ab_p.sqrt(), (om_p - s2).max(0.0).sqrt(), s2.sqrt())
    }
}

/// Total steps of `cfg` for `timesteps` T.
pub fn total_steps(timesteps: usize, cfg: &SamplerConfig) -> u32 {
    match cfg.mode {
        Mode::Ddpm => timesteps as u32,
        Mode::Ddim { steps, .. } => steps,
    }
}

/// Network timestep of step `j` (the runtime's `Sampler::timestep_of`).
pub fn timestep_of(timesteps: usize, cfg: &SamplerConfig, j: u32) -> usize {
    match cfg.mode {
        Mode::Ddpm => j as usize,
        Mode::Ddim { steps, .. } => (j as u64 * timesteps as u64 / steps.max(1) as u64) as usize,
    }
}

/// A standard normal draw from the runtime's generator, as f64.
fn draw(rng: &mut Xoshiro128) -> f64 {
    rng.gaussian_q24() as f64 / (1u64 << 24) as f64
}

/// The reverse process in float around tract's ε (see the module docs).
pub struct FloatSampler<'a> {
    fm: &'a FloatModel,
    sched: &'a FloatSchedule,
    cfg: SamplerConfig,
    chw: [usize; 3],
    rng: Xoshiro128,
    x: Vec<f64>,
    remaining: u32,
}

impl<'a> FloatSampler<'a> {
    /// Draws x_T from the seed, like `Sampler::new`.
    ///
    /// # Errors
    /// DDIM steps outside `1..=T` or η above 1.
    pub fn new(
        fm: &'a FloatModel,
        sched: &'a FloatSchedule,
        chw: [usize; 3],
        cfg: SamplerConfig,
    ) -> Result<FloatSampler<'a>> {
        if let Mode::Ddim { steps, eta_q16 } = cfg.mode {
            if steps == 0 || steps as usize > sched.timesteps {
                bail!("DDIM steps {steps} not in 1..={}", sched.timesteps);
            }
            if eta_q16 > 1 << 16 {
                bail!("η above 1");
            }
        }
        let mut rng = Xoshiro128::new(cfg.seed);
        let n: usize = chw.iter().product();
        let x = (0..n).map(|_| draw(&mut rng)).collect();
        Ok(FloatSampler {
            fm,
            sched,
            cfg,
            chw,
            rng,
            x,
            remaining: total_steps(sched.timesteps, &cfg),
        })
    }

    /// Steps still to run.
    pub fn remaining_steps(&self) -> u32 {
        self.remaining
    }

    /// Network timestep the next step uses (None when finished).
    pub fn next_timestep(&self) -> Option<usize> {
        self.remaining.checked_sub(1).map(|j| timestep_of(self.sched.timesteps, &self.cfg, j))
    }

    /// The state x_t (NHWC, f64).
    pub fn state(&self) -> &[f64] {
        &self.x
    }

    /// tract's ε for state `x` (NHWC) at network timestep `t`, NHWC.
    ///
    /// # Errors
    /// On a tract failure or a non-finite ε.
    pub fn eps_at(&self, x: &[f64], t: usize) -> Result<Vec<f64>> {
        let [c, h, w] = self.chw;
        let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let e = self.fm.eps(&interp::nhwc_to_nchw(&xf, c, h, w), t as i64)?;
        let e = interp::nchw_to_nhwc(&e, c, h, w);
        if e.iter().any(|v| !v.is_finite()) {
            bail!("the float model produced a non-finite ε at t = {t}");
        }
        Ok(e.into_iter().map(f64::from).collect())
    }

    /// Runs one step; returns `(t, ε)` of the step run, or None when finished.
    ///
    /// # Errors
    /// As [`FloatSampler::eps_at`].
    pub fn step(&mut self) -> Result<Option<(usize, Vec<f64>)>> {
        let Some(j) = self.remaining.checked_sub(1) else {
            return Ok(None);
        };
        let tsteps = self.sched.timesteps;
        let t = timestep_of(tsteps, &self.cfg, j);
        let e = self.eps_at(&self.x, t)?;
        let s = self.sched;
        let sa = s.get(table::SQRT_ALPHA_BAR, t);
        let so = s.get(table::SQRT_ONE_MINUS_ALPHA_BAR, t);
        let clip = self.cfg.clip_x0;
        let x0 = |x: f64, e: f64| {
            let v = (x - so * e) / sa;
            if clip {
                v.clamp(-1.0, 1.0)
            } else {
                v
            }
        };
        let rng = &mut self.rng;
        match self.cfg.mode {
            Mode::Ddpm => {
                let sig_k = match self.cfg.sigma {
                    Sigma::Beta => Some(table::SIGMA_BETA),
                    Sigma::BetaTilde => Some(table::SIGMA_BETA_TILDE),
                    Sigma::Zero => None,
                };
                let sig = sig_k.filter(|_| t > 0).map(|k| s.get(k, t));
                let (c1, c2) = (s.get(table::C1, t), s.get(table::C2, t));
                let (p0, pt) = (s.get(table::POST_X0, t), s.get(table::POST_XT, t));
                for (x, &e) in self.x.iter_mut().zip(&e) {
                    let mean = if clip { p0 * x0(*x, e) + pt * *x } else { c1 * (*x - c2 * e) };
                    *x = match sig {
                        Some(sv) => mean + sv * draw(rng),
                        None => mean,
                    };
                }
            }
            Mode::Ddim { eta_q16, .. } => {
                let prev = if j == 0 { None } else { Some(timestep_of(tsteps, &self.cfg, j - 1)) };
                let (a, d, sg) = s.ddim_coeffs(t, prev, eta_q16 as f64 / 65536.0);
                for (x, &e) in self.x.iter_mut().zip(&e) {
                    let v = a * x0(*x, e) + d * e;
                    *x = if sg > 0.0 { v + sg * draw(rng) } else { v };
                }
            }
        }
        self.remaining = j;
        Ok(Some((t, e)))
    }

    /// u8 pixels `round((clip(x, −1, 1) + 1)·127.5)`, NHWC.
    pub fn pixels(&self) -> Vec<u8> {
        self.x.iter().map(|&v| ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8).collect()
    }
}

/// Rounds every f32 constant of `model` through f16; returns how many values changed
/// representation (all of them are rounded).
///
/// # Errors
/// If a constant cannot be rebuilt.
pub fn round_weights_f16(model: &mut TypedModel) -> Result<usize> {
    use tract_onnx::tract_core::ops::konst::Const;
    let mut count = 0usize;
    for node in model.nodes_mut() {
        let Some(k) = node.op_as::<Const>() else { continue };
        let v = k.val();
        if v.datum_type() != f32::datum_type() || !v.is_plain() {
            continue;
        }
        let mut t = (**v).clone();
        for x in t.to_plain_array_view_mut::<f32>()?.iter_mut() {
            *x = half::f16::from_f32(*x).to_f32();
            count += 1;
        }
        let t = Arc::new(t);
        node.op = Box::new(Const::new(t.clone())?);
        node.outputs[0].fact = TypedFact::try_from(t)?;
    }
    Ok(count)
}

/// Loads the float model at `path` for the tract engine.
///
/// # Errors
/// Load or optimization failures.
pub fn load_float(path: &Path, precision: Precision) -> Result<(FloatModel, [usize; 3])> {
    let mut l = load::load(path, None)?;
    if precision == Precision::F16 {
        let n = round_weights_f16(&mut l.model)?;
        if n == 0 {
            bail!("no f32 constants found to round to f16 in {}", path.display());
        }
    }
    let fm = FloatModel::new(&l.model, l.image_chw).context("optimizing the float model")?;
    Ok((fm, l.image_chw))
}

/// A repository model path: `models/NAME` under the working directory when present,
/// else next to this crate's source tree.
pub fn default_model_path(name: &str) -> PathBuf {
    let local = Path::new("models").join(name);
    if local.exists() {
        return local;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("models").join(name)
}

/// A progress bar on stderr (hidden when `show` is false).
pub fn bar(len: u64, what: &str, show: bool) -> ProgressBar {
    let b = if show { ProgressBar::new(len) } else { ProgressBar::hidden() };
    let tpl = format!("{what} {{bar:40}} {{pos}}/{{len}} steps {{elapsed}} (eta {{eta}})");
    b.set_style(
        ProgressStyle::with_template(&tpl).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    b
}

/// Samples one image with the int8 runtime; returns NHWC u8 pixels.
///
/// # Errors
/// Runtime errors (bad config, arena).
pub fn sample_int8(m: &Model<'_>, cfg: SamplerConfig, bar: &ProgressBar) -> Result<Vec<u8>> {
    let mut arena = vec![0u8; Sampler::arena_bytes_with_cache(m)];
    let mut s = Sampler::new(m, &mut arena, cfg).map_err(|e| anyhow!("sampler: {e}"))?;
    while s.step(&mut NoHooks).map_err(|e| anyhow!("int8 step: {e}"))?.is_some() {
        bar.inc(1);
    }
    let mut px = vec![0u8; m.image_len()];
    s.pixels(&mut px).map_err(|e| anyhow!("{e}"))?;
    Ok(px)
}

/// Samples one image with tract; returns NHWC u8 pixels.
///
/// # Errors
/// tract failures.
pub fn sample_float(
    fm: &FloatModel,
    sched: &FloatSchedule,
    chw: [usize; 3],
    cfg: SamplerConfig,
    bar: &ProgressBar,
) -> Result<Vec<u8>> {
    let mut s = FloatSampler::new(fm, sched, chw, cfg)?;
    while s.step()?.is_some() {
        bar.inc(1);
    }
    Ok(s.pixels())
}

/// Pixel value of a float state element, the runtime's rule applied to `to_state`.
pub fn float_pixel(x: f64, f: u32) -> u8 {
    state_to_pixel(to_state(x, f), f)
}

/// Which engine `sample` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// The int8 runtime (an ONNX model is quantized first).
    Int8,
    /// tract, float.
    Tract,
}

impl Engine {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Int8 => "int8",
            Engine::Tract => "tract",
        }
    }
}

/// `converter sample` options.
#[derive(Clone, Debug)]
pub struct SampleOptions {
    /// Artifact or ONNX path.
    pub input: PathBuf,
    /// Engine; None: int8 for an artifact, tract for an ONNX model.
    pub engine: Option<Engine>,
    /// tract weights precision.
    pub precision: Precision,
    /// Float ONNX for `--engine tract` when `input` is an artifact.
    pub model: Option<PathBuf>,
    /// Sampler configuration (seed of sample 0).
    pub cfg: SamplerConfig,
    /// Number of samples.
    pub count: usize,
    /// PNG grid output.
    pub out: Option<PathBuf>,
    /// Grid scale factor.
    pub scale: usize,
    /// Progress bar.
    pub progress: bool,
    /// Activation precision when an ONNX model is quantized first.
    pub activations: Activations,
}

impl Default for SampleOptions {
    fn default() -> Self {
        SampleOptions {
            input: PathBuf::new(),
            engine: None,
            precision: Precision::F32,
            model: None,
            cfg: default_cfg(),
            count: 1,
            out: None,
            scale: 2,
            progress: true,
            activations: Activations::default(),
        }
    }
}

/// Sets the DDIM steps and η of `cfg` (no change for DDPM).
pub fn finish_cfg(cfg: &mut SamplerConfig, steps: u32, eta: f64) {
    if let Mode::Ddim { .. } = cfg.mode {
        cfg.mode = Mode::Ddim { steps, eta_q16: (eta * 65536.0).round() as u32 };
    }
}

/// A default sampler configuration: DDIM 50 steps, η = 0, σ² = β, no clipping.
pub fn default_cfg() -> SamplerConfig {
    SamplerConfig {
        seed: 0,
        mode: Mode::Ddim { steps: 50, eta_q16: 0 },
        sigma: Sigma::Beta,
        clip_x0: false,
    }
}

/// `converter sample`: prints `digest: <16 hex>` per sample, writes the PNG grid.
///
/// # Errors
/// Any load, sampling or write failure.
pub fn run_sample(s: &SampleOptions) -> Result<()> {
    if s.count == 0 || !(1..=16).contains(&s.scale) {
        bail!("-n must be at least 1, --scale in 1..=16");
    }
    let bytes =
        std::fs::read(&s.input).with_context(|| format!("cannot read {}", s.input.display()))?;
    let artifact = is_artifact(&bytes);
    let engine = s.engine.unwrap_or(if artifact { Engine::Int8 } else { Engine::Tract });
    if engine == Engine::Int8 && s.precision != Precision::F32 {
        bail!("--precision applies to --engine tract only");
    }
    let images: Vec<Vec<u8>>;
    let chw: [usize; 3];
    if engine == Engine::Int8 {
        let art = if artifact {
            bytes
        } else {
            eprintln!("{} is not an artifact: quantizing it first", s.input.display());
            let opts = convert::Options {
                progress: s.progress,
                activations: s.activations,
                ..Default::default()
            };
            convert::convert(&s.input, &opts)?.bytes
        };
        let m = Model::load(&art).map_err(|e| anyhow!("artifact rejected: {e}"))?;
        let [h, w, c] = m.image_shape();
        chw = [c as usize, h as usize, w as usize];
        let per = total_steps(m.timesteps() as usize, &s.cfg) as u64;
        let b = bar(per * s.count as u64, "int8 ", s.progress);
        images = (0..s.count)
            .map(|i| {
                let cfg = SamplerConfig { seed: s.cfg.seed.wrapping_add(i as u64), ..s.cfg };
                let px = sample_int8(&m, cfg, &b)?;
                b.suspend(|| println!("digest: {}", ddpm_runtime::Digest::of(&px)));
                Ok(px)
            })
            .collect::<Result<_>>()?;
        b.finish_and_clear();
    } else {
        let (onnx, sched) = if artifact {
            let m = Model::load(&bytes).map_err(|e| anyhow!("artifact rejected: {e}"))?;
            let p = s.model.clone().unwrap_or_else(|| default_model_path("mnist_unet.onnx"));
            (p, FloatSchedule::from_model(&m))
        } else {
            (s.input.clone(), FloatSchedule::from_schedule(&Schedule::default()))
        };
        let (fm, c) = load_float(&onnx, s.precision)?;
        chw = c;
        let per = total_steps(sched.timesteps, &s.cfg) as u64;
        let b = bar(per * s.count as u64, "tract", s.progress);
        images = (0..s.count)
            .map(|i| {
                let cfg = SamplerConfig { seed: s.cfg.seed.wrapping_add(i as u64), ..s.cfg };
                let px = sample_float(&fm, &sched, chw, cfg, &b)?;
                b.suspend(|| println!("digest: {}", ddpm_runtime::Digest::of(&px)));
                Ok(px)
            })
            .collect::<Result<_>>()?;
        b.finish_and_clear();
    }
    if let Some(out) = &s.out {
        let [c, h, w] = chw;
        png_out::write_grid(out, &images, h, w, c, 8, s.scale)?;
        eprintln!("wrote {} ({} samples, {})", out.display(), images.len(), engine.name());
    }
    Ok(())
}
