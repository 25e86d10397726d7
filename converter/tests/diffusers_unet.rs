//! A diffusers `UNet2DModel` (`models/diffusers/unet2d_tiny.onnx`, written by
//! `models/diffusers/export_unet2d.py`): diffusers' flipped cos/sin timestep embedding,
//! GroupNorm on the `[1, C, H·W]` attention input and 4-head attention through
//! `scaled_dot_product_attention`. It must lower to the runtime op set exactly
//! (checked against tract), load in the runtime and sample in int8.

use std::path::Path;
use std::sync::OnceLock;

use ddpm_converter::artifact::convert::{self, Converted, Options};
use ddpm_converter::evaluate::compare;
use ddpm_converter::ingest::ir::OpKind;
use ddpm_converter::quantize::calib::Settings;
use ddpm_converter::quantize::interp;
use ddpm_runtime::{Mode, Model, NoHooks, Sampler, SamplerConfig, Sigma};

fn converted() -> &'static (Converted, Options) {
    static C: OnceLock<(Converted, Options)> = OnceLock::new();
    C.get_or_init(|| {
        let opts = Options {
            calib: Settings { trajectories: 2, timesteps: 10, ..Settings::default() },
            ..Options::default()
        };
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/diffusers/unet2d_tiny.onnx");
        let c = convert::convert(&p, &opts).unwrap_or_else(|e| panic!("{e:#}"));
        (c, opts)
    })
}

#[test]
fn lowers_exactly_with_multi_head_attention() {
    let (c, opts) = converted();
    assert_eq!(c.chw, [1, 32, 32]);
    assert!(c.lowering_error < 1e-4, "lowering error {}", c.lowering_error);
    let g = &c.graph;
    let count = |f: &dyn Fn(&OpKind) -> bool| g.ops.iter().filter(|o| f(&o.kind)).count();
    // one embedding table for the whole t-only sub-graph (cos and sin halves)
    assert_eq!(count(&|k| matches!(k, OpKind::TimestepEmbed { dim: 16, .. })), 1);
    // four attention blocks (down, mid, two up), each QKᵀ and AV over 4 heads of 64×64
    assert_eq!(count(&|k| matches!(k, OpKind::Softmax { rows: 256, len: 64 })), 4);
    let mm: Vec<_> = g
        .ops
        .iter()
        .filter_map(|o| match o.kind {
            OpKind::MatMul { batch, m, k, n, alpha, .. } => Some((batch, m, k, n, alpha)),
            _ => None,
        })
        .collect();
    assert_eq!(mm.len(), 8, "{mm:?}");
    for (i, &(batch, m, k, n, alpha)) in mm.iter().enumerate() {
        let want = if i % 2 == 0 { (4, 64, 8, 64) } else { (4, 64, 64, 8) };
        assert_eq!((batch, m, k, n), want, "matmul {i}");
        // the 1/√8 SDPA scale is folded into the q and k projections, not the matmul
        assert_eq!(alpha, 1.0);
    }
    // the attention output is read back as the 8×8×32 image it is, without a copy
    let out_t = &g.tensors[g.output];
    assert_eq!((out_t.h, out_t.w, out_t.c), (32, 32, 1));
    for op in &g.ops {
        if let OpKind::MatMul { n: 8, .. } = op.kind {
            let t = &g.tensors[op.output];
            assert_eq!((t.h, t.w, t.c), (8, 8, 32), "{}", op.source);
        }
    }
    assert_eq!(g.params(), 204_449);
    // the IR interpreter against tract on fresh states
    let states = convert::eval_states(c, &opts.schedule, 7, 6).unwrap();
    assert!(states.len() >= 6);
    for s in &states {
        let x = interp::nchw_to_nhwc(&s.x, 1, 32, 32);
        let v = interp::run(g, &x, s.t);
        let e = interp::nhwc_to_nchw(&v[g.output], 1, 32, 32);
        assert!(compare::sqnr_db(&s.eps, &e) > 80.0, "IR vs tract at t={}", s.t);
    }
}

#[test]
fn int8_artifact_loads_and_samples() {
    let (c, opts) = converted();
    let m = Model::load(&c.bytes).unwrap();
    assert_eq!(m.image_shape(), [32, 32, 1]);
    assert_eq!(m.timesteps(), 1000);
    assert_eq!(m.arena_bytes() as usize, c.arena.0);
    assert!(c.arena.0 <= c.arena.1 * 5 / 4, "arena {:?}", c.arena);
    // int8 ε tracks float ε. The network is randomly initialised (noise-like
    // activations through 40 layers lose about 1 dB per layer; ≈ 12 dB median with
    // this short calibration, ≈ 14 dB with the default one), so the bounds are loose,
    // but well above what a mis-quantized op or a wrong stride would leave.
    let states = convert::eval_states(c, &opts.schedule, 99, 6).unwrap();
    let r = compare::eps_sqnr(&c.bytes, &states).unwrap();
    let (med, worst) = compare::median_worst(&r);
    assert!(med > 10.0 && worst > 6.0, "median {med} dB worst {worst} dB");
    // one DDIM sample, twice: deterministic, and not a constant image
    let sample = |seed| {
        let cfg = SamplerConfig {
            seed,
            mode: Mode::Ddim { steps: 5, eta_q16: 0 },
            sigma: Sigma::Beta,
            clip_x0: false,
        };
        let mut arena = vec![0u8; Sampler::arena_bytes(&m)];
        let mut s = Sampler::new(&m, &mut arena, cfg).unwrap();
        let mut steps = 0;
        while s.step(&mut NoHooks).unwrap().is_some() {
            steps += 1;
        }
        assert_eq!(steps, 5);
        let mut px = vec![0u8; m.image_len()];
        s.pixels(&mut px).unwrap();
        px
    };
    let a = sample(1);
    assert_eq!(a.len(), 32 * 32);
    assert_eq!(a, sample(1));
    assert_ne!(a, sample(2));
    let (lo, hi) = (a.iter().min().unwrap(), a.iter().max().unwrap());
    assert!(hi - lo > 32, "pixels span only {lo}..{hi}");
}
