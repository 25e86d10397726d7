//! Writes the committed seed artifacts to `seeds/artifact_loader/` (or the directory
//! given as the first argument):
//!
//! ```sh
//! cd fuzz && cargo run --no-default-features --bin gen_seeds
//! ```
//!
//! Every seed is checked to load before it is written.

use std::path::PathBuf;

use ddpm_runtime::format::opcode as oc;
use ddpm_runtime::format::writer::*;
use ddpm_runtime::{quantize_multiplier, scratch_bytes, Model};

// The integration tests' tiny network: every opcode once.
#[path = "../../../runtime/tests/common/mod.rs"]
mod common;

fn model_desc(x: u16, eps: u16, t: u32, h: u32, w: u32, c: u32, s_in: f64) -> ModelDesc {
    let (im, is) = quantize_multiplier(2f64.powi(-24) / s_in);
    ModelDesc {
        input_tensor: x as u32,
        output_tensor: eps as u32,
        timesteps: t,
        state_frac_bits: 24,
        input_multiplier: im,
        input_shift: is,
        eps_to_state_q16: (1.0 / 64.0 * 2f64.powi(40)).round() as i64,
        image_h: h,
        image_w: w,
        image_c: c,
    }
}

/// x (2×2×1) → REQUANT → ε. Smallest valid artifact: 1 op, quadratic schedule, T=3.
fn minimal() -> Vec<u8> {
    let mut b = ArtifactBuilder::new();
    let x = b.add_tensor(TensorDesc { h: 2, w: 2, c: 1, arena_offset: 0, zero_point: 0, scale: 0.03 });
    let e = b.add_tensor(TensorDesc { h: 2, w: 2, c: 1, arena_offset: 16, zero_point: 1, scale: 0.02 });
    let (m, s) = quantize_multiplier(1.5);
    b.add_op(OpDesc { opcode: oc::REQUANT, inputs: vec![x], outputs: vec![e], params: vec![0, 1, m, s], ..Default::default() });
    b.set_schedule(ScheduleDesc::quadratic(3, 0.02, 0.3));
    b.set_model(model_desc(x, e, 3, 2, 2, 1, 0.03));
    b.set_arena_bytes(32);
    b.finish()
}

/// x (2×4×2) → LUT → MATMUL (with a timestep-embedding operand) → SOFTMAX → ε;
/// cosine schedule T=6, no provenance.
fn attention() -> Vec<u8> {
    let mut b = ArtifactBuilder::new();
    let mut arena = 0u32;
    let mut t = |b: &mut ArtifactBuilder, h: u16, w: u16, c: u16, zp: i32, scale: f32| {
        let off = arena;
        arena += ((h as u32 * w as u32 * c as u32) + 15) & !15;
        b.add_tensor(TensorDesc { h, w, c, arena_offset: off, zero_point: zp, scale })
    };
    let x = t(&mut b, 2, 4, 2, 0, 0.03);
    let l = t(&mut b, 2, 4, 2, -5, 0.02);
    let emb = t(&mut b, 1, 1, 4, 0, 0.02);
    let mm = t(&mut b, 2, 4, 2, 0, 0.05);
    let sm = t(&mut b, 2, 4, 2, -128, 1.0 / 256.0);
    let lut: Vec<i8> = (0..256).map(|i| ((i as i32 - 128) / 2 - 5) as i8).collect();
    let lw = b.add_weights_i8(&lut);
    b.add_op(OpDesc { opcode: oc::LUT, inputs: vec![x], outputs: vec![l], params: lw.params().to_vec(), ..Default::default() });
    let tab: Vec<i8> = (0..6 * 4).map(|i| (i * 7 % 50 - 25) as i8).collect();
    let tw = b.add_weights_i8(&tab);
    let mut p = vec![6, 4];
    p.extend(tw.params());
    b.add_op(OpDesc { opcode: oc::TIMESTEP_EMBED, inputs: vec![], outputs: vec![emb], params: p, ..Default::default() });
    // l viewed as 8×2, emb as 2×2 → 8×2.
    let (m, s) = quantize_multiplier(0.02 * 0.02 / 0.05);
    b.add_op(OpDesc {
        opcode: oc::MATMUL,
        inputs: vec![l, emb],
        outputs: vec![mm],
        params: vec![1, 8, 2, 2, -5, 0, 0, m, s, -128, 127, 0, 2, 1, 0, 2, 1, 0, 2, 1],
        ..Default::default()
    });
    let exp: Vec<u32> = (0..256).map(|d| ((-0.05 * d as f64).exp() * 65536.0).round() as u32).collect();
    let ew = b.add_weights_u32(&exp);
    let mut p = vec![8, 2];
    p.extend(ew.params());
    b.add_op(OpDesc { opcode: oc::SOFTMAX, inputs: vec![mm], outputs: vec![sm], params: p, ..Default::default() });
    b.set_schedule(ScheduleDesc::cosine(6));
    b.set_model(model_desc(x, sm, 6, 2, 4, 2, 0.03));
    b.set_arena_bytes(arena);
    b.finish()
}

/// x (4×4×3) → CONV 3×3 s2 → GROUP_NORM → UPSAMPLE ×2 → CONCAT(x) → CONV 1×1 →
/// ADD(x) → ε; linear schedule T=8.
fn unet() -> Vec<u8> {
    let mut b = ArtifactBuilder::new();
    let mut arena = 0u32;
    let mut t = |b: &mut ArtifactBuilder, h: u16, w: u16, c: u16, zp: i32, scale: f32| {
        let off = arena;
        arena += ((h as u32 * w as u32 * c as u32) + 15) & !15;
        (b.add_tensor(TensorDesc { h, w, c, arena_offset: off, zero_point: zp, scale }), off)
    };
    let (x, _) = t(&mut b, 4, 4, 3, 0, 0.03);
    let (d, _) = t(&mut b, 2, 2, 4, -2, 0.05);
    let (g, _) = t(&mut b, 2, 2, 4, 0, 0.03);
    let (u, _) = t(&mut b, 4, 4, 4, 0, 0.03);
    let (cat, _) = t(&mut b, 4, 4, 7, 0, 0.03);
    let (o, _) = t(&mut b, 4, 4, 3, 0, 0.04);
    let (e, _) = t(&mut b, 4, 4, 3, 0, 1.0 / 64.0);
    let conv = |b: &mut ArtifactBuilder, ic: usize, occ: usize, k: i32, st: i32, pad: i32, real: f64, in_zp: i32, out_zp: i32| {
        let w: Vec<i8> = (0..occ * (k * k) as usize * ic).map(|i| ((i * 37 % 201) as i32 - 100) as i8).collect();
        let w = b.add_weights_i8(&w);
        let bias = b.add_weights_i32(&(0..occ as i32).map(|i| 100 * i - 150).collect::<Vec<_>>());
        let (m, s) = quantize_multiplier(real);
        let m = b.add_weights_i32(&vec![m; occ]);
        let s = b.add_weights_i32(&vec![s; occ]);
        let mut p = vec![k, k, st, st, pad, pad, pad, pad, in_zp, out_zp, -128, 127];
        for r in [w, bias, m, s] {
            p.extend(r.params());
        }
        p
    };
    let p1 = conv(&mut b, 3, 4, 3, 2, 1, 0.005, 0, -2);
    let s1 = scratch_bytes(oc::CONV2D, &[[4, 4, 3]], [2, 2, 4], &p1);
    let p2 = conv(&mut b, 7, 3, 1, 1, 0, 0.01, 0, 0);
    let s2 = scratch_bytes(oc::CONV2D, &[[4, 4, 7]], [4, 4, 3], &p2);
    let (sc1, sc2) = (arena, arena + ((s1 + 15) & !15));
    arena = sc2 + ((s2 + 15) & !15);
    b.add_op(OpDesc { opcode: oc::CONV2D, inputs: vec![x], outputs: vec![d], params: p1, scratch_offset: sc1, scratch_len: s1 });
    let gm = b.add_weights_i32(&vec![quantize_multiplier(1.0 / (0.03 * 65536.0)).0; 4]);
    let gs = b.add_weights_i32(&vec![quantize_multiplier(1.0 / (0.03 * 65536.0)).1; 4]);
    let gb = b.add_weights_i32(&[0, 1, -1, 2]);
    let eps_q32 = (1e-5 / (0.05f64 * 0.05) * 2f64.powi(32)).round() as u64;
    let mut p = vec![2, -2, 0, eps_q32 as u32 as i32, (eps_q32 >> 32) as i32];
    for r in [gm, gs, gb] {
        p.extend(r.params());
    }
    b.add_op(OpDesc { opcode: oc::GROUP_NORM, inputs: vec![d], outputs: vec![g], params: p, ..Default::default() });
    b.add_op(OpDesc { opcode: oc::UPSAMPLE_NEAREST, inputs: vec![g], outputs: vec![u], params: vec![2, 2], ..Default::default() });
    let (m, s) = quantize_multiplier(1.0);
    b.add_op(OpDesc { opcode: oc::CONCAT, inputs: vec![u, x], outputs: vec![cat], params: vec![0, 0, 0, 0, 0, m, s], ..Default::default() });
    b.add_op(OpDesc { opcode: oc::CONV2D, inputs: vec![cat], outputs: vec![o], params: p2, scratch_offset: sc2, scratch_len: s2 });
    let (am, ash) = quantize_multiplier(0.5);
    let (om, osh) = quantize_multiplier(2.0 * 0.04 / ((1 << 20) as f64 * (1.0 / 64.0)));
    b.add_op(OpDesc { opcode: oc::ADD, inputs: vec![o, x], outputs: vec![e], params: vec![0, 0, 0, 0, 20, am, ash, am, ash, om, osh, -128, 127], ..Default::default() });
    b.set_schedule(ScheduleDesc::linear(8, 1e-3, 0.2));
    b.set_provenance(r#"{"source_sha256":"00","converter_version":"seed","calibration":{},"schedule":"linear"}"#);
    b.set_model(model_desc(x, e, 8, 4, 4, 3, 0.03));
    b.set_arena_bytes(arena);
    b.finish()
}

/// `minimal()` with its REQUANT replaced by a MATMUL whose strides are all 0 and
/// whose `batch`, `m`, `n` are `big` (k = 1): every element address is 0, so the
/// loader's bound check passes, but one forward pass runs `big³` iterations.
fn matmul_zero_stride(big: i32) -> Vec<u8> {
    let mut b = ArtifactBuilder::new();
    let x = b.add_tensor(TensorDesc { h: 2, w: 2, c: 1, arena_offset: 0, zero_point: 0, scale: 0.03 });
    let e = b.add_tensor(TensorDesc { h: 2, w: 2, c: 1, arena_offset: 16, zero_point: 0, scale: 0.02 });
    let (m, s) = quantize_multiplier(0.5);
    b.add_op(OpDesc {
        opcode: oc::MATMUL,
        inputs: vec![x, x],
        outputs: vec![e],
        params: vec![big, big, 1, big, 0, 0, 0, m, s, -128, 127, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ..Default::default()
    });
    b.set_schedule(ScheduleDesc::quadratic(3, 0.02, 0.3));
    b.set_model(model_desc(x, e, 3, 2, 2, 1, 0.03));
    b.set_arena_bytes(32);
    b.finish()
}

/// `minimal()` on an 8×8 image whose schedule tables all have 0 fractional bits and
/// hold `i32::MAX` (the loader accepts any non-negative value with 0..=31 bits): the
/// DDPM update's `mean + σ·z` overflows i64.
fn schedule_zero_frac_bits() -> Vec<u8> {
    let mut b = ArtifactBuilder::new();
    let x = b.add_tensor(TensorDesc { h: 8, w: 8, c: 1, arena_offset: 0, zero_point: 0, scale: 0.03 });
    let e = b.add_tensor(TensorDesc { h: 8, w: 8, c: 1, arena_offset: 64, zero_point: 1, scale: 0.02 });
    let (m, s) = quantize_multiplier(1.5);
    b.add_op(OpDesc { opcode: oc::REQUANT, inputs: vec![x], outputs: vec![e], params: vec![0, 1, m, s], ..Default::default() });
    let mut sched = ScheduleDesc::quadratic(3, 0.02, 0.3);
    sched.frac_bits = [0; 8];
    for t in sched.tables.iter_mut() {
        t.iter_mut().for_each(|v| *v = i32::MAX);
    }
    b.set_schedule(sched);
    b.set_model(model_desc(x, e, 3, 8, 8, 1, 0.03));
    b.set_arena_bytes(128);
    b.finish()
}

/// Hand-built reproducers for `regressions/` (see regressions/README.md).
fn regressions(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).expect("create regressions directory");
    for (name, bytes) in [
        ("matmul_zero_stride_op_macs_overflow.ddq", matmul_zero_stride(i32::MAX)),
        ("matmul_zero_stride_unbounded_forward.ddq", matmul_zero_stride(1 << 16)),
        ("sampler_ddpm_update_add_overflow.ddq", schedule_zero_frac_bits()),
    ] {
        let m = Model::load(&bytes).map(|_| "loads").unwrap_or("rejected");
        std::fs::write(dir.join(name), &bytes).expect("write regression");
        println!("{name}: {} bytes, {m}", bytes.len());
    }
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("--regressions") {
        regressions(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("regressions"));
        return;
    }
    let dir = std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds").join("artifact_loader")
    });
    std::fs::create_dir_all(&dir).expect("create seed directory");
    let seeds = [
        ("minimal_requant.ddq", minimal()),
        ("attention_cosine.ddq", attention()),
        ("mini_unet_linear.ddq", unet()),
        ("every_op_tiny.ddq", common::tiny()),
    ];
    for (name, bytes) in seeds {
        if let Err(e) = Model::load(&bytes) {
            panic!("seed {name} does not load: {e:?}");
        }
        let o = ddpm_edge_fuzz::check_artifact(&bytes);
        std::fs::write(dir.join(name), &bytes).expect("write seed");
        println!("{name}: {} bytes, sampler steps run: {}", bytes.len(), o.steps);
    }
}
