//! How the runtime holds an artifact's tensors and state, for code that runs an
//! artifact next to the float model: the element type of a tensor, the sampler's
//! fixed-point state, and ε read the way the sampler reads it.

use anyhow::{anyhow, Result};
use ddpm_runtime::{Model, TensorInfo, TensorView};

/// Magic bytes that start every artifact.
pub const ARTIFACT_MAGIC: &[u8; 8] = b"DDPMEDGE";

/// True when `bytes` look like an artifact (rather than an ONNX protobuf).
pub fn is_artifact(bytes: &[u8]) -> bool {
    bytes.starts_with(ARTIFACT_MAGIC)
}

/// True when an artifact tensor holds int16 elements (its size is two bytes per
/// element; FORMAT.md's `TENSOR_INT16`).
pub fn is_int16(t: &TensorInfo) -> bool {
    t.size as u64 == 2 * t.h as u64 * t.w as u64 * t.c as u64
}

/// The int8 engine's state value for a float x (Q`f`, rounded, saturated).
pub fn to_state(x: f64, f: u32) -> i32 {
    (x * (1u64 << f) as f64).round().clamp(i32::MIN as f64, i32::MAX as f64) as i32
}

/// The int8 engine's ε as float, exactly as the sampler reads it
/// (`((q − zp)·m + 2^15) >> 16` in Q`F`).
///
/// # Errors
/// When the artifact's output tensor cannot be read.
pub fn eps_to_f64(m: &Model<'_>, q: TensorView<'_>) -> Result<Vec<f64>> {
    let zp = m.tensor_info(m.output_tensor()).map_err(|e| anyhow!("{e}"))?.zero_point as i64;
    let mul = m.eps_to_state_q16();
    let s = 2f64.powi(-(m.state_frac_bits() as i32));
    Ok(q.iter().map(|v| (((v as i64 - zp) * mul + (1 << 15)) >> 16) as f64 * s).collect())
}
