//! Quantization: activation (scale, zero point) per tensor, and per-op integer
//! parameters (int8 weights per output channel, int32 biases, TFLite multipliers, LUTs).

use anyhow::{bail, ensure, Result};
use ddpm_runtime::format::{opcode, quantize_multiplier};

use crate::calib::{Method, TensorStats};
use crate::ir::{Graph, Op, OpKind};

/// Affine int8 quantization of one tensor: `real = scale · (q − zero_point)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QParams {
    /// Scale.
    pub scale: f64,
    /// Zero point, −128..=127.
    pub zero_point: i32,
}

impl QParams {
    /// Asymmetric int8 parameters covering `[lo, hi]` (widened to contain 0).
    pub fn from_range(lo: f32, hi: f32) -> QParams {
        let (lo, hi) = (lo.min(0.0) as f64, hi.max(0.0) as f64);
        let scale = ((hi - lo) / 255.0).max(1e-8);
        let zero_point = (-128.0 - lo / scale).round().clamp(-128.0, 127.0) as i32;
        QParams { scale, zero_point }
    }
    /// Quantizes one value.
    pub fn quantize(&self, x: f32) -> i8 {
        (x as f64 / self.scale + self.zero_point as f64).round().clamp(-128.0, 127.0) as i8
    }
    /// Dequantizes one value.
    pub fn dequantize(&self, q: i8) -> f32 {
        ((q as i32 - self.zero_point) as f64 * self.scale) as f32
    }
}

/// Chooses every tensor's quantization from the calibration statistics, applying the
/// op constraints: softmax output is 1/256 with zero point −128, upsample output
/// shares its input's, concat inputs that only feed the concat share its output's.
pub fn tensor_params(g: &Graph, stats: &[TensorStats], method: Method) -> Vec<QParams> {
    let mut q: Vec<QParams> = stats
        .iter()
        .map(|s| {
            let (lo, hi) = s.range(method);
            QParams::from_range(lo, hi)
        })
        .collect();
    let consumers = g.consumers();
    for op in &g.ops {
        match &op.kind {
            OpKind::Softmax { .. } => {
                q[op.output] = QParams { scale: 1.0 / 256.0, zero_point: -128 }
            }
            OpKind::Upsample { .. } => q[op.output] = q[op.inputs[0]],
            OpKind::TimestepEmbed { table, .. } => {
                let lo = table.iter().cloned().fold(0f32, f32::min);
                let hi = table.iter().cloned().fold(0f32, f32::max);
                q[op.output] = QParams::from_range(lo, hi);
            }
            _ => {}
        }
    }
    // Concat: an input read by nothing else takes the output's parameters (a copy).
    for op in &g.ops {
        if let OpKind::Concat = op.kind {
            for &i in &op.inputs {
                if consumers[i].len() == 1 && i != g.input && i != g.output {
                    q[i] = q[op.output];
                }
            }
        }
    }
    // Upsample outputs again (their inputs may have changed above).
    for op in &g.ops {
        if let OpKind::Upsample { .. } = op.kind {
            q[op.output] = q[op.inputs[0]];
        }
    }
    q
}

/// Weight blobs of one op, to be placed in WEIGHTS; params reference them in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Blob {
    /// int8 values.
    I8(Vec<i8>),
    /// int32 values.
    I32(Vec<i32>),
    /// uint32 values.
    U32(Vec<u32>),
}

/// One param word, or a reference to a blob (two words: offset, len).
#[derive(Clone, Debug, PartialEq)]
pub enum Param {
    /// A literal word.
    Word(i32),
    /// A blob.
    Blob(Blob),
}

/// An op ready to write: opcode and params (with blobs).
#[derive(Clone, Debug, PartialEq)]
pub struct QOp {
    /// FORMAT.md opcode.
    pub opcode: u16,
    /// Params in order.
    pub params: Vec<Param>,
}

fn mq(real: f64) -> (i32, i32) {
    quantize_multiplier(real)
}

fn w(v: i32) -> Param {
    Param::Word(v)
}

/// Encodes one op with the tensor parameters `q`.
///
/// # Errors
/// When a value does not fit its integer field (e.g. a group norm ε).
pub fn encode(op: &Op, q: &[QParams]) -> Result<QOp> {
    let qo = q[op.output];
    let qi = |i: usize| q[op.inputs[i]];
    Ok(match &op.kind {
        OpKind::Conv2d { kh, kw, stride, pad, weights, bias } => {
            let oc = bias.len();
            let per = weights.len() / oc;
            let s_in = qi(0).scale;
            let mut wq = Vec::with_capacity(weights.len());
            let (mut bq, mut mm, mut ss) = (Vec::new(), Vec::new(), Vec::new());
            for o in 0..oc {
                let row = &weights[o * per..(o + 1) * per];
                let mx = row.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
                let s_w = if mx > 0.0 { mx / 127.0 } else { 1.0 };
                wq.extend(row.iter().map(|&v| (v as f64 / s_w).round().clamp(-127.0, 127.0) as i8));
                let b = (bias[o] as f64 / (s_in * s_w)).round();
                ensure!(
                    b.abs() < 2e9,
                    "bias of {} channel {o} overflows int32 at scale {}",
                    op.source,
                    s_in * s_w
                );
                bq.push(b as i32);
                let (m, s) = mq(s_in * s_w / qo.scale);
                mm.push(m);
                ss.push(s);
            }
            QOp {
                opcode: opcode::CONV2D,
                params: vec![
                    w(*kh as i32),
                    w(*kw as i32),
                    w(stride[0] as i32),
                    w(stride[1] as i32),
                    w(pad[0] as i32),
                    w(pad[1] as i32),
                    w(pad[2] as i32),
                    w(pad[3] as i32),
                    w(qi(0).zero_point),
                    w(qo.zero_point),
                    w(-128),
                    w(127),
                    Param::Blob(Blob::I8(wq)),
                    Param::Blob(Blob::I32(bq)),
                    Param::Blob(Blob::I32(mm)),
                    Param::Blob(Blob::I32(ss)),
                ],
            }
        }
        OpKind::GroupNorm { groups, eps, gamma, beta } => {
            let s_in = qi(0).scale;
            let eps_q = (*eps as f64 / (s_in * s_in) * 4294967296.0).round();
            ensure!(
                eps_q < (1u64 << 56) as f64,
                "group-norm ε too large for the input scale in {}",
                op.source
            );
            let eps_q = eps_q as u64;
            let (mut mm, mut ss, mut bb) = (Vec::new(), Vec::new(), Vec::new());
            for (&gm, &bt) in gamma.iter().zip(beta) {
                let (m, s) = mq(gm as f64 / (qo.scale * 65536.0));
                mm.push(m);
                ss.push(s);
                bb.push((bt as f64 / qo.scale).round().clamp(-1e9, 1e9) as i32);
            }
            QOp {
                opcode: opcode::GROUP_NORM,
                params: vec![
                    w(*groups as i32),
                    w(qi(0).zero_point),
                    w(qo.zero_point),
                    w(eps_q as u32 as i32),
                    w((eps_q >> 32) as u32 as i32),
                    Param::Blob(Blob::I32(mm)),
                    Param::Blob(Blob::I32(ss)),
                    Param::Blob(Blob::I32(bb)),
                ],
            }
        }
        OpKind::Lut(f) => {
            let table =
                (-128i32..128).map(|qv| qo.quantize(f.eval(qi(0).dequantize(qv as i8)))).collect();
            QOp { opcode: opcode::LUT, params: vec![Param::Blob(Blob::I8(table))] }
        }
        OpKind::Add { broadcast } => {
            let (sa, sb) = (qi(0).scale, qi(1).scale);
            let left = 20;
            let twice = 2.0 * sa.max(sb);
            let (am, ash) = mq(sa / twice);
            let (bm, bsh) = mq(sb / twice);
            let (om, osh) = mq(twice / ((1u64 << left) as f64 * qo.scale));
            QOp {
                opcode: opcode::ADD,
                params: vec![
                    w(*broadcast as i32),
                    w(qi(0).zero_point),
                    w(qi(1).zero_point),
                    w(qo.zero_point),
                    w(left),
                    w(am),
                    w(ash),
                    w(bm),
                    w(bsh),
                    w(om),
                    w(osh),
                    w(-128),
                    w(127),
                ],
            }
        }
        OpKind::Mul { broadcast } => {
            let (m, s) = mq(qi(0).scale * qi(1).scale / qo.scale);
            QOp {
                opcode: opcode::MUL,
                params: vec![
                    w(*broadcast as i32),
                    w(qi(0).zero_point),
                    w(qi(1).zero_point),
                    w(qo.zero_point),
                    w(m),
                    w(s),
                    w(-128),
                    w(127),
                ],
            }
        }
        OpKind::Concat => {
            let mut params = vec![w(qo.zero_point)];
            for i in 0..op.inputs.len() {
                let r = qi(i).scale / qo.scale;
                let (m, s) = if (r - 1.0).abs() < 1e-9 { (0, 0) } else { mq(r) };
                params.extend([w(qi(i).zero_point), w(m), w(s)]);
            }
            QOp { opcode: opcode::CONCAT, params }
        }
        OpKind::Upsample { factor } => QOp {
            opcode: opcode::UPSAMPLE_NEAREST,
            params: vec![w(factor[0] as i32), w(factor[1] as i32)],
        },
        OpKind::MatMul { batch, m, k, n, a, b, y, alpha } => {
            let (mm, s) = mq(qi(0).scale * qi(1).scale * *alpha as f64 / qo.scale);
            let v = |x: usize| w(x as i32);
            QOp {
                opcode: opcode::MATMUL,
                params: vec![
                    v(*batch),
                    v(*m),
                    v(*k),
                    v(*n),
                    w(qi(0).zero_point),
                    w(qi(1).zero_point),
                    w(qo.zero_point),
                    w(mm),
                    w(s),
                    w(-128),
                    w(127),
                    v(a.b),
                    v(a.i),
                    v(a.j),
                    v(b.b),
                    v(b.i),
                    v(b.j),
                    v(y.b),
                    v(y.i),
                    v(y.j),
                ],
            }
        }
        OpKind::Softmax { rows, len } => {
            let s_in = qi(0).scale;
            let table =
                (0..256).map(|d| ((-s_in * d as f64).exp() * 65536.0).round() as u32).collect();
            QOp {
                opcode: opcode::SOFTMAX,
                params: vec![w(*rows as i32), w(*len as i32), Param::Blob(Blob::U32(table))],
            }
        }
        OpKind::TimestepEmbed { timesteps, dim, table } => {
            let tq = table.iter().map(|&v| qo.quantize(v)).collect();
            QOp {
                opcode: opcode::TIMESTEP_EMBED,
                params: vec![w(*timesteps as i32), w(*dim as i32), Param::Blob(Blob::I8(tq))],
            }
        }
        OpKind::Scale { alpha } => {
            let (m, s) = mq(qi(0).scale * *alpha as f64 / qo.scale);
            QOp {
                opcode: opcode::REQUANT,
                params: vec![w(qi(0).zero_point), w(qo.zero_point), w(m), w(s)],
            }
        }
    })
}

/// Checks that `g` fits the artifact's integer fields.
///
/// # Errors
/// Too many tensors/ops, or a dimension above u16.
pub fn check_limits(g: &Graph) -> Result<()> {
    if g.tensors.len() > 1024 || g.ops.len() > 1024 {
        bail!("{} tensors / {} ops exceed the format's 1024", g.tensors.len(), g.ops.len());
    }
    for t in &g.tensors {
        if t.h > 65535 || t.w > 65535 || t.c > 65535 {
            bail!("tensor {} of shape {:?} exceeds u16 dimensions", t.name, t.shape());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_contains_zero_and_roundtrips() {
        let q = QParams::from_range(0.5, 2.0);
        assert_eq!(q.quantize(0.0) as i32, q.zero_point);
        assert!((q.dequantize(q.quantize(1.3)) - 1.3).abs() <= q.scale as f32 / 2.0 + 1e-6);
        let q = QParams::from_range(-1.0, 1.0);
        assert_eq!(q.quantize(-1.0), -128);
        assert_eq!(q.quantize(1.0), 127);
    }
}
