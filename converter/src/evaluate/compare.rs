//! int8 (runtime) against float (tract): ε SQNR per timestep, per-tensor SQNR.

use std::path::PathBuf;

use anyhow::{anyhow, ensure, Context, Result};
use ddpm_runtime::format::multiply_by_quantized_multiplier;
use ddpm_runtime::{Model, NoHooks, TensorInfo};

use crate::artifact::tensors::is_int16;
use crate::artifact::write;
use crate::ingest::float::{self, FloatModel};
use crate::ingest::ir::Graph;
use crate::ingest::{load, lower};
use crate::quantize::calib::{self, Settings, State};
use crate::quantize::interp;
use crate::quantize::quant::QParams;
use crate::quantize::schedule::Schedule;

/// SQNR in dB of `approx` against `reference`.
pub fn sqnr_db(reference: &[f32], approx: &[f32]) -> f64 {
    let sig: f64 = reference.iter().map(|&v| (v as f64).powi(2)).sum();
    let err: f64 = reference.iter().zip(approx).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum();
    if err == 0.0 {
        return f64::INFINITY;
    }
    10.0 * (sig / err).log10()
}

/// The raw bytes of tensor `t` inside `arena`.
fn tensor_bytes<'b>(arena: &'b [u8], t: &TensorInfo) -> Result<&'b [u8]> {
    let (a, b) = (t.arena_offset as usize, t.arena_offset as usize + t.size as usize);
    arena.get(a..b).ok_or_else(|| anyhow!("tensor outside the arena ({b} > {})", arena.len()))
}

/// Runs the runtime's int8 network on `x` (NCHW f32) at `t`, feeding the input the way
/// the sampler does (Q24 state → input multiplier); returns the arena.
///
/// # Errors
/// When the runtime rejects the artifact or the run.
pub fn run_int8(m: &Model<'_>, x: &[f32], t: usize) -> Result<Vec<u8>> {
    let mut arena = vec![0u8; m.arena_bytes() as usize];
    let [h, w, c] = m.image_shape();
    let (h, w, c) = (h as usize, w as usize, c as usize);
    let inp = m.tensor_info(m.input_tensor()).map_err(|e| anyhow!("{e}"))?;
    let (mult, shift) = m.input_requant();
    let xs = interp::nchw_to_nhwc(x, c, h, w);
    let wide = is_int16(&inp);
    let (lo, hi) = if wide { (-32768, 32767) } else { (-128, 127) };
    let q: Vec<i32> = xs
        .iter()
        .map(|&v| {
            let state = (v as f64 * (1u64 << m.state_frac_bits()) as f64).round() as i32;
            (inp.zero_point + multiply_by_quantized_multiplier(state, mult, shift)).clamp(lo, hi)
        })
        .collect();
    let at = inp.arena_offset as usize;
    let dst = arena
        .get_mut(at..at + inp.size as usize)
        .ok_or_else(|| anyhow!("input tensor outside the arena"))?;
    if wide {
        for (d, v) in dst.chunks_exact_mut(2).zip(&q) {
            d.copy_from_slice(&(*v as i16).to_le_bytes());
        }
    } else {
        for (d, v) in dst.iter_mut().zip(&q) {
            *d = *v as i8 as u8;
        }
    }
    m.forward(&mut arena, t as u32, &mut NoHooks).map_err(|e| anyhow!("{e}"))?;
    Ok(arena)
}

/// Dequantized values of tensor `id`, NHWC.
///
/// # Errors
/// When the tensor id is invalid.
pub fn tensor_f32(m: &Model<'_>, arena: &[u8], id: u16) -> Result<Vec<f32>> {
    let info = m.tensor_info(id).map_err(|e| anyhow!("{e}"))?;
    let b = tensor_bytes(arena, &info)?;
    let deq = |v: i32| (v - info.zero_point) as f32 * info.scale;
    Ok(if is_int16(&info) {
        b.chunks_exact(2).map(|p| deq(i16::from_le_bytes([p[0], p[1]]) as i32)).collect()
    } else {
        b.iter().map(|&v| deq(v as i8 as i32)).collect()
    })
}

/// ε SQNR (dB) of the int8 artifact against tract's float ε, one entry per state:
/// `(t, sqnr)`.
///
/// # Errors
/// When the artifact does not load or run.
pub fn eps_sqnr(artifact: &[u8], states: &[State]) -> Result<Vec<(usize, f64)>> {
    let m = Model::load(artifact).map_err(|e| anyhow!("artifact rejected: {e}"))?;
    let [h, w, c] = m.image_shape();
    let (h, w, c) = (h as usize, w as usize, c as usize);
    let mut out = Vec::new();
    for s in states {
        let arena = run_int8(&m, &s.x, s.t)?;
        let e = tensor_f32(&m, &arena, m.output_tensor())?;
        let e = interp::nhwc_to_nchw(&e, c, h, w);
        out.push((s.t, sqnr_db(&s.eps, &e)));
    }
    Ok(out)
}

/// Per-tensor SQNR (dB), accumulated in the power domain over `states`, of the int8
/// tensors against the float IR interpreter. `artifact` must be written without
/// arena reuse ([`crate::artifact::write::write_with`]) so every tensor survives the pass.
///
/// # Errors
/// When the artifact does not load or run.
pub fn tensor_sqnr(artifact: &[u8], g: &Graph, states: &[State]) -> Result<Vec<f64>> {
    let m = Model::load(artifact).map_err(|e| anyhow!("artifact rejected: {e}"))?;
    let [h, w, c] = m.image_shape();
    let (h, w, c) = (h as usize, w as usize, c as usize);
    let mut sig = vec![0f64; g.tensors.len()];
    let mut err = vec![0f64; g.tensors.len()];
    for s in states {
        let arena = run_int8(&m, &s.x, s.t)?;
        let vals = interp::run(g, &interp::nchw_to_nhwc(&s.x, c, h, w), s.t);
        for (i, v) in vals.iter().enumerate() {
            let q = tensor_f32(&m, &arena, i as u16)?;
            sig[i] += v.iter().map(|&a| (a as f64).powi(2)).sum::<f64>();
            err[i] += v.iter().zip(&q).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum::<f64>();
        }
    }
    Ok(sig
        .iter()
        .zip(&err)
        .map(|(s, e)| if *e == 0.0 { f64::INFINITY } else { 10.0 * (s / e).log10() })
        .collect())
}

/// Tensor quantization parameters as recorded in an artifact (ids as in the IR).
///
/// # Errors
/// When the artifact does not load or its tensor count differs from `g`'s.
pub fn artifact_qparams(artifact: &[u8], g: &Graph) -> Result<Vec<QParams>> {
    let m = Model::load(artifact).map_err(|e| anyhow!("artifact rejected: {e}"))?;
    ensure!(
        m.tensor_count() as usize == g.tensors.len(),
        "artifact and model have different tensor counts"
    );
    (0..m.tensor_count())
        .map(|i| {
            let t = m.tensor_info(i).map_err(|e| anyhow!("{e}"))?;
            Ok(QParams {
                scale: t.scale as f64,
                zero_point: t.zero_point,
                bits: if is_int16(&t) { 16 } else { 8 },
            })
        })
        .collect()
}

/// Median and minimum of the SQNR values.
pub fn median_worst(v: &[(usize, f64)]) -> (f64, f64) {
    let mut s: Vec<f64> = v.iter().map(|x| x.1).collect();
    s.sort_by(|a, b| a.total_cmp(b));
    if s.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let med =
        if s.len() % 2 == 1 { s[s.len() / 2] } else { (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0 };
    (med, s[0])
}

/// `converter compare --per-tensor` options.
#[derive(Clone, Debug)]
pub struct PerTensorOptions {
    /// The artifact.
    pub artifact: PathBuf,
    /// Its float ONNX model.
    pub model: PathBuf,
    /// Image shape `[C, H, W]` when the model leaves it dynamic.
    pub input_shape: Option<[usize; 3]>,
    /// Timesteps of the float DDIM trajectory.
    pub steps: usize,
    /// Seed of the trajectory.
    pub seed: u64,
    /// Only timesteps `t >= min_t`.
    pub min_t: usize,
}

impl Default for PerTensorOptions {
    fn default() -> Self {
        PerTensorOptions {
            artifact: PathBuf::new(),
            model: PathBuf::new(),
            input_shape: None,
            steps: 25,
            seed: 1,
            min_t: 0,
        }
    }
}

/// `converter compare --per-tensor`: ε SQNR per timestep along one float trajectory,
/// then the SQNR of every tensor (the artifact's quantization parameters applied to
/// the graph lowered again from the ONNX model, written without arena reuse).
///
/// # Errors
/// Load, lowering, runtime or tract failures.
pub fn run_per_tensor(o: &PerTensorOptions) -> Result<()> {
    let bytes = std::fs::read(&o.artifact)
        .with_context(|| format!("cannot read {}", o.artifact.display()))?;
    let model = Model::load(&bytes)
        .map_err(|e| anyhow!("{}: not a valid artifact: {e}", o.artifact.display()))?;
    let sched = Schedule { timesteps: model.timesteps() as usize, ..Schedule::default() };
    // The float model and graph are rebuilt from the ONNX (no calibration needed).
    let l = load::load(&o.model, o.input_shape)?;
    let chw = l.image_chw;
    let fm = FloatModel::new(&l.model, chw)?;
    let s = Settings { trajectories: 1, timesteps: o.steps, seed: o.seed, ..Settings::default() };
    let states: Vec<_> = calib::trajectories(&fm, chw, &sched, &s, false)?
        .into_iter()
        .filter(|s| s.t >= o.min_t)
        .collect();
    let r = eps_sqnr(&bytes, &states)?;
    for (t, db) in &r {
        println!("t={t:4} eps SQNR {db:6.2} dB");
    }
    let (med, worst) = median_worst(&r);
    println!("median {med:.2} dB, worst {worst:.2} dB over {} timesteps", r.len());
    let mut table = |outlets: &[tract_onnx::prelude::OutletId]| {
        float::time_table(&l.model, chw, outlets, sched.timesteps)
    };
    let g = lower::lower(&l.model, sched.timesteps, &mut table)?.graph;
    let q = artifact_qparams(&bytes, &g)?;
    let (debug, _) = write::write_with(&g, &q, &sched, "{}", false)?;
    let per = tensor_sqnr(&debug, &g, &states)?;
    let producers = g.producers();
    for (i, db) in per.iter().enumerate() {
        let op = producers[i].map(|p| g.ops[p].kind.name()).unwrap_or("input");
        println!("tensor {i:3} {op:16} {:40} {db:6.2} dB", g.tensors[i].name);
    }
    Ok(())
}
