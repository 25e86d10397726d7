//! A tiny hand-built network using every op, for the integration tests.
#![allow(dead_code)]

use ddpm_runtime::format::opcode as oc;
use ddpm_runtime::format::writer::*;
use ddpm_runtime::{quantize_multiplier, scratch_bytes};

pub const T: u32 = 20;
pub const H: u16 = 4;
pub const W: u16 = 4;

pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn i8s(&mut self, n: usize, amp: i64) -> Vec<i8> {
        (0..n).map(|_| ((self.next() % (2 * amp as u64 + 1)) as i64 - amp) as i8).collect()
    }
}

fn mq(real: f64, n: usize) -> (Vec<i32>, Vec<i32>) {
    let (m, s) = quantize_multiplier(real);
    (vec![m; n], vec![s; n])
}

/// Everything before it is written, so tests can corrupt any part.
pub struct Parts {
    pub b: ArtifactBuilder,
    pub tensors: Vec<TensorDesc>,
    pub ops: Vec<OpDesc>,
    pub model: ModelDesc,
    pub arena: u32,
}

impl Parts {
    pub fn finish(mut self) -> Vec<u8> {
        for t in &self.tensors {
            self.b.add_tensor(*t);
        }
        for o in &self.ops {
            self.b.add_op(o.clone());
        }
        self.b.set_model(self.model);
        self.b.set_arena_bytes(self.arena);
        self.b.finish()
    }
}

pub fn parts() -> Parts {
    let mut r = Rng(99);
    let mut b = ArtifactBuilder::new();
    let mut tensors = Vec::new();
    let mut ops = Vec::new();
    let mut arena = 0u32;
    let mut tensor = |h: u16, w: u16, c: u16, zp: i32, scale: f32| {
        let off = arena;
        arena += ((h as u32 * w as u32 * c as u32) + 15) & !15;
        tensors.push(TensorDesc { h, w, c, arena_offset: off, zero_point: zp, scale });
        (tensors.len() - 1) as u16
    };
    let s_in = 4.0 / 127.0;
    let x = tensor(H, W, 1, 0, s_in as f32); // 0
    let c1 = tensor(H, W, 4, -3, 0.05); // 1
    let gn = tensor(H, W, 4, 0, 0.03); // 2
    let act = tensor(H, W, 4, -100, 0.02); // 3
    let emb = tensor(1, 1, 4, 0, 0.02); // 4
    let sum = tensor(H, W, 4, 0, 0.04); // 5
    let prod = tensor(H, W, 4, 0, 0.04); // 6
    let down = tensor(H / 2, W / 2, 4, 0, 0.05); // 7
    let up = tensor(H, W, 4, 0, 0.05); // 8
    let sm = tensor(H, W, 4, -128, 1.0 / 256.0); // 9
    let mm = tensor(H, W, 4, 0, 0.05); // 10
    let rq = tensor(H, W, 4, 5, 0.04); // 11
    let cat = tensor(H, W, 12, 0, 0.04); // 12
    let eps = tensor(H, W, 1, 0, 1.0 / 64.0); // 13
    let mut scratch = |n: u32| {
        let off = arena;
        arena += (n + 15) & !15;
        off
    };

    let conv = |b: &mut ArtifactBuilder,
                r: &mut Rng,
                ic: usize,
                occ: usize,
                k: i32,
                stride: i32,
                pad: i32,
                in_zp: i32,
                out_zp: i32,
                real: f64| {
        let w = b.add_weights_i8(&r.i8s(occ * (k * k) as usize * ic, 100));
        let bias: Vec<i32> = (0..occ).map(|_| (r.next() % 2001) as i32 - 1000).collect();
        let bias = b.add_weights_i32(&bias);
        let (m, s) = mq(real, occ);
        let m = b.add_weights_i32(&m);
        let s = b.add_weights_i32(&s);
        let mut p = vec![k, k, stride, stride, pad, pad, pad, pad, in_zp, out_zp, -128, 127];
        for wr in [w, bias, m, s] {
            p.extend(wr.params());
        }
        p
    };
    let p = conv(&mut b, &mut r, 1, 4, 3, 1, 1, 0, -3, 0.01);
    let sc = scratch(scratch_bytes(oc::CONV2D, &[[H, W, 1]], [H, W, 4], &p));
    ops.push(OpDesc {
        opcode: oc::CONV2D,
        inputs: vec![x],
        outputs: vec![c1],
        params: p,
        scratch_offset: sc,
        scratch_len: 16,
    });

    // Group norm, γ around 1, β small.
    let gm: Vec<i32> =
        (0..4).map(|i| quantize_multiplier((0.8 + 0.1 * i as f64) / (0.03 * 65536.0)).0).collect();
    let gs: Vec<i32> =
        (0..4).map(|i| quantize_multiplier((0.8 + 0.1 * i as f64) / (0.03 * 65536.0)).1).collect();
    let gb = vec![1, -2, 0, 3];
    let eps_q32 = (1e-5 / (0.05f64 * 0.05) * 2f64.powi(32)).round() as u64;
    let (wm, ws, wb) = (b.add_weights_i32(&gm), b.add_weights_i32(&gs), b.add_weights_i32(&gb));
    let mut p = vec![2, -3, 0, eps_q32 as u32 as i32, (eps_q32 >> 32) as i32];
    for wr in [wm, ws, wb] {
        p.extend(wr.params());
    }
    ops.push(OpDesc {
        opcode: oc::GROUP_NORM,
        inputs: vec![c1],
        outputs: vec![gn],
        params: p,
        ..Default::default()
    });

    // SiLU table: input scale 0.03 zp 0 → output scale 0.02 zp −100.
    let lut: Vec<i8> = (0..256)
        .map(|i| {
            let v = (i as f64 - 128.0) * 0.03;
            let y = v / (1.0 + (-v).exp());
            ((y / 0.02).round() - 100.0).clamp(-128.0, 127.0) as i8
        })
        .collect();
    let lw = b.add_weights_i8(&lut);
    ops.push(OpDesc {
        opcode: oc::LUT,
        inputs: vec![gn],
        outputs: vec![act],
        params: lw.params().to_vec(),
        ..Default::default()
    });

    let table = b.add_weights_i8(&r.i8s(T as usize * 4, 120));
    let mut p = vec![T as i32, 4];
    p.extend(table.params());
    ops.push(OpDesc {
        opcode: oc::TIMESTEP_EMBED,
        inputs: vec![],
        outputs: vec![emb],
        params: p,
        ..Default::default()
    });

    let (am, ash) = quantize_multiplier(0.02 / (2.0 * 0.02));
    let (om, osh) = quantize_multiplier(2.0 * 0.02 / ((1 << 20) as f64 * 0.04));
    ops.push(OpDesc {
        opcode: oc::ADD,
        inputs: vec![act, emb],
        outputs: vec![sum],
        params: vec![1, -100, 0, 0, 20, am, ash, am, ash, om, osh, -128, 127],
        ..Default::default()
    });
    let (mm_, ms) = quantize_multiplier(0.04 * 0.04 / 0.04);
    ops.push(OpDesc {
        opcode: oc::MUL,
        inputs: vec![sum, sum],
        outputs: vec![prod],
        params: vec![0, 0, 0, 0, mm_, ms, -128, 127],
        ..Default::default()
    });
    let p = conv(&mut b, &mut r, 4, 4, 3, 2, 1, -100, 0, 0.004);
    let sc = scratch(16);
    ops.push(OpDesc {
        opcode: oc::CONV2D,
        inputs: vec![act],
        outputs: vec![down],
        params: p,
        scratch_offset: sc,
        scratch_len: 16,
    });
    ops.push(OpDesc {
        opcode: oc::UPSAMPLE_NEAREST,
        inputs: vec![down],
        outputs: vec![up],
        params: vec![2, 2],
        ..Default::default()
    });
    let exp: Vec<u32> =
        (0..256).map(|d| ((-0.05 * d as f64).exp() * 65536.0).round() as u32).collect();
    let ew = b.add_weights_u32(&exp);
    let mut p = vec![16, 4];
    p.extend(ew.params());
    ops.push(OpDesc {
        opcode: oc::SOFTMAX,
        inputs: vec![up],
        outputs: vec![sm],
        params: p,
        ..Default::default()
    });
    // y[16×4] = softmax[16×4] · gn viewed as 4×4 (its first 16 values).
    let (m2, s2) = quantize_multiplier(1.0 / 256.0 * 0.03 / 0.05);
    ops.push(OpDesc {
        opcode: oc::MATMUL,
        inputs: vec![sm, gn],
        outputs: vec![mm],
        params: vec![1, 16, 4, 4, -128, 0, 0, m2, s2, -128, 127, 0, 4, 1, 0, 4, 1, 0, 4, 1],
        ..Default::default()
    });
    let (m3, s3) = quantize_multiplier(0.05 / 0.04);
    ops.push(OpDesc {
        opcode: oc::REQUANT,
        inputs: vec![mm],
        outputs: vec![rq],
        params: vec![0, 5, m3, s3],
        ..Default::default()
    });
    let (m4, s4) = quantize_multiplier(0.05 / 0.04);
    ops.push(OpDesc {
        opcode: oc::CONCAT,
        inputs: vec![prod, c1, rq],
        outputs: vec![cat],
        params: vec![0, 0, 0, 0, -3, m4, s4, 5, 0, 0],
        ..Default::default()
    });
    let p = conv(&mut b, &mut r, 12, 1, 1, 1, 0, 0, 0, 0.02);
    let sc = scratch(4);
    ops.push(OpDesc {
        opcode: oc::CONV2D,
        inputs: vec![cat],
        outputs: vec![eps],
        params: p,
        scratch_offset: sc,
        scratch_len: 4,
    });

    b.set_schedule(ScheduleDesc::linear(T, 0.01, 0.2));
    b.set_provenance(r#"{"converter_version":"test"}"#);
    let (im, is) = quantize_multiplier(2f64.powi(-24) / s_in);
    let model = ModelDesc {
        input_tensor: x as u32,
        output_tensor: eps as u32,
        timesteps: T,
        state_frac_bits: 24,
        input_multiplier: im,
        input_shift: is,
        eps_to_state_q16: (1.0 / 64.0 * 2f64.powi(40)).round() as i64,
        image_h: H as u32,
        image_w: W as u32,
        image_c: 1,
    };
    Parts { b, tensors, ops, model, arena }
}

pub fn tiny() -> Vec<u8> {
    parts().finish()
}

/// Recomputes the CRC after a deliberate edit.
pub fn fix_crc(bytes: &mut [u8]) {
    let c = ddpm_runtime::format::artifact_crc(bytes);
    bytes[20..24].copy_from_slice(&c.to_le_bytes());
}
