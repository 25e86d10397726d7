//! Writes a conv-heavy 28×28 artifact (random weights) for timing kernels:
//! `cargo run --release -p ddpm-runtime --features std --example write_bench_artifact -- OUT.ddq`.
//! conv 3×3 1→32, conv 3×3 32→32, conv 3×3 stride 2 32→32, upsample, conv 1×1 32→1.

use ddpm_runtime::format::opcode;
use ddpm_runtime::format::writer::*;
use ddpm_runtime::{quantize_multiplier, scratch_bytes};

fn main() {
    let Some(out) = std::env::args().nth(1) else {
        eprintln!("usage: write_bench_artifact OUT.ddq");
        std::process::exit(2);
    };
    let mut seed = 7u64;
    let mut rnd = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) as u32
    };
    let mut b = ArtifactBuilder::new();
    let mut arena = 0u32;
    let mut tensor = |b: &mut ArtifactBuilder, h: u16, w: u16, c: u16, zp: i32, scale: f32| {
        let off = arena;
        arena += (h as u32 * w as u32 * c as u32 + 15) & !15;
        (b.add_tensor(TensorDesc { h, w, c, arena_offset: off, zero_point: zp, scale }), off)
    };
    let (x, _) = tensor(&mut b, 28, 28, 1, 0, 4.0 / 127.0);
    let (a, _) = tensor(&mut b, 28, 28, 32, -5, 0.05);
    let (c, _) = tensor(&mut b, 28, 28, 32, 3, 0.05);
    let (d, _) = tensor(&mut b, 14, 14, 32, 0, 0.05);
    let (u, _) = tensor(&mut b, 28, 28, 32, 0, 0.05);
    let (y, _) = tensor(&mut b, 28, 28, 1, 0, 1.0 / 32.0);
    let mut convs = Vec::new();
    for (i, o, ic, oc, k, s, pad, in_zp, out_zp, real) in [
        (x, a, 1usize, 32usize, 3, 1, 1, 0, -5, 0.02),
        (a, c, 32, 32, 3, 1, 1, -5, 3, 0.002),
        (c, d, 32, 32, 3, 2, 1, 3, 0, 0.002),
    ] {
        convs.push((i, o, ic, oc, k, s, pad, in_zp, out_zp, real));
    }
    let mut ops = Vec::new();
    let mut add_conv = |b: &mut ArtifactBuilder,
                        (i, o, ic, oc, k, s, pad, in_zp, out_zp, real): (
        u16,
        u16,
        usize,
        usize,
        i32,
        i32,
        i32,
        i32,
        i32,
        f64,
    ),
                        scratch_at: &mut u32| {
        let w: Vec<i8> =
            (0..oc * (k * k) as usize * ic).map(|_| (rnd() % 201) as i8 - 100).collect();
        let bias: Vec<i32> = (0..oc).map(|_| (rnd() % 2001) as i32 - 1000).collect();
        let (m, sh) = quantize_multiplier(real);
        let refs = [
            b.add_weights_i8(&w),
            b.add_weights_i32(&bias),
            b.add_weights_i32(&vec![m; oc]),
            b.add_weights_i32(&vec![sh; oc]),
        ];
        let mut params = vec![k, k, s, s, pad, pad, pad, pad, in_zp, out_zp, -128, 127];
        for r in refs {
            params.extend(r.params());
        }
        let len = scratch_bytes(opcode::CONV2D, &[], [0, 0, oc as u16], &params);
        let op = OpDesc {
            opcode: opcode::CONV2D,
            inputs: vec![i],
            outputs: vec![o],
            params,
            scratch_offset: *scratch_at,
            scratch_len: len,
        };
        *scratch_at += (len + 15) & !15;
        op
    };
    let mut scratch_at = arena;
    // BENCH_SMALL=1: only conv 1→32 and conv 1×1 32→1 (to separate the layers' costs).
    let small = std::env::var_os("BENCH_SMALL").is_some();
    let n_convs = if small { 1 } else { convs.len() };
    for cv in convs.into_iter().take(n_convs) {
        ops.push(add_conv(&mut b, cv, &mut scratch_at));
    }
    if small {
        ops.push(add_conv(&mut b, (a, y, 32, 1, 1, 1, 0, -5, 0, 0.01), &mut scratch_at));
    } else {
        let up = OpDesc {
            opcode: opcode::UPSAMPLE_NEAREST,
            inputs: vec![d],
            outputs: vec![u],
            params: vec![2, 2],
            ..Default::default()
        };
        ops.push(up);
        ops.push(add_conv(&mut b, (u, y, 32, 1, 1, 1, 0, 0, 0, 0.01), &mut scratch_at));
    }
    for op in ops {
        b.add_op(op);
    }
    let (im, is) = quantize_multiplier(2f64.powi(-24) / (4.0 / 127.0));
    b.set_model(ModelDesc {
        input_tensor: x as u32,
        output_tensor: y as u32,
        timesteps: 1000,
        state_frac_bits: 24,
        input_multiplier: im,
        input_shift: is,
        eps_to_state_q16: (1.0 / 32.0 * 2f64.powi(40)) as i64,
        image_h: 28,
        image_w: 28,
        image_c: 1,
    });
    b.set_schedule(ScheduleDesc::linear(1000, 1e-4, 0.02));
    b.set_arena_bytes(scratch_at);
    b.set_provenance(r#"{"converter_version":"bench (random weights)"}"#);
    if let Err(e) = std::fs::write(&out, b.finish()) {
        eprintln!("error: cannot write {out}: {e}");
        std::process::exit(1);
    }
    println!("wrote {out}");
}
