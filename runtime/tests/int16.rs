//! int16 activations (16×8): a small network whose image-resolution tensors are
//! int16 — every op that may touch int16 does, in every type combination the
//! model uses — loads, samples deterministically, and every broken int16 rule is
//! a typed error naming it.

mod common;

use common::{fix_crc, Rng};
use ddpm_runtime::format::opcode as oc;
use ddpm_runtime::format::writer::*;
use ddpm_runtime::format::HEADER_SIZE;
use ddpm_runtime::{
    digest, quantize_multiplier, scratch_bytes, Error, Mode, Model, NoHooks, Sampler,
    SamplerConfig, Sigma,
};

const T: u32 = 20;
const H: u16 = 4;
const W: u16 = 4;

struct Parts {
    tensors: Vec<(TensorDesc, bool)>,
    ops: Vec<OpDesc>,
    model: ModelDesc,
    arena: u32,
    b: ArtifactBuilder,
}

impl Parts {
    fn finish(mut self) -> Vec<u8> {
        for &(t, wide) in &self.tensors {
            if wide {
                self.b.add_tensor_i16(t);
            } else {
                self.b.add_tensor(t);
            }
        }
        for o in &self.ops {
            self.b.add_op(o.clone());
        }
        self.b.set_model(self.model);
        self.b.set_arena_bytes(self.arena);
        self.b.finish()
    }
}

fn mq(real: f64, n: usize) -> (Vec<i32>, Vec<i32>) {
    let (m, s) = quantize_multiplier(real);
    (vec![m; n], vec![s; n])
}

/// The network, tensor by tensor (`*` int16):
/// x* →conv3×3→ c1* →GN→ gn* →LUT16→ act* ; emb (1×1×4) ; act* + emb → sum* ;
/// sum* →conv3×3/2→ down (2×2) →upsample→ up ; concat(sum*, up) → cat* ;
/// cat* →requant→ rq* →conv3×3→ ε.
fn parts() -> Parts {
    let mut r = Rng(1616);
    let mut b = ArtifactBuilder::new();
    let mut tensors = Vec::new();
    let mut arena = 0u32;
    let mut tensor = |h: u16, w: u16, c: u16, zp: i32, scale: f32, wide: bool| {
        let off = arena;
        let n = h as u32 * w as u32 * c as u32 * if wide { 2 } else { 1 };
        arena += (n + 15) & !15;
        tensors.push((TensorDesc { h, w, c, arena_offset: off, zero_point: zp, scale }, wide));
        (tensors.len() - 1) as u16
    };
    let x = tensor(H, W, 1, 0, 4.0 / 32767.0, true); // 0
    let c1 = tensor(H, W, 4, 0, 2.0 / 32767.0, true); // 1
    let gn = tensor(H, W, 4, 0, 4.0 / 32767.0, true); // 2
    let act = tensor(H, W, 4, 0, 4.0 / 32767.0, true); // 3
    let emb = tensor(1, 1, 4, 0, 0.02, false); // 4
    let sum = tensor(H, W, 4, 0, 6.0 / 32767.0, true); // 5
    let down = tensor(H / 2, W / 2, 4, 3, 0.05, false); // 6
    let up = tensor(H, W, 4, 3, 0.05, false); // 7
    let cat = tensor(H, W, 8, 0, 8.0 / 32767.0, true); // 8
    let rq = tensor(H, W, 8, 0, 4.0 / 32767.0, true); // 9
    let eps = tensor(H, W, 1, 0, 1.0 / 32.0, false); // 10
    let mut scratch = |n: u32| {
        let off = arena;
        arena += (n + 15) & !15;
        off
    };
    let mut ops = Vec::new();
    #[allow(clippy::too_many_arguments)]
    let conv = |b: &mut ArtifactBuilder,
                r: &mut Rng,
                ic: usize,
                occ: usize,
                k: i32,
                stride: i32,
                out_zp: i32,
                act: (i32, i32),
                real: f64| {
        let w = b.add_weights_i8(&r.i8s(occ * (k * k) as usize * ic, 100));
        let bias: Vec<i32> = (0..occ).map(|_| (r.next() % 20001) as i32 - 10000).collect();
        let bias = b.add_weights_i32(&bias);
        let (m, s) = mq(real, occ);
        let (m, s) = (b.add_weights_i32(&m), b.add_weights_i32(&s));
        let pad = k / 2;
        let mut p = vec![k, k, stride, stride, pad, pad, pad, pad, 0, out_zp, act.0, act.1];
        for wr in [w, bias, m, s] {
            p.extend(wr.params());
        }
        p
    };
    let full16 = (-32768, 32767);
    let mut push = |opcode, inputs: Vec<u16>, output, params: Vec<i32>, ins: Vec<[u16; 3]>, y| {
        let n = scratch_bytes(opcode, &ins, y, &params);
        let so = if n > 0 { scratch(n) } else { 0 };
        ops.push(OpDesc {
            opcode,
            inputs,
            outputs: vec![output],
            params,
            scratch_offset: so,
            scratch_len: n,
        });
    };
    let p = conv(
        &mut b,
        &mut r,
        1,
        4,
        3,
        1,
        0,
        full16,
        8.0 * (4.0 / 32767.0) / (2.0 / 32767.0) / 100.0,
    );
    push(oc::CONV2D, vec![x], c1, p, vec![[H, W, 1]], [H, W, 4]);
    // Group norm γ = 1, β = 0 → output at scale 4/32767.
    let s_gn = 4.0f64 / 32767.0;
    let (gm, gs) = mq(1.0 / (s_gn * 65536.0), 4);
    let (wm, ws, wb) =
        (b.add_weights_i32(&gm), b.add_weights_i32(&gs), b.add_weights_i32(&[0, 5, -5, 0]));
    let s_c1 = 2.0f64 / 32767.0;
    let eps_q32 = (1e-5 / (s_c1 * s_c1) * 2f64.powi(32)).round() as u64;
    let mut p = vec![2, 0, 0, eps_q32 as u32 as i32, (eps_q32 >> 32) as i32];
    for wr in [wm, ws, wb] {
        p.extend(wr.params());
    }
    push(oc::GROUP_NORM, vec![c1], gn, p, vec![[H, W, 4]], [H, W, 4]);
    // SiLU, 513 entries, input and output at 4/32767.
    let table: Vec<i16> = (0..513)
        .map(|j| {
            let v = (j as f64 * 128.0 - 32768.0) * s_gn;
            (v / (1.0 + (-v).exp()) / s_gn).round().clamp(-32768.0, 32767.0) as i16
        })
        .collect();
    let tw = b.add_weights_i16(&table);
    push(oc::LUT16, vec![gn], act, tw.params().to_vec(), vec![[H, W, 4]], [H, W, 4]);
    let et: Vec<i8> = (0..T as usize * 4).map(|i| ((i * 7) % 200) as i8).collect();
    let ew = b.add_weights_i8(&et);
    let mut p = vec![T as i32, 4];
    p.extend(ew.params());
    push(oc::TIMESTEP_EMBED, vec![], emb, p, vec![], [1, 1, 4]);
    // sum = act (4/32767) + emb (0.02) at 6/32767, left shift 15.
    let (sa, sb, so) = (4.0 / 32767.0, 0.02, 6.0 / 32767.0);
    let twice = 2.0 * f64::max(sa, sb);
    let (am, ash) = quantize_multiplier(sa / twice);
    let (bm, bsh) = quantize_multiplier(sb / twice);
    let (om, osh) = quantize_multiplier(twice / (32768.0 * so));
    let p = vec![1, 0, 0, 0, 15, am, ash, bm, bsh, om, osh, -32768, 32767];
    push(oc::ADD, vec![act, emb], sum, p, vec![[H, W, 4], [1, 1, 4]], [H, W, 4]);
    let p = conv(&mut b, &mut r, 4, 4, 3, 2, 3, (-128, 127), so * 0.01 / 0.05);
    push(oc::CONV2D, vec![sum], down, p, vec![[H, W, 4]], [H / 2, W / 2, 4]);
    push(oc::UPSAMPLE_NEAREST, vec![down], up, vec![2, 2], vec![[H / 2, W / 2, 4]], [H, W, 4]);
    let s_cat = 8.0 / 32767.0;
    let (m0, s0) = quantize_multiplier(so / s_cat);
    let (m1, s1) = quantize_multiplier(0.05 / s_cat);
    let p = vec![0, 0, m0, s0, 3, m1, s1];
    push(oc::CONCAT, vec![sum, up], cat, p, vec![[H, W, 4], [H, W, 4]], [H, W, 8]);
    let (m, s) = quantize_multiplier(s_cat / (4.0 / 32767.0));
    push(oc::REQUANT, vec![cat], rq, vec![0, 0, m, s], vec![[H, W, 8]], [H, W, 8]);
    let p = conv(&mut b, &mut r, 8, 1, 3, 1, 0, (-128, 127), (4.0 / 32767.0) * 0.01 / (1.0 / 32.0));
    push(oc::CONV2D, vec![rq], eps, p, vec![[H, W, 8]], [H, W, 1]);
    // Zero-length scratches sit at the end of the arena.
    for o in &mut ops {
        if o.scratch_len == 0 {
            o.scratch_offset = arena;
        }
    }
    b.set_schedule(ScheduleDesc::linear(T, 0.01, 0.2));
    let (im, is) = quantize_multiplier(2f64.powi(-24) / (4.0 / 32767.0));
    let model = ModelDesc {
        input_tensor: x as u32,
        output_tensor: eps as u32,
        timesteps: T,
        state_frac_bits: 24,
        input_multiplier: im,
        input_shift: is,
        eps_to_state_q16: (1.0 / 32.0 * 2f64.powi(40)).round() as i64,
        image_h: H as u32,
        image_w: W as u32,
        image_c: 1,
    };
    Parts { tensors, ops, model, arena, b }
}

fn cfg(seed: u64) -> SamplerConfig {
    SamplerConfig {
        seed,
        mode: Mode::Ddim { steps: 6, eta_q16: 1 << 15 },
        sigma: Sigma::Beta,
        clip_x0: false,
    }
}

fn sample(bytes: &[u8], seed: u64) -> Vec<u8> {
    let m = Model::load(bytes).expect("int16 network loads");
    let mut arena = vec![0u8; Sampler::arena_bytes(&m)];
    let mut s = Sampler::new(&m, &mut arena, cfg(seed)).unwrap();
    s.run(&mut NoHooks).unwrap();
    let mut px = vec![0u8; m.image_len()];
    s.pixels(&mut px).unwrap();
    px
}

#[test]
fn int16_network_loads_and_samples_deterministically() {
    let bytes = parts().finish();
    let m = Model::load(&bytes).unwrap();
    let wide: Vec<bool> = (0..m.tensor_count()).map(|i| m.tensor_info(i).unwrap().int16).collect();
    assert_eq!(wide.iter().filter(|&&w| w).count(), 7);
    assert_eq!(m.tensor_info(1).unwrap().size, 4 * 4 * 4 * 2);
    let a = sample(&bytes, 7);
    assert_eq!(a, sample(&bytes, 7), "same artifact and seed, same pixels");
    assert_ne!(digest(&a), digest(&sample(&bytes, 8)), "another seed, other pixels");

    // Every intermediate is used: neither all-zero nor stuck at one rail.
    let mut arena = vec![0u8; Sampler::arena_bytes(&m)];
    let mut s = Sampler::new(&m, &mut arena, cfg(3)).unwrap();
    s.predict_eps(10, &mut NoHooks).unwrap();
    let inp = s.input().unwrap();
    assert!(inp.is_int16());
    assert_eq!(inp.bytes().len(), 32, "x_t is 16 int16 values");
    let xs: Vec<i16> = inp.iter().map(|v| v as i16).collect();
    // x_T ~ N(0, 1) at scale 4/32767: |q| mostly in the thousands, never saturated here.
    assert!(xs.iter().any(|&v| v.unsigned_abs() > 1000), "{xs:?}");
    assert!(xs.iter().all(|&v| v != i16::MIN && v != i16::MAX), "{xs:?}");
    let net = &arena[..m.arena_bytes() as usize];
    for id in 0..m.tensor_count() {
        let t = m.tensor_info(id).unwrap();
        let b = m.tensor_bytes(net, id).unwrap();
        let vals: Vec<i32> = if t.int16 {
            b.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]]) as i32).collect()
        } else {
            b.iter().map(|&v| v as i8 as i32).collect()
        };
        let (lo, hi) = t.value_range();
        assert!(
            vals.iter().any(|&v| v != vals[0]) || vals.len() == 1 || id == 4,
            "tensor {id} constant: {vals:?}"
        );
        assert!(!vals.iter().all(|&v| v == lo || v == hi), "tensor {id} saturated: {vals:?}");
    }
    assert!(matches!(m.tensor(net, 1), Err(Error::NotInt8 { id: 1 })));
}

#[test]
fn int16_rules_are_enforced() {
    let load = |f: &dyn Fn(&mut Parts)| {
        let mut p = parts();
        f(&mut p);
        match Model::load(&p.finish()) {
            Err(Error::BadOp { what, .. }) | Err(Error::BadTensor { what, .. }) => what,
            other => panic!("expected an error, got {other:?}"),
        }
    };
    assert_eq!(
        load(&|p| p.tensors[1].0.zero_point = 1),
        "int16 tensor with a zero_point other than 0"
    );
    assert_eq!(load(&|p| p.tensors[1].0.arena_offset += 1), "int16 tensor at an odd arena offset");
    // An int16 tensor declared int8 (half the bytes) breaks the op's type rules.
    assert_eq!(load(&|p| p.tensors[3].1 = false), "LUT16 input and output must be int16");
    assert_eq!(load(&|p| p.ops[2].opcode = oc::LUT), "this op takes int8 tensors only");
    assert_eq!(
        load(&|p| p.ops[4].params[4] = 16),
        "left_shift not in 0..=23 (0..=15 with an int16 input)"
    );
    assert_eq!(load(&|p| p.ops[0].params[8] = 5), "zero point of an int16 tensor is not 0");
    assert_eq!(
        load(&|p| p.ops[5].params[11] = 300),
        "act_min/act_max not an ordered range of the output type"
    );
    assert_eq!(
        load(&|p| {
            p.tensors[7].1 = true;
            p.tensors[7].0.zero_point = 0;
        }),
        "input and output element types differ"
    );
    // An 8×8 window over 8 int16 channels is 512 > 511 products.
    assert_eq!(
        load(&|p| {
            p.ops[9].params[0] = 8;
            p.ops[9].params[1] = 8;
        }),
        "kh·kw·ic above 511 with an int16 input (i32 accumulator)"
    );
    // Unknown flag bits.
    let mut bytes = parts().finish();
    let tensors_off = {
        let m = 64 + 16; // second section-table entry: TENSORS
        u32::from_le_bytes(bytes[m + 4..m + 8].try_into().unwrap()) as usize
    };
    bytes[tensors_off + 32 + 6] |= 2;
    fix_crc(&mut bytes);
    assert!(matches!(Model::load(&bytes), Err(Error::BadTensor { index: 1, .. })));
}

/// ε as int16 (zero point 0, scale / 256, requantization × 256): the same
/// network predicts 256× the int8 values up to the int8 rounding, and samples.
#[test]
fn int16_eps_is_read_at_its_own_scale() {
    let p8 = parts();
    let mut p16 = parts();
    p16.tensors[10].1 = true;
    p16.tensors[10].0.scale /= 256.0;
    let conv = &mut p16.ops[9].params;
    conv[9] = 0;
    conv[10] = -32768;
    conv[11] = 32767;
    // Per-channel multiplier × 256: shift + 8 (one output channel).
    let (m8, s8) = quantize_multiplier((4.0 / 32767.0) * 0.01 / (1.0 / 32.0));
    let (m16, s16) = quantize_multiplier((4.0 / 32767.0) * 0.01 / (1.0 / 32.0) * 256.0);
    assert_eq!((m8, s8 + 8), (m16, s16));
    let mw = p16.b.add_weights_i32(&[m16]);
    let sw = p16.b.add_weights_i32(&[s16]);
    conv[16..18].copy_from_slice(&mw.params());
    conv[18..20].copy_from_slice(&sw.params());
    p16.model.eps_to_state_q16 = (1.0 / 32.0 / 256.0 * 2f64.powi(40)).round() as i64;
    let (b8, b16) = (p8.finish(), p16.finish());
    let (m8, m16) = (Model::load(&b8).unwrap(), Model::load(&b16).expect("int16 ε loads"));
    let mut a8 = vec![0u8; Sampler::arena_bytes(&m8)];
    let mut a16 = vec![0u8; Sampler::arena_bytes(&m16)];
    let mut s8 = Sampler::new(&m8, &mut a8, cfg(9)).unwrap();
    let mut s16 = Sampler::new(&m16, &mut a16, cfg(9)).unwrap();
    let e8: Vec<i32> = s8.predict_eps(12, &mut NoHooks).unwrap().iter().collect();
    let e16 = s16.predict_eps(12, &mut NoHooks).unwrap();
    assert!(e16.is_int16() && e16.len() == 16);
    let e16: Vec<i32> = e16.iter().collect();
    for (a, b) in e8.iter().zip(&e16) {
        if a.abs() < 127 {
            assert!((a * 256 - b).abs() <= 128, "int8 {a} vs int16 {b}");
        }
    }
    assert!(e16.iter().any(|v| v % 256 != 0), "int16 ε carries the finer bits: {e16:?}");
    let px = sample(&b16, 3);
    assert_eq!(px, sample(&b16, 3));
}

/// Hostile edits of the int16 network: loading returns, running never panics.
#[test]
fn random_edits_of_an_int16_network_never_panic() {
    let bytes = parts().finish();
    let mut r = Rng(4321);
    let mut loaded = 0;
    for _ in 0..2000 {
        let mut b = bytes.clone();
        for _ in 0..1 + r.next() % 4 {
            let i = HEADER_SIZE + (r.next() as usize % (b.len() - HEADER_SIZE));
            b[i] = match r.next() % 4 {
                0 => 0,
                1 => 0xFF,
                2 => b[i].wrapping_add(1),
                _ => r.next() as u8,
            };
        }
        fix_crc(&mut b);
        if let Ok(m) = Model::load(&b) {
            loaded += 1;
            let mut arena = vec![0u8; Sampler::arena_bytes(&m)];
            let _ = m.forward(&mut arena, 0, &mut NoHooks);
            if let Ok(mut s) = Sampler::new(&m, &mut arena, cfg(5)) {
                let _ = s.run(&mut NoHooks);
            }
        }
    }
    assert!(loaded > 100, "only {loaded} edited artifacts loaded");
}
