//! int8 (runtime) against float (tract): ε SQNR per timestep, per-tensor SQNR.

use anyhow::{anyhow, ensure, Result};
use ddpm_runtime::format::multiply_by_quantized_multiplier;
use ddpm_runtime::{Model, NoHooks};

use crate::calib::State;
use crate::interp;
use crate::ir::Graph;
use crate::quant::QParams;

/// SQNR in dB of `approx` against `reference`.
pub fn sqnr_db(reference: &[f32], approx: &[f32]) -> f64 {
    let sig: f64 = reference.iter().map(|&v| (v as f64).powi(2)).sum();
    let err: f64 = reference.iter().zip(approx).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum();
    if err == 0.0 {
        return f64::INFINITY;
    }
    10.0 * (sig / err).log10()
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
    {
        let q = m.tensor_mut(&mut arena, m.input_tensor()).map_err(|e| anyhow!("{e}"))?;
        for (qv, &v) in q.iter_mut().zip(&xs) {
            let state = (v as f64 * (1u64 << m.state_frac_bits()) as f64).round() as i32;
            *qv = (inp.zero_point + multiply_by_quantized_multiplier(state, mult, shift))
                .clamp(-128, 127) as i8;
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
    let q = m.tensor(arena, id).map_err(|e| anyhow!("{e}"))?;
    Ok(q.iter().map(|&v| (v as i32 - info.zero_point) as f32 * info.scale).collect())
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
/// arena reuse ([`crate::write::write_with`]) so every tensor survives the pass.
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
            Ok(QParams { scale: t.scale as f64, zero_point: t.zero_point })
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
