//! Quantization: activation (scale, zero point) per tensor, and per-op integer
//! parameters (int8 weights per output channel, int32 biases, TFLite multipliers, LUTs).

use anyhow::{bail, ensure, Result};
use ddpm_runtime::format::{opcode, quantize_multiplier, CONV_I16_MAX_K, LUT16_ENTRIES};

use crate::ingest::ir::{Graph, Op, OpKind};
use crate::quantize::calib::{Method, TensorStats};

/// Affine quantization of one tensor: `real = scale · (q − zero_point)`, with `q`
/// an int8 (`bits` 8) or an int16 (`bits` 16, symmetric: zero point 0).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QParams {
    /// Scale.
    pub scale: f64,
    /// Zero point, −128..=127 (0 for int16).
    pub zero_point: i32,
    /// Element width in bits: 8 or 16.
    pub bits: u8,
}

impl QParams {
    /// int8 parameters with the given scale and zero point.
    pub fn int8(scale: f64, zero_point: i32) -> QParams {
        QParams { scale, zero_point, bits: 8 }
    }
    /// Asymmetric int8 parameters covering `[lo, hi]` (widened to contain 0).
    pub fn from_range(lo: f32, hi: f32) -> QParams {
        let (lo, hi) = (lo.min(0.0) as f64, hi.max(0.0) as f64);
        let scale = ((hi - lo) / 255.0).max(1e-8);
        let zero_point = (-128.0 - lo / scale).round().clamp(-128.0, 127.0) as i32;
        QParams::int8(scale, zero_point)
    }
    /// Symmetric int16 parameters covering `[lo, hi]`: scale `max(|lo|, |hi|) / 32767`,
    /// zero point 0.
    pub fn from_range_i16(lo: f32, hi: f32) -> QParams {
        let m = (lo as f64).abs().max((hi as f64).abs());
        QParams { scale: (m / 32767.0).max(1e-8 / 256.0), zero_point: 0, bits: 16 }
    }
    /// True for int16.
    pub fn is_i16(&self) -> bool {
        self.bits == 16
    }
    /// Smallest value of the element type.
    pub fn qmin(&self) -> i32 {
        if self.is_i16() {
            i16::MIN as i32
        } else {
            i8::MIN as i32
        }
    }
    /// Largest value of the element type.
    pub fn qmax(&self) -> i32 {
        if self.is_i16() {
            i16::MAX as i32
        } else {
            i8::MAX as i32
        }
    }
    /// Quantizes one value, clamped to the element type's range.
    pub fn quantize(&self, x: f32) -> i32 {
        (x as f64 / self.scale + self.zero_point as f64)
            .round()
            .clamp(self.qmin() as f64, self.qmax() as f64) as i32
    }
    /// Quantizes one value of an int8 tensor.
    pub fn quantize_i8(&self, x: f32) -> i8 {
        debug_assert!(!self.is_i16());
        self.quantize(x).clamp(-128, 127) as i8
    }
    /// Dequantizes one value.
    pub fn dequantize(&self, q: i32) -> f32 {
        ((q - self.zero_point) as f64 * self.scale) as f32
    }
}

/// Chooses every tensor's quantization from the calibration statistics, all int8
/// (see [`tensor_params_mixed`]).
pub fn tensor_params(g: &Graph, stats: &[TensorStats], method: Method) -> Vec<QParams> {
    tensor_params_mixed(g, stats, method, &vec![false; g.tensors.len()])
}

/// Chooses every tensor's quantization from the calibration statistics: int16 (the
/// min/max range, symmetric) where `wide` says so, int8 (the range of `method`)
/// elsewhere, applying the op constraints: softmax output is 1/256 with zero point
/// −128, upsample output shares its input's, concat inputs that only feed the concat
/// share its output's when both have the same element type.
pub fn tensor_params_mixed(
    g: &Graph,
    stats: &[TensorStats],
    method: Method,
    wide: &[bool],
) -> Vec<QParams> {
    let mut q: Vec<QParams> = stats
        .iter()
        .zip(wide)
        .map(|(s, &w)| {
            if w {
                let (lo, hi) = s.range(Method::MinMax);
                QParams::from_range_i16(lo, hi)
            } else {
                let (lo, hi) = s.range(method);
                QParams::from_range(lo, hi)
            }
        })
        .collect();
    let consumers = g.consumers();
    for op in &g.ops {
        match &op.kind {
            OpKind::Softmax { .. } => q[op.output] = QParams::int8(1.0 / 256.0, -128),
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
                if consumers[i].len() == 1
                    && i != g.input
                    && i != g.output
                    && q[i].bits == q[op.output].bits
                {
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

/// Tensors that the precision policy would make int16 but whose parameters would
/// not fit an op's integer fields at the int16 scale `q16` (a group norm's
/// `eps_q32` over 2^56, a convolution bias over int32), with the reason.
pub fn int16_blockers(g: &Graph, q16: &[QParams]) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for op in &g.ops {
        match &op.kind {
            OpKind::GroupNorm { eps, .. } => {
                let x = op.inputs[0];
                let s = q16[x].scale;
                let e = (*eps as f64 / (s * s) * 4294967296.0).round();
                if e > (1u64 << 56) as f64 {
                    out.push((
                        x,
                        format!("group-norm ε of {} over 2^56 at int16 scale", op.source),
                    ));
                }
            }
            OpKind::Conv2d { weights, bias, .. } => {
                let x = op.inputs[0];
                let per = weights.len() / bias.len().max(1);
                for (o, b) in bias.iter().enumerate() {
                    let row = &weights[o * per..(o + 1) * per];
                    let mx = row.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
                    let s_w = if mx > 0.0 { mx / 127.0 } else { 1.0 };
                    if (*b as f64 / (q16[x].scale * s_w)).round().abs() >= 2e9 {
                        out.push((x, format!("bias of {} over int32 at int16 scale", op.source)));
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Weight blobs of one op, to be placed in WEIGHTS; params reference them in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Blob {
    /// int8 values.
    I8(Vec<i8>),
    /// int16 values (LUT16 tables).
    I16(Vec<i16>),
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
    let any16 = qo.is_i16() || op.inputs.iter().any(|&t| q[t].is_i16());
    if any16 {
        match &op.kind {
            OpKind::Mul { .. }
            | OpKind::MatMul { .. }
            | OpKind::Softmax { .. }
            | OpKind::TimestepEmbed { .. } => {
                bail!("{} of {} has an int16 tensor (int8 only)", op.kind.name(), op.source)
            }
            OpKind::Conv2d { weights, bias, .. } => {
                let k = weights.len() / bias.len().max(1);
                ensure!(
                    !qi(0).is_i16() || k <= CONV_I16_MAX_K,
                    "conv {} reads an int16 input with a window of {k} > {CONV_I16_MAX_K}",
                    op.source
                );
            }
            OpKind::Lut(_) | OpKind::Upsample { .. } => ensure!(
                qi(0).bits == qo.bits,
                "{} of {} changes the element type",
                op.kind.name(),
                op.source
            ),
            _ => {}
        }
    }
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
                    w(qo.qmin()),
                    w(qo.qmax()),
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
        OpKind::Lut(f) if qi(0).is_i16() => {
            // Knot j at q = j·128 − 32768; the last one (q = 32768) is the end point the
            // interpolation reaches above q = 32640.
            let table = (0..LUT16_ENTRIES as i32)
                .map(|j| qo.quantize(f.eval(qi(0).dequantize(j * 128 - 32768))) as i16)
                .collect();
            QOp { opcode: opcode::LUT16, params: vec![Param::Blob(Blob::I16(table))] }
        }
        OpKind::Lut(f) => {
            let table =
                (-128i32..128).map(|qv| qo.quantize_i8(f.eval(qi(0).dequantize(qv)))).collect();
            QOp { opcode: opcode::LUT, params: vec![Param::Blob(Blob::I8(table))] }
        }
        OpKind::Add { broadcast } => {
            let (sa, sb) = (qi(0).scale, qi(1).scale);
            // An int16 operand shifted by 20 would overflow i32: 15 then.
            let left = if qi(0).is_i16() || qi(1).is_i16() { 15 } else { 20 };
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
                    w(qo.qmin()),
                    w(qo.qmax()),
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
                let copy = (r - 1.0).abs() < 1e-9 && qi(i).bits == qo.bits;
                let (m, s) = if copy { (0, 0) } else { mq(r) };
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
                (0..256).map(|d| (libm::exp(-s_in * d as f64) * 65536.0).round() as u32).collect();
            QOp {
                opcode: opcode::SOFTMAX,
                params: vec![w(*rows as i32), w(*len as i32), Param::Blob(Blob::U32(table))],
            }
        }
        OpKind::TimestepEmbed { timesteps, dim, table } => {
            let tq = table.iter().map(|&v| qo.quantize_i8(v)).collect();
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
        assert_eq!(q.quantize(0.0), q.zero_point);
        assert!((q.dequantize(q.quantize(1.3)) - 1.3).abs() <= q.scale as f32 / 2.0 + 1e-6);
        let q = QParams::from_range(-1.0, 1.0);
        assert_eq!(q.quantize(-1.0), -128);
        assert_eq!(q.quantize(1.0), 127);
    }

    #[test]
    fn int16_is_symmetric_and_clamps() {
        let q = QParams::from_range_i16(-0.5, 2.0);
        assert_eq!((q.zero_point, q.bits, q.qmin(), q.qmax()), (0, 16, -32768, 32767));
        assert_eq!(q.quantize(2.0), 32767);
        assert_eq!(q.quantize(-2.0), -32767);
        assert_eq!(q.quantize(5.0), 32767);
        assert!((q.dequantize(q.quantize(1.3)) - 1.3).abs() <= q.scale as f32 / 2.0 + 1e-6);
        assert!(QParams::from_range_i16(0.0, 0.0).scale > 0.0);
    }

    fn op(kind: OpKind, n_in: usize) -> Op {
        Op { kind, inputs: (0..n_in).collect(), output: n_in, source: "t".into() }
    }

    fn word(p: &Param) -> i32 {
        match p {
            Param::Word(v) => *v,
            Param::Blob(_) => panic!("blob"),
        }
    }

    #[test]
    fn lut16_table_interpolates_the_function() {
        let q16 = QParams::from_range_i16(-8.0, 8.0);
        let qo = QParams::from_range_i16(-0.3, 8.0);
        let e = encode(&op(OpKind::Lut(crate::ingest::ir::LutFn::Silu), 1), &[q16, qo]).unwrap();
        assert_eq!(e.opcode, opcode::LUT16);
        let Param::Blob(Blob::I16(t)) = &e.params[0] else { panic!("no table") };
        assert_eq!(t.len(), LUT16_ENTRIES);
        assert_eq!(t[256], 0); // q = 0 → silu(0) = 0
                               // q = 32768 is 8.0002: silu ≈ 7.9976, i.e. 32757 at 8 / 32767 per step.
        assert_eq!(t[512], 32757);
        // The runtime's interpolation at an arbitrary q against the function.
        let q: i32 = 12345;
        let u = (q + 32768) as usize;
        let (i, f) = (u >> 7, (u & 127) as i32);
        let y = t[i] as i32 + (((t[i + 1] as i32 - t[i] as i32) * f + 64) >> 7);
        let want = crate::ingest::ir::LutFn::Silu.eval(q16.dequantize(q));
        assert!((qo.dequantize(y) - want).abs() < 2e-3, "{} vs {want}", qo.dequantize(y));
        // int8 → int8 keeps the 256-entry table.
        let q8 = QParams::from_range(-8.0, 8.0);
        let e = encode(&op(OpKind::Lut(crate::ingest::ir::LutFn::Silu), 1), &[q8, q8]).unwrap();
        assert_eq!(e.opcode, opcode::LUT);
        // A LUT may not change the element type.
        assert!(encode(&op(OpKind::Lut(crate::ingest::ir::LutFn::Silu), 1), &[q16, q8]).is_err());
    }

    #[test]
    fn add_and_conv_with_int16() {
        let q16 = QParams::from_range_i16(-4.0, 4.0);
        let q8 = QParams::from_range(-1.0, 3.0);
        let e = encode(&op(OpKind::Add { broadcast: true }, 2), &[q16, q8, q16]).unwrap();
        let p: Vec<i32> = e.params.iter().map(word).collect();
        assert_eq!((p[1], p[2], p[3], p[4]), (0, q8.zero_point, 0, 15));
        assert_eq!((p[11], p[12]), (-32768, 32767));
        let e = encode(&op(OpKind::Add { broadcast: false }, 2), &[q8, q8, q8]).unwrap();
        assert_eq!(word(&e.params[4]), 20);
        let conv = |ic: usize| OpKind::Conv2d {
            kh: 3,
            kw: 3,
            stride: [1, 1],
            pad: [1; 4],
            weights: vec![0.05; 9 * ic * 2],
            bias: vec![0.1, -0.2],
        };
        let e = encode(&op(conv(32), 1), &[q16, q8]).unwrap();
        let p: Vec<i32> = e.params[..12].iter().map(word).collect();
        assert_eq!(&p[8..12], &[0, q8.zero_point, -128, 127]);
        let e = encode(&op(conv(32), 1), &[q8, q16]).unwrap();
        let p: Vec<i32> = e.params[..12].iter().map(word).collect();
        assert_eq!(&p[8..12], &[q8.zero_point, 0, -32768, 32767]);
        // 3·3·64 = 576 > 511: an int16 input is refused.
        assert!(encode(&op(conv(64), 1), &[q16, q8]).is_err());
        // int8-only ops refuse int16.
        assert!(encode(&op(OpKind::Mul { broadcast: false }, 2), &[q16, q8, q8]).is_err());
    }

    #[test]
    fn concat_copies_only_between_equal_types() {
        let q16 = QParams::from_range_i16(-4.0, 4.0);
        let q8 = QParams::int8(q16.scale, 0);
        let e = encode(&op(OpKind::Concat, 2), &[q16, q8, q16]).unwrap();
        let p: Vec<i32> = e.params.iter().map(word).collect();
        assert_eq!(p[2], 0); // input 0: same scale and type → copy
        assert_ne!(p[5], 0); // input 1: same scale, int8 → requantized
    }
}
