//! The `quantize` pipeline: load → lower → verify → calibrate → quantize → plan → write.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::artifact::tensors::{eps_to_f64, to_state};
use crate::artifact::write;
use crate::ingest::float::{self, FloatModel};
use crate::ingest::ir::Graph;
use crate::ingest::{load, lower};
use crate::quantize::calib::{self, Settings, State};
use crate::quantize::precision::{self, Activations};
use crate::quantize::schedule::Schedule;
use crate::quantize::{interp, quant};

/// Options of `converter quantize`.
#[derive(Clone, Debug)]
pub struct Options {
    /// Image shape `[C, H, W]` when the model leaves it dynamic.
    pub input_shape: Option<[usize; 3]>,
    /// Calibration settings.
    pub calib: Settings,
    /// Noise schedule.
    pub schedule: Schedule,
    /// Show progress bars on stderr.
    pub progress: bool,
    /// Activation precision: int16 at the image's resolution (mixed) or int8 only.
    pub activations: Activations,
    /// Correct the output conv's bias by the mean ε error of the quantized network
    /// on the calibration states (see [`output_bias_correction`]).
    pub bias_correction: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            input_shape: None,
            calib: Settings::default(),
            schedule: Schedule::default(),
            progress: false,
            activations: Activations::default(),
            bias_correction: true,
        }
    }
}

/// Everything a conversion produced.
pub struct Converted {
    /// The artifact bytes.
    pub bytes: Vec<u8>,
    /// The lowered float graph (as trained: without the output bias correction).
    pub graph: Graph,
    /// Max |ε_tract − ε_IR| over the verification inputs (printed by the CLI, not
    /// stored in the artifact: it depends on tract's CPU-specific rounding).
    pub lowering_error: f32,
    /// Arena bytes and lower bound.
    pub arena: (usize, usize),
    /// The tract float model.
    pub float: FloatModel,
    /// Image shape `[C, H, W]`.
    pub chw: [usize; 3],
    /// Per tensor: int16 (else int8).
    pub int16: Vec<bool>,
    /// Tensors the policy made int16 but that stayed int8 because a parameter would
    /// not fit at the int16 scale: `(tensor, reason)`.
    pub kept_int8: Vec<(usize, String)>,
}

/// Converts the ONNX model at `path`.
///
/// # Errors
/// Any load, lowering, calibration or format error, with its cause.
pub fn convert(path: &Path, opts: &Options) -> Result<Converted> {
    opts.schedule.validate()?;
    if opts.calib.trajectories == 0 || opts.calib.timesteps == 0 {
        bail!("--calib-trajectories and --calib-timesteps must be at least 1");
    }
    let l = load::load(path, opts.input_shape)?;
    let chw = l.image_chw;
    let tsteps = opts.schedule.timesteps;
    let mut table =
        |o: &[tract_onnx::prelude::OutletId]| float::time_table(&l.model, chw, o, tsteps);
    let graph = lower::lower(&l.model, tsteps, &mut table)?.graph;
    let fm = FloatModel::new(&l.model, chw).context("optimizing the float model")?;
    let lowering_error = verify(&graph, &fm, chw, tsteps)?;
    // Calibrated with the deterministic IR interpreter, not tract: the artifact's
    // bytes must not depend on the host CPU.
    let (states, stats) =
        calib::calibrate(&graph, chw, &opts.schedule, &opts.calib, opts.progress)?;
    let (wide, kept_int8) = match opts.activations {
        Activations::Int8 => (vec![false; graph.tensors.len()], Vec::new()),
        Activations::Mixed => mixed_precision(&graph, chw, &stats, opts.calib.method),
    };
    let q = quant::tensor_params_mixed(&graph, &stats, opts.calib.method, &wide);
    // The graph written: the float graph, with the output bias corrected.
    let mut written = graph.clone();
    let mut correction: Option<Vec<f64>> = None;
    if opts.bias_correction {
        let (first, _) = write::write(&graph, &q, &opts.schedule, "{}")?;
        correction = output_bias_correction(&mut written, &first, &states, chw)?;
    }
    // Only what the same ONNX and flags determine: no timing, host, path or
    // tract-measured value (the caller prints those), so that the bytes are the same
    // on every host (docs/FORMAT.md, "Reproducible artifacts").
    let prov = json!({
        "source_sha256": l.sha256,
        "converter_version": env!("CARGO_PKG_VERSION"),
        "converter": "ddpm-converter",
        "calibration": {
            "trajectories": opts.calib.trajectories,
            "timesteps": opts.calib.timesteps,
            "seed": opts.calib.seed,
            "method": opts.calib.method.name(),
            "activations": opts.activations.name(),
            "int16_tensors": wide.iter().filter(|&&w| w).count(),
            "sampler": "ddim eta=0, x0 clipped to [-1, 1]",
            "output_bias_correction": correction,
        },
        "schedule": {
            "kind": opts.schedule.kind.name(),
            "timesteps": tsteps,
            "beta_start": opts.schedule.beta_start,
            "beta_end": opts.schedule.beta_end,
        },
    });
    let (bytes, summary) = write::write(&written, &q, &opts.schedule, &prov.to_string())?;

    Ok(Converted {
        bytes,
        graph,
        lowering_error,
        arena: (summary.plan.arena_bytes, summary.plan.lower_bound),
        float: fm,
        chw,
        int16: wide,
        kept_int8,
    })
}

/// The int16 tensors of `--activations mixed`: the [`precision`] policy, then any
/// tensor whose int16 scale would overflow an op parameter is kept int8 (and the
/// policy rerun, as that can pull neighbours along).
fn mixed_precision(
    g: &Graph,
    chw: [usize; 3],
    stats: &[calib::TensorStats],
    method: calib::Method,
) -> (Vec<bool>, Vec<(usize, String)>) {
    let hw = chw[1] * chw[2];
    let mut forced = vec![false; g.tensors.len()];
    let mut kept = Vec::new();
    loop {
        let wide = precision::int16_tensors(g, hw, &forced);
        let q = quant::tensor_params_mixed(g, stats, method, &wide);
        let new: Vec<(usize, String)> =
            quant::int16_blockers(g, &q).into_iter().filter(|(t, _)| wide[*t]).collect();
        if new.is_empty() {
            return (wide, kept);
        }
        for (t, why) in new {
            forced[t] = true;
            kept.push((t, why));
        }
    }
}

/// Bias correction of the output conv (the empirical bias correction of Nagel et
/// al., 2019, applied to the last layer): rounding and clipping upstream give the
/// quantized ε a mean offset from float ε (a few 1e-3, about half its RMS error at
/// large t), which the sampler integrates over every step into lighter or darker
/// images. The mean of `ε_float − ε_quantized` per output channel over the
/// calibration states (the same inputs for both, read the way the sampler reads ε)
/// is added to the float bias of the conv producing ε; the caller rewrites the
/// artifact with the same activation parameters. Returns the per-channel
/// corrections, or None when ε is not produced by a conv.
///
/// # Errors
/// If `artifact` does not load or the runtime fails on a calibration state.
pub fn output_bias_correction(
    g: &mut Graph,
    artifact: &[u8],
    states: &[State],
    chw: [usize; 3],
) -> Result<Option<Vec<f64>>> {
    use anyhow::anyhow;
    use ddpm_runtime::{Mode, Model, NoHooks, Sampler, SamplerConfig, Sigma};
    let Some(pi) = g.ops.iter().rposition(|o| o.output == g.output) else {
        return Ok(None);
    };
    if !matches!(g.ops[pi].kind, crate::ingest::ir::OpKind::Conv2d { .. }) || states.is_empty() {
        return Ok(None);
    }
    let [c, h, w] = chw;
    let m = Model::load(artifact).map_err(|e| anyhow!("artifact rejected: {e}"))?;
    let cfg = SamplerConfig {
        seed: 0,
        mode: Mode::Ddim { steps: 1, eta_q16: 0 },
        sigma: Sigma::Beta,
        clip_x0: false,
    };
    let mut arena = vec![0u8; Sampler::arena_bytes(&m)];
    let mut s = Sampler::new(&m, &mut arena, cfg).map_err(|e| anyhow!("sampler: {e}"))?;
    let f = m.state_frac_bits();
    let (mut sum, mut n) = (vec![0f64; c], vec![0usize; c]);
    for st in states {
        let x = interp::nchw_to_nhwc(&st.x, c, h, w);
        let xs: Vec<i32> = x.iter().map(|&v| to_state(v as f64, f)).collect();
        s.set_state(&xs).map_err(|e| anyhow!("{e}"))?;
        let eq = s.predict_eps(st.t as u32, &mut NoHooks).map_err(|e| anyhow!("{e}"))?;
        let eq = eps_to_f64(&m, eq)?;
        let ef = interp::nchw_to_nhwc(&st.eps, c, h, w);
        for (i, (&a, b)) in ef.iter().zip(&eq).enumerate() {
            sum[i % c] += a as f64 - b;
            n[i % c] += 1;
        }
    }
    let d: Vec<f64> = sum.iter().zip(&n).map(|(s, &k)| s / k.max(1) as f64).collect();
    if let crate::ingest::ir::OpKind::Conv2d { bias, .. } = &mut g.ops[pi].kind {
        for (b, dv) in bias.iter_mut().zip(&d) {
            *b += *dv as f32;
        }
    }
    Ok(Some(d))
}

/// Checks the lowered graph against tract on seeded noise at a few timesteps;
/// returns the largest absolute ε difference.
///
/// # Errors
/// When the difference exceeds 1e-3 of ε's magnitude (a lowering bug).
pub fn verify(g: &Graph, fm: &FloatModel, chw: [usize; 3], timesteps: usize) -> Result<f32> {
    let n: usize = chw.iter().product();
    let mut rng = calib::Rng::new(12345);
    let mut worst = 0f32;
    for t in [0, timesteps / 2, timesteps - 1] {
        let x: Vec<f32> = (0..n).map(|_| rng.gauss()).collect();
        let e = fm.eps(&x, t as i64)?;
        let vals = interp::run(g, &interp::nchw_to_nhwc(&x, chw[0], chw[1], chw[2]), t);
        let ei = interp::nhwc_to_nchw(&vals[g.output], chw[0], chw[1], chw[2]);
        let scale = e.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        let d = e.iter().zip(&ei).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        if d.is_nan() || d > 1e-3 * scale {
            bail!("the lowered graph disagrees with tract at t = {t}: max |Δε| = {d} (|ε| up to {scale})");
        }
        worst = worst.max(d);
    }
    Ok(worst)
}

/// Float states for quality checks: one DDIM trajectory from a seed different from
/// calibration's, visiting `steps` timesteps.
///
/// # Errors
/// On a tract failure.
pub fn eval_states(c: &Converted, sched: &Schedule, seed: u64, steps: usize) -> Result<Vec<State>> {
    let s = Settings { trajectories: 1, timesteps: steps, seed, ..Settings::default() };
    calib::trajectories(&c.float, c.chw, sched, &s, false)
}
