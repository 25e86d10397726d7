//! Float interpreter of the lowered IR (f32, NHWC). It proves the lowering against
//! tract, runs the calibration trajectories and provides every intermediate tensor.
//!
//! Deterministic: the same graph and input give the same bits on every host. Every
//! value is computed in scalar f32/f64 in a fixed order (no fused multiply-add, no
//! CPU-dependent kernels, no threads), and `exp` is the pure-Rust `libm` crate's
//! rather than the platform's; the only other functions used (`sqrt`, basic
//! arithmetic) are exactly rounded by IEEE 754.

use crate::ingest::ir::{Graph, OpKind};

/// Runs `g` on `input` (NHWC, the image) at network timestep `t`; returns every
/// tensor's values, indexed by tensor id.
///
/// # Panics
/// Never on a graph produced by the lowering (shapes are checked there); `t` is
/// clamped to the table.
pub fn run(g: &Graph, input: &[f32], t: usize) -> Vec<Vec<f32>> {
    run_masked(g, input, t, None)
}

/// Like [`run`], executing only the ops with `mask[i]` (all when `None`); tensors of
/// skipped ops stay empty.
pub fn run_masked(g: &Graph, input: &[f32], t: usize, mask: Option<&[bool]>) -> Vec<Vec<f32>> {
    run_inner(g, input, t, mask, &mut |_, _| {})
}

/// Like [`run`], calling `hook(tensor_id, values)` on the input and on every op's
/// output before later ops read it (e.g. to simulate quantization).
pub fn run_hooked(
    g: &Graph,
    input: &[f32],
    t: usize,
    hook: &mut dyn FnMut(usize, &mut [f32]),
) -> Vec<Vec<f32>> {
    run_inner(g, input, t, None, hook)
}

fn run_inner(
    g: &Graph,
    input: &[f32],
    t: usize,
    mask: Option<&[bool]>,
    hook: &mut dyn FnMut(usize, &mut [f32]),
) -> Vec<Vec<f32>> {
    let mut vals: Vec<Vec<f32>> = vec![Vec::new(); g.tensors.len()];
    vals[g.input] = input.to_vec();
    hook(g.input, &mut vals[g.input]);
    for (i, op) in g.ops.iter().enumerate() {
        if mask.is_some_and(|m| !m[i]) {
            continue;
        }
        let o = &g.tensors[op.output];
        let mut y = vec![0f32; o.len()];
        let x = |i: usize| &vals[op.inputs[i]];
        let ti = |i: usize| &g.tensors[op.inputs[i]];
        match &op.kind {
            OpKind::Conv2d { kh, kw, stride, pad, weights, bias } => {
                conv2d(x(0), ti(0), o, [*kh, *kw], *stride, *pad, weights, bias, &mut y);
            }
            OpKind::GroupNorm { groups, eps, gamma, beta } => {
                let xi = x(0);
                let c = o.c;
                let cg = c / groups;
                let hw = o.h * o.w;
                for gi in 0..*groups {
                    let (mut s, mut s2) = (0f64, 0f64);
                    for p in 0..hw {
                        for ch in gi * cg..(gi + 1) * cg {
                            let v = xi[p * c + ch] as f64;
                            s += v;
                            s2 += v * v;
                        }
                    }
                    let n = (hw * cg) as f64;
                    let mean = s / n;
                    let var = (s2 / n - mean * mean).max(0.0);
                    let inv = 1.0 / (var + *eps as f64).sqrt();
                    for p in 0..hw {
                        for ch in gi * cg..(gi + 1) * cg {
                            let z = (xi[p * c + ch] as f64 - mean) * inv;
                            y[p * c + ch] = (z * gamma[ch] as f64 + beta[ch] as f64) as f32;
                        }
                    }
                }
            }
            OpKind::Lut(f) => {
                for (yv, &xv) in y.iter_mut().zip(x(0)) {
                    *yv = f.eval(xv);
                }
            }
            OpKind::Add { broadcast } | OpKind::Mul { broadcast } => {
                let add = matches!(op.kind, OpKind::Add { .. });
                let (a, b) = (x(0), x(1));
                let c = o.c;
                for (i, yv) in y.iter_mut().enumerate() {
                    let bv = if *broadcast { b[i % c] } else { b[i] };
                    *yv = if add { a[i] + bv } else { a[i] * bv };
                }
            }
            OpKind::Concat => {
                let mut off = 0;
                for k in 0..op.inputs.len() {
                    let (xi, xt) = (x(k), ti(k));
                    for p in 0..o.h * o.w {
                        y[p * o.c + off..p * o.c + off + xt.c]
                            .copy_from_slice(&xi[p * xt.c..(p + 1) * xt.c]);
                    }
                    off += xt.c;
                }
            }
            OpKind::Upsample { factor } => {
                let (xi, xt) = (x(0), ti(0));
                for oy in 0..o.h {
                    for ox in 0..o.w {
                        let src = ((oy / factor[0]) * xt.w + ox / factor[1]) * o.c;
                        let dst = (oy * o.w + ox) * o.c;
                        y[dst..dst + o.c].copy_from_slice(&xi[src..src + o.c]);
                    }
                }
            }
            OpKind::MatMul { batch, m, k, n, a, b, y: ys, alpha } => {
                let (av, bv) = (x(0), x(1));
                for bb in 0..*batch {
                    for i in 0..*m {
                        for j in 0..*n {
                            let mut acc = 0f32;
                            for kk in 0..*k {
                                acc += av[bb * a.b + i * a.i + kk * a.j]
                                    * bv[bb * b.b + kk * b.i + j * b.j];
                            }
                            y[bb * ys.b + i * ys.i + j * ys.j] = acc * alpha;
                        }
                    }
                }
            }
            OpKind::Softmax { rows, len } => {
                let xi = x(0);
                for r in 0..*rows {
                    let row = &xi[r * len..(r + 1) * len];
                    let mx = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                    let mut sum = 0f32;
                    for (j, &v) in row.iter().enumerate() {
                        let e = libm::expf(v - mx);
                        y[r * len + j] = e;
                        sum += e;
                    }
                    for v in &mut y[r * len..(r + 1) * len] {
                        *v /= sum;
                    }
                }
            }
            OpKind::TimestepEmbed { timesteps, dim, table } => {
                let t = t.min(timesteps - 1);
                y.copy_from_slice(&table[t * dim..(t + 1) * dim]);
            }
            OpKind::Scale { alpha } => {
                for (yv, &xv) in y.iter_mut().zip(x(0)) {
                    *yv = xv * alpha;
                }
            }
        }
        hook(op.output, &mut y);
        vals[op.output] = y;
    }
    vals
}

/// CONV2D into `y` (NHWC, zeroed). Summation order, fixed: each output starts at its
/// bias; then kernel rows `ky`, columns `kx` (taps that fall in the padding skipped)
/// and input channels `ic` ascending, one rounded f32 product and one rounded f32
/// addition per term. The innermost loop runs over output channels (weights
/// transposed to `[ky][kx][ic][oc]`), so each lane of a vectorized loop accumulates
/// its own output in that same order: the bits do not depend on the vector width.
#[allow(clippy::too_many_arguments)]
fn conv2d(
    xi: &[f32],
    xt: &crate::ingest::ir::Tensor,
    o: &crate::ingest::ir::Tensor,
    [kh, kw]: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 4],
    weights: &[f32],
    bias: &[f32],
    y: &mut [f32],
) {
    let (ih, iw, ic, oc) = (xt.h as isize, xt.w as isize, xt.c, o.c);
    let mut wt = vec![0f32; weights.len()];
    for co in 0..oc {
        for k in 0..kh * kw {
            for ci in 0..ic {
                wt[(k * ic + ci) * oc + co] = weights[(co * kh * kw + k) * ic + ci];
            }
        }
    }
    for oy in 0..o.h {
        for ox in 0..o.w {
            let yb = (oy * o.w + ox) * oc;
            let acc = &mut y[yb..yb + oc];
            acc.copy_from_slice(bias);
            for ky in 0..kh {
                let iy = (oy * stride[0] + ky) as isize - pad[0] as isize;
                if iy < 0 || iy >= ih {
                    continue;
                }
                for kx in 0..kw {
                    let ix = (ox * stride[1] + kx) as isize - pad[1] as isize;
                    if ix < 0 || ix >= iw {
                        continue;
                    }
                    let xb = ((iy * iw + ix) as usize) * ic;
                    let wb = (ky * kw + kx) * ic * oc;
                    for (ci, &xv) in xi[xb..xb + ic].iter().enumerate() {
                        let ws = &wt[wb + ci * oc..wb + (ci + 1) * oc];
                        for (a, &wv) in acc.iter_mut().zip(ws) {
                            *a += xv * wv;
                        }
                    }
                }
            }
        }
    }
}

/// NCHW (batch 1) → NHWC.
pub fn nchw_to_nhwc(x: &[f32], c: usize, h: usize, w: usize) -> Vec<f32> {
    let mut y = vec![0f32; x.len()];
    for ch in 0..c {
        for p in 0..h * w {
            y[p * c + ch] = x[ch * h * w + p];
        }
    }
    y
}

/// NHWC (batch 1) → NCHW.
pub fn nhwc_to_nchw(x: &[f32], c: usize, h: usize, w: usize) -> Vec<f32> {
    let mut y = vec![0f32; x.len()];
    for ch in 0..c {
        for p in 0..h * w {
            y[ch * h * w + p] = x[p * c + ch];
        }
    }
    y
}
