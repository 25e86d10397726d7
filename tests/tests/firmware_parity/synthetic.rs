//! A small synthetic network in a valid artifact, so the firmware path can be
//! exercised without the converted MNIST model:
//! `x (28×28×1) → conv3×3 (8) → SiLU LUT → + timestep embedding → conv3×3 (1) = ε`.
//! Weights come from a fixed LCG; the schedule is the linear one of DESIGN.md.

use ddpm_runtime::format::writer::{ArtifactBuilder, ModelDesc, OpDesc, ScheduleDesc, TensorDesc};
use ddpm_runtime::quantize_multiplier;

const T: u32 = 1000;
const F: u32 = 24;
const H: u16 = 28;
const W: u16 = 28;
const C1: u16 = 8;

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
    fn i8(&mut self, lim: i32) -> i8 {
        ((self.next() % (2 * lim as u32 + 1)) as i32 - lim) as i8
    }
}

fn schedule() -> ScheduleDesc {
    let t = T as usize;
    let betas: Vec<f64> =
        (0..t).map(|i| 1e-4 + (0.02 - 1e-4) * i as f64 / (t - 1) as f64).collect();
    let mut abar = Vec::with_capacity(t);
    let mut p = 1.0f64;
    for b in &betas {
        p *= 1.0 - b;
        abar.push(p);
    }
    let prev = |i: usize| if i == 0 { 1.0 } else { abar[i - 1] };
    let q = |v: f64| (v * (1u64 << 30) as f64).round() as i32;
    let mut tables: [Vec<i32>; 8] = Default::default();
    for i in 0..t {
        let (b, a, ab) = (betas[i], 1.0 - betas[i], abar[i]);
        let vals = [
            1.0 / a.sqrt(),
            b / (1.0 - ab).sqrt(),
            b.sqrt(),
            (b * (1.0 - prev(i)) / (1.0 - ab)).sqrt(),
            ab.sqrt(),
            (1.0 - ab).sqrt(),
            b * prev(i).sqrt() / (1.0 - ab),
            a.sqrt() * (1.0 - prev(i)) / (1.0 - ab),
        ];
        for (k, v) in vals.iter().enumerate() {
            tables[k].push(q(*v));
        }
    }
    ScheduleDesc {
        timesteps: T,
        kind: 0,
        beta_start: 1e-4,
        beta_end: 0.02,
        frac_bits: [30; 8],
        tables,
    }
}

/// A 3×3, stride-1, same-padded conv layer.
struct ConvSpec {
    x: u16,
    y: u16,
    ic: usize,
    oc: usize,
    s_in: f64,
    s_out: f64,
}

fn conv(b: &mut ArtifactBuilder, rng: &mut Lcg, c: ConvSpec, scratch: u32) {
    let ConvSpec { x, y, ic, oc, s_in, s_out } = c;
    let s_w = 1.0 / 64.0;
    let w: Vec<i8> = (0..oc * 9 * ic).map(|_| rng.i8(40)).collect();
    let bias: Vec<i32> = (0..oc).map(|_| rng.i8(100) as i32 * 8).collect();
    let (m, s) = quantize_multiplier(s_in * s_w / s_out);
    let w = b.add_weights_i8(&w).params();
    let bias = b.add_weights_i32(&bias).params();
    let mult = b.add_weights_i32(&vec![m; oc]).params();
    let shift = b.add_weights_i32(&vec![s; oc]).params();
    let mut params = vec![3, 3, 1, 1, 1, 1, 1, 1, 0, 0, -128, 127];
    params.extend(w);
    params.extend(bias);
    params.extend(mult);
    params.extend(shift);
    b.add_op(OpDesc {
        opcode: 1,
        inputs: vec![x],
        outputs: vec![y],
        params,
        scratch_offset: scratch,
        scratch_len: 4 * oc as u32,
    });
}

/// Bytes of the synthetic artifact.
pub fn artifact() -> Vec<u8> {
    let mut rng = Lcg(0x5eed);
    let mut b = ArtifactBuilder::new();
    let s_x = 4.0 / 127.0; // input: x_t in ±4
    let s_h = 1.0 / 16.0; // hidden activations
    let s_e = 1.0 / 127.0; // timestep embedding
    let s_eps = 4.0 / 127.0; // ε
    let mut off = 0u32;
    let mut tensor = |b: &mut ArtifactBuilder, h: u16, w: u16, c: u16, scale: f64| {
        let id = b.add_tensor(TensorDesc {
            h,
            w,
            c,
            arena_offset: off,
            zero_point: 0,
            scale: scale as f32,
        });
        off += (h as u32 * w as u32 * c as u32 + 15) & !15;
        id
    };
    let x = tensor(&mut b, H, W, 1, s_x);
    let h1 = tensor(&mut b, H, W, C1, s_h);
    let h2 = tensor(&mut b, H, W, C1, s_h);
    let e = tensor(&mut b, 1, 1, C1, s_e);
    let h3 = tensor(&mut b, H, W, C1, s_h);
    let eps = tensor(&mut b, H, W, 1, s_eps);
    let scratch = off;
    let arena = scratch + 4 * C1 as u32;

    let c1 = ConvSpec { x, y: h1, ic: 1, oc: C1 as usize, s_in: s_x, s_out: s_h };
    conv(&mut b, &mut rng, c1, scratch);
    let silu: Vec<i8> = (-128..128)
        .map(|q| {
            let v = q as f64 * s_h;
            (v / (1.0 + (-v).exp()) / s_h).round().clamp(-128.0, 127.0) as i8
        })
        .collect();
    let lut = b.add_weights_i8(&silu).params();
    b.add_op(OpDesc {
        opcode: 3,
        inputs: vec![h1],
        outputs: vec![h2],
        params: lut.to_vec(),
        ..Default::default()
    });
    let dim = C1 as usize;
    let table: Vec<i8> = (0..T as usize)
        .flat_map(|t| {
            (0..dim).map(move |k| {
                let f = (-(k as f64) * (10000f64).ln() / dim as f64).exp();
                let v = if k % 2 == 0 { (t as f64 * f).sin() } else { (t as f64 * f).cos() };
                (v / s_e).round().clamp(-127.0, 127.0) as i8
            })
        })
        .collect();
    let table = b.add_weights_i8(&table).params();
    b.add_op(OpDesc {
        opcode: 10,
        inputs: vec![],
        outputs: vec![e],
        params: vec![T as i32, dim as i32, table[0], table[1]],
        ..Default::default()
    });
    // TFLite ADD parameters.
    let twice_max = 2.0 * s_h.max(s_e);
    let (am, ash) = quantize_multiplier(s_h / twice_max);
    let (bm, bsh) = quantize_multiplier(s_e / twice_max);
    let (om, osh) = quantize_multiplier(twice_max / ((1u64 << 20) as f64 * s_h));
    b.add_op(OpDesc {
        opcode: 4,
        inputs: vec![h2, e],
        outputs: vec![h3],
        params: vec![1, 0, 0, 0, 20, am, ash, bm, bsh, om, osh, -128, 127],
        ..Default::default()
    });
    let c2 = ConvSpec { x: h3, y: eps, ic: C1 as usize, oc: 1, s_in: s_h, s_out: s_eps };
    conv(&mut b, &mut rng, c2, scratch);

    let (im, ish) = quantize_multiplier(1.0 / ((1u64 << F) as f64 * s_x));
    b.set_model(ModelDesc {
        input_tensor: x as u32,
        output_tensor: eps as u32,
        timesteps: T,
        state_frac_bits: F,
        input_multiplier: im,
        input_shift: ish,
        eps_to_state_q16: (s_eps * (1u64 << (F + 16)) as f64).round() as i64,
        image_h: H as u32,
        image_w: W as u32,
        image_c: 1,
    });
    b.set_schedule(schedule());
    b.set_provenance(r#"{"source":"synthetic firmware test network","converter_version":"none"}"#);
    b.set_arena_bytes(arena);
    b.finish()
}
