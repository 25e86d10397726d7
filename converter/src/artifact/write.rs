//! Assembling the `.ddq` artifact with the runtime's writer.

use anyhow::{ensure, Result};
use ddpm_runtime::format::scratch_bytes;
use ddpm_runtime::format::writer::{ArtifactBuilder, ModelDesc, OpDesc, ScheduleDesc, TensorDesc};

use crate::ingest::ir::Graph;
use crate::quantize::plan::{self, Buffer, Plan};
use crate::quantize::quant::{self, Blob, Param, QParams};
use crate::quantize::schedule::{self, Schedule};

/// Fractional bits of the sampler state.
pub const STATE_FRAC_BITS: u32 = 24;

/// What the writer produced besides the bytes.
#[derive(Clone, Debug)]
pub struct Summary {
    /// The memory plan (tensors first, then one scratch per op).
    pub plan: Plan,
}

/// Buffers for the planner: every tensor from its producer to its last reader (the
/// input from op 0, the output to the last op), then each op's scratch.
pub fn buffers(
    tensor_sizes: &[usize],
    ops: &[(Vec<usize>, usize, usize)],
    input: usize,
    output: usize,
) -> Vec<Buffer> {
    let n = ops.len();
    let mut first = vec![usize::MAX; tensor_sizes.len()];
    let mut last = vec![0usize; tensor_sizes.len()];
    first[input] = 0;
    for (i, (ins, out, _)) in ops.iter().enumerate() {
        first[*out] = first[*out].min(i);
        last[*out] = last[*out].max(i);
        for &t in ins {
            last[t] = last[t].max(i);
        }
    }
    last[output] = n.saturating_sub(1);
    let mut b: Vec<Buffer> = tensor_sizes
        .iter()
        .enumerate()
        .map(|(t, &size)| Buffer { size, first: first[t].min(last[t]), last: last[t] })
        .collect();
    for (i, (_, _, scratch)) in ops.iter().enumerate() {
        b.push(Buffer { size: *scratch, first: i, last: i });
    }
    b
}

/// Bytes of a tensor of `n` elements with quantization `q`.
pub fn tensor_bytes(n: usize, q: &QParams) -> usize {
    if q.is_i16() {
        2 * n
    } else {
        n
    }
}

/// Writes the artifact.
///
/// # Errors
/// When the graph or a parameter does not fit the format.
pub fn write(
    g: &Graph,
    q: &[QParams],
    sched: &Schedule,
    provenance: &str,
) -> Result<(Vec<u8>, Summary)> {
    write_with(g, q, sched, provenance, true)
}

/// Like [`write`]; with `reuse` false every buffer gets its own arena range, so every
/// intermediate tensor can be read back after a forward pass (for diagnostics).
///
/// # Errors
/// As [`write`].
pub fn write_with(
    g: &Graph,
    q: &[QParams],
    sched: &Schedule,
    provenance: &str,
    reuse: bool,
) -> Result<(Vec<u8>, Summary)> {
    quant::check_limits(g)?;
    let mut b = ArtifactBuilder::new();
    let sh = |t: usize| {
        let x = &g.tensors[t];
        [x.h as u16, x.w as u16, x.c as u16]
    };
    // Encode ops, place weights.
    let mut descs = Vec::new();
    for op in &g.ops {
        let qop = quant::encode(op, q)?;
        let mut params = Vec::new();
        for p in qop.params {
            match p {
                Param::Word(v) => params.push(v),
                Param::Blob(Blob::I8(v)) => params.extend(b.add_weights_i8(&v).params()),
                Param::Blob(Blob::I16(v)) => params.extend(b.add_weights_i16(&v).params()),
                Param::Blob(Blob::I32(v)) => params.extend(b.add_weights_i32(&v).params()),
                Param::Blob(Blob::U32(v)) => params.extend(b.add_weights_u32(&v).params()),
            }
        }
        let ins: Vec<[u16; 3]> = op.inputs.iter().map(|&t| sh(t)).collect();
        let scratch = scratch_bytes(qop.opcode, &ins, sh(op.output), &params) as usize;
        descs.push((qop.opcode, params, scratch));
    }
    // Buffer sizes in bytes: two per element for int16 tensors.
    let sizes: Vec<usize> =
        g.tensors.iter().zip(q).map(|(t, qt)| tensor_bytes(t.len(), qt)).collect();
    let ops: Vec<(Vec<usize>, usize, usize)> =
        g.ops.iter().zip(&descs).map(|(op, d)| (op.inputs.clone(), op.output, d.2)).collect();
    let bufs = buffers(&sizes, &ops, g.input, g.output);
    let p = if reuse { plan::plan(&bufs) } else { plan::no_reuse(&bufs) };
    ensure!(p.arena_bytes <= u32::MAX as usize, "arena of {} bytes", p.arena_bytes);
    for (t, x) in g.tensors.iter().enumerate() {
        let d = TensorDesc {
            h: x.h as u16,
            w: x.w as u16,
            c: x.c as u16,
            arena_offset: p.offsets[t] as u32,
            zero_point: q[t].zero_point,
            scale: q[t].scale as f32,
        };
        if q[t].is_i16() {
            ensure!(q[t].zero_point == 0, "int16 tensor {} has a zero point", x.name);
            ensure!(p.offsets[t] % 2 == 0, "int16 tensor {} at an odd offset", x.name);
            b.add_tensor_i16(d);
        } else {
            b.add_tensor(d);
        }
    }
    for (i, (op, (opcode, params, scratch))) in g.ops.iter().zip(descs).enumerate() {
        b.add_op(OpDesc {
            opcode,
            inputs: op.inputs.iter().map(|&t| t as u16).collect(),
            outputs: vec![op.output as u16],
            params,
            // A zero-length scratch sits at the end of the output: the runtime's
            // carve() rejects an empty range at offset 0 when the output starts there.
            scratch_offset: if scratch > 0 {
                p.offsets[g.tensors.len() + i] as u32
            } else {
                (p.offsets[op.output] + sizes[op.output]) as u32
            },
            scratch_len: scratch as u32,
        });
    }
    let qi = q[g.input];
    let (im, is) =
        ddpm_runtime::format::quantize_multiplier(2f64.powi(-(STATE_FRAC_BITS as i32)) / qi.scale);
    let inp = &g.tensors[g.input];
    b.set_model(ModelDesc {
        input_tensor: g.input as u32,
        output_tensor: g.output as u32,
        timesteps: sched.timesteps as u32,
        state_frac_bits: STATE_FRAC_BITS,
        input_multiplier: im,
        input_shift: is,
        eps_to_state_q16: (q[g.output].scale * 2f64.powi(STATE_FRAC_BITS as i32 + 16)).round()
            as i64,
        image_h: inp.h as u32,
        image_w: inp.w as u32,
        image_c: inp.c as u32,
    });
    let (frac_bits, tables) = schedule::fixed_point_tables(&sched.coefficients());
    b.set_schedule(ScheduleDesc {
        timesteps: sched.timesteps as u32,
        kind: sched.kind.code(),
        beta_start: sched.beta_start as f32,
        beta_end: sched.beta_end as f32,
        frac_bits,
        tables,
    });
    b.set_provenance(provenance);
    b.set_arena_bytes(p.arena_bytes as u32);
    Ok((b.finish(), Summary { plan: p }))
}
