//! Activation precision policy ("16x8"): which tensors are int16 (weights stay int8).
//!
//! A tensor is int16 iff it is at the image's resolution (`h·w ≥` the image's) and
//! every op touching it (its producer and its consumers) allows an int16 tensor
//! there (FORMAT.md): MUL, MATMUL, SOFTMAX and TIMESTEP_EMBED are int8 only; a LUT
//! and an UPSAMPLE_NEAREST keep their input's element type; a CONV2D reads an int16
//! input only for a window `kh·kw·ic ≤ 511`. The network's input x_t and output ε
//! follow the same rule (the sampler reads either type). Dropping one tensor to int8 can force a neighbour through
//! a LUT or an upsample, so the rules are applied until nothing changes.

use anyhow::{bail, Result};
use ddpm_runtime::format::CONV_I16_MAX_K;

use crate::ingest::ir::{Graph, OpKind};

/// `converter quantize --activations`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Activations {
    /// int16 activations at the image's resolution where the ops allow, int8 elsewhere.
    #[default]
    Mixed,
    /// int8 everywhere.
    Int8,
}

impl Activations {
    /// Parses `mixed|int8`.
    ///
    /// # Errors
    /// Any other name.
    pub fn parse(s: &str) -> Result<Activations> {
        Ok(match s {
            "mixed" => Activations::Mixed,
            "int8" => Activations::Int8,
            _ => bail!("unknown --activations {s:?}; expected mixed or int8"),
        })
    }
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Activations::Mixed => "mixed",
            Activations::Int8 => "int8",
        }
    }
}

/// Per tensor: true for int16. `image_hw` is the image's `h·w`; `forced_int8` marks
/// tensors that must stay int8 for reasons outside the graph's structure (e.g. an
/// op parameter that would not fit at the int16 scale); it may be empty.
pub fn int16_tensors(g: &Graph, image_hw: usize, forced_int8: &[bool]) -> Vec<bool> {
    let mut wide: Vec<bool> = g
        .tensors
        .iter()
        .enumerate()
        .map(|(i, t)| t.h * t.w >= image_hw && !forced_int8.get(i).copied().unwrap_or(false))
        .collect();
    loop {
        let mut changed = false;
        let mut off = |t: usize, wide: &mut Vec<bool>| {
            if wide[t] {
                wide[t] = false;
                changed = true;
            }
        };
        for op in &g.ops {
            match &op.kind {
                OpKind::Mul { .. }
                | OpKind::MatMul { .. }
                | OpKind::Softmax { .. }
                | OpKind::TimestepEmbed { .. } => {
                    for &t in op.inputs.iter().chain([&op.output]) {
                        off(t, &mut wide);
                    }
                }
                OpKind::Lut(_) | OpKind::Upsample { .. } => {
                    let (x, y) = (op.inputs[0], op.output);
                    if wide[x] != wide[y] {
                        off(x, &mut wide);
                        off(y, &mut wide);
                    }
                }
                OpKind::Conv2d { kh, kw, .. } => {
                    let x = op.inputs[0];
                    if kh * kw * g.tensors[x].c > CONV_I16_MAX_K {
                        off(x, &mut wide);
                    }
                }
                OpKind::GroupNorm { .. }
                | OpKind::Add { .. }
                | OpKind::Concat
                | OpKind::Scale { .. } => {}
            }
        }
        if !changed {
            return wide;
        }
    }
}

/// Why tensor `t` stayed int8 under the policy (for reports), or None if it is int16.
pub fn reason_int8(g: &Graph, image_hw: usize, wide: &[bool], t: usize) -> Option<String> {
    if wide[t] {
        return None;
    }
    let x = &g.tensors[t];
    if x.h * x.w < image_hw {
        return Some("below image resolution".into());
    }
    let producers = g.producers();
    let consumers = g.consumers();
    let ops: Vec<usize> = producers[t].into_iter().chain(consumers[t].iter().copied()).collect();
    // Causes of its own first, then the ones it inherits through a LUT or an upsample.
    for &i in &ops {
        let op = &g.ops[i];
        match &op.kind {
            OpKind::Mul { .. }
            | OpKind::MatMul { .. }
            | OpKind::Softmax { .. }
            | OpKind::TimestepEmbed { .. } => {
                return Some(format!("{} is int8 only", op.kind.name()));
            }
            OpKind::Conv2d { kh, kw, .. } if op.inputs[0] == t => {
                let k = kh * kw * x.c;
                if k > CONV_I16_MAX_K {
                    return Some(format!("conv window {kh}×{kw}×{} = {k} > {CONV_I16_MAX_K}", x.c));
                }
            }
            _ => {}
        }
    }
    for &i in &ops {
        let op = &g.ops[i];
        if let OpKind::Lut(_) | OpKind::Upsample { .. } = op.kind {
            let other = if op.output == t { op.inputs[0] } else { op.output };
            if !wide[other] {
                return Some(format!(
                    "{} keeps the element type of int8 tensor {other}",
                    op.kind.name()
                ));
            }
        }
    }
    Some("forced int8 (a parameter would not fit at the int16 scale)".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::ir::{LutFn, Op};

    fn op(kind: OpKind, inputs: Vec<usize>, output: usize) -> Op {
        Op { kind, inputs, output, source: String::new() }
    }

    fn conv(kh: usize, ic: usize, oc: usize) -> OpKind {
        OpKind::Conv2d {
            kh,
            kw: kh,
            stride: [1, 1],
            pad: [kh / 2; 4],
            weights: vec![0.1; kh * kh * ic * oc],
            bias: vec![0.0; oc],
        }
    }

    /// x(8×8×1) → conv → a(8×8×16) → silu → b → conv 3×3×16 → c(8×8×64) → silu → d
    /// → conv 3×3×64 (k = 576) → e(8×8×4) = output; plus a 4×4 branch upsampled.
    fn graph() -> Graph {
        let mut g = Graph::default();
        let x = g.add_tensor("x", 8, 8, 1);
        let a = g.add_tensor("a", 8, 8, 16);
        let b = g.add_tensor("b", 8, 8, 16);
        let c = g.add_tensor("c", 8, 8, 64);
        let d = g.add_tensor("d", 8, 8, 64);
        let e = g.add_tensor("e", 8, 8, 4);
        g.ops.push(op(conv(3, 1, 16), vec![x], a));
        g.ops.push(op(OpKind::Lut(LutFn::Silu), vec![a], b));
        g.ops.push(op(conv(3, 16, 64), vec![b], c));
        g.ops.push(op(OpKind::Lut(LutFn::Silu), vec![c], d));
        g.ops.push(op(conv(3, 64, 4), vec![d], e));
        g.input = x;
        g.output = e;
        g
    }

    #[test]
    fn image_resolution_int16_except_large_windows() {
        let g = graph();
        let w = int16_tensors(&g, 64, &[]);
        // x, a, b int16; d feeds a 576-window conv: int8, and the LUT pulls c along;
        // e, the output, is int16 like any image-resolution tensor.
        assert_eq!(w, vec![true, true, true, false, false, true]);
        assert!(reason_int8(&g, 64, &w, 3).unwrap().contains("LUT"));
        assert!(reason_int8(&g, 64, &w, 4).unwrap().contains("576"));
        assert_eq!(reason_int8(&g, 64, &w, 0), None);
    }

    #[test]
    fn forced_and_int8_only_ops_propagate_through_luts() {
        let mut g = graph();
        // b also feeds a MUL: b int8, so the LUT forces a int8 too.
        let m = g.add_tensor("m", 8, 8, 16);
        g.ops.push(op(OpKind::Mul { broadcast: false }, vec![2, 2], m));
        let w = int16_tensors(&g, 64, &[]);
        assert_eq!(&w[..3], &[true, false, false]);
        assert!(!w[6]);
        // Forcing the input int8 touches nothing else.
        let g = graph();
        let w = int16_tensors(&g, 64, &[true]);
        assert_eq!(&w[..3], &[false, true, true]);
    }

    #[test]
    fn low_resolution_and_upsample() {
        let mut g = Graph::default();
        let x = g.add_tensor("x", 8, 8, 2);
        let s = g.add_tensor("s", 4, 4, 2);
        let u = g.add_tensor("u", 8, 8, 2);
        let y = g.add_tensor("y", 8, 8, 2);
        let o = g.add_tensor("o", 8, 8, 1);
        g.ops.push(op(conv(1, 2, 2), vec![x], s));
        g.ops.push(op(OpKind::Upsample { factor: [2, 2] }, vec![s], u));
        g.ops.push(op(OpKind::Add { broadcast: false }, vec![u, x], y));
        g.ops.push(op(conv(1, 2, 1), vec![y], o));
        g.input = x;
        g.output = o;
        // The upsample of an int8 4×4 tensor stays int8; the add and the output are int16.
        assert_eq!(int16_tensors(&g, 64, &[]), vec![true, false, false, true, true]);
        assert_eq!(Activations::parse("int8").unwrap(), Activations::Int8);
        assert_eq!(Activations::default().name(), "mixed");
        assert!(Activations::parse("int4").is_err());
    }
}
