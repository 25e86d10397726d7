//! The library pipeline on the tiny UNet: lowering proven against tract, int8 quality,
//! memory plan, schedule in the artifact.

use std::path::Path;

use ddpm_converter::artifact::convert::{self, Options};
use ddpm_converter::evaluate::compare;
use ddpm_converter::quantize::calib::Settings;
use ddpm_converter::quantize::interp;
use ddpm_converter::quantize::schedule::Schedule;

fn tiny() -> (convert::Converted, Options) {
    let opts = Options {
        calib: Settings { trajectories: 2, timesteps: 10, ..Settings::default() },
        schedule: Schedule { timesteps: 200, ..Schedule::default() },
        ..Options::default()
    };
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny_unet.onnx");
    (convert::convert(&p, &opts).unwrap(), opts)
}

#[test]
fn lowering_matches_tract_and_int8_tracks_float() {
    let (c, opts) = tiny();
    assert!(c.lowering_error < 1e-4, "lowering error {}", c.lowering_error);
    // the IR interpreter against tract on fresh states, every visited timestep
    let states = convert::eval_states(&c, &opts.schedule, 99, 8).unwrap();
    assert!(states.len() >= 8);
    for s in &states {
        let x = interp::nchw_to_nhwc(&s.x, c.chw[0], c.chw[1], c.chw[2]);
        let v = interp::run(&c.graph, &x, s.t);
        let e = interp::nhwc_to_nchw(&v[c.graph.output], c.chw[0], c.chw[1], c.chw[2]);
        assert!(compare::sqnr_db(&s.eps, &e) > 80.0, "IR vs tract at t={}", s.t);
    }
    let r = compare::eps_sqnr(&c.bytes, &states).unwrap();
    let (med, worst) = compare::median_worst(&r);
    // a randomly initialised toy network: looser than the shipped model's targets
    assert!(med > 15.0 && worst > 5.0, "median {med} worst {worst}");
}

#[test]
fn artifact_records_plan_and_schedule() {
    let (c, _) = tiny();
    let m = ddpm_runtime::Model::load(&c.bytes).unwrap();
    assert_eq!(m.arena_bytes() as usize, c.arena.0);
    assert!(c.arena.0 >= c.arena.1 && c.arena.0 <= c.arena.1 * 5 / 4, "{:?}", c.arena);
    assert_eq!(m.timesteps(), 200);
    assert_eq!(m.state_frac_bits(), 24);
    let coef = Schedule { timesteps: 200, ..Schedule::default() }.coefficients();
    for i in [0u32, 1, 100, 199] {
        let v = m.sched(0, i).unwrap() as f64 / (1u64 << 30) as f64;
        assert!((v - coef.tables[0][i as usize]).abs() <= 1.0 / (1u64 << 30) as f64);
    }
    assert!(m.provenance().unwrap().contains("source_sha256"));
}

#[test]
fn no_reuse_plan_keeps_every_tensor() {
    let (c, _) = tiny();
    let q = compare::artifact_qparams(&c.bytes, &c.graph).unwrap();
    let sched = Schedule { timesteps: 200, ..Schedule::default() };
    let (debug, s) =
        ddpm_converter::artifact::write::write_with(&c.graph, &q, &sched, "{}", false).unwrap();
    assert!(s.plan.arena_bytes > c.arena.0);
    let states = vec![ddpm_converter::quantize::calib::State {
        x: vec![0.1; c.chw.iter().product()],
        t: 50,
        eps: vec![0.0; c.chw.iter().product()],
    }];
    let per = compare::tensor_sqnr(&debug, &c.graph, &states).unwrap();
    assert_eq!(per.len(), c.graph.tensors.len());
    // the embedding table is quantized directly: far better than 8-bit noise floor
    assert!(per[1] > 30.0, "embedding SQNR {}", per[1]);
}

#[test]
fn output_bias_correction_removes_the_mean_eps_offset() {
    let (on, opts) = tiny();
    let off_opts = Options { bias_correction: false, ..opts.clone() };
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny_unet.onnx");
    let off = convert::convert(&p, &off_opts).unwrap();
    // The calibration states themselves (same settings and seed, the IR interpreter).
    let (states, _) = ddpm_converter::quantize::calib::calibrate(
        &on.graph,
        on.chw,
        &opts.schedule,
        &opts.calib,
        false,
    )
    .unwrap();
    // Measure the remaining mean offset of each artifact on a copy of its graph.
    let offset = |c: &convert::Converted| {
        let mut g = c.graph.clone();
        convert::output_bias_correction(&mut g, &c.bytes, &states, c.chw).unwrap().unwrap()
    };
    let (d_off, d_on) = (offset(&off), offset(&on));
    assert_eq!(d_off.len(), on.chw[0]);
    for (a, b) in d_off.iter().zip(&d_on) {
        // The corrected artifact's offset is what is left after one linear fix:
        // requantizing ε and its bias (≪ the offset removed). 1e-4 absorbs an
        // uncorrected offset that was already ~0.
        assert!(b.abs() <= 0.25 * a.abs() + 1e-4, "offset {a} -> {b}");
    }
    assert!(d_off.iter().any(|a| a.abs() > 1e-4), "no offset to correct: {d_off:?}");
    assert_ne!(on.bytes, off.bytes);
}

/// Reproducible artifacts: two conversions of the shipped model in one process give
/// the same bytes (no timing or host field in the provenance), and the deterministic
/// timestep-embedding evaluator agrees with tract's run of the same sub-graph.
#[test]
fn two_conversions_give_identical_bytes() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/mnist_unet.onnx");
    let opts = Options {
        calib: Settings { trajectories: 1, timesteps: 3, ..Settings::default() },
        ..Options::default()
    };
    let a = convert::convert(&p, &opts).unwrap();
    let b = convert::convert(&p, &opts).unwrap();
    assert!(a.bytes == b.bytes, "two conversions differ");
    let prov = ddpm_runtime::Model::load(&a.bytes).unwrap().provenance().unwrap().to_string();
    for field in ["seconds", "lowering", "source_file"] {
        assert!(!prov.contains(field), "provenance holds {field}: {prov}");
    }
}

#[test]
fn time_table_matches_tract() {
    for model in ["../models/mnist_unet.onnx", "../models/diffusers/unet2d_tiny.onnx"] {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(model);
        let l = ddpm_converter::ingest::load::load(&p, None).unwrap();
        let mut frontier = Vec::new();
        let mut grab = |o: &[tract_onnx::prelude::OutletId]| {
            frontier = o.to_vec();
            ddpm_converter::ingest::float::time_table(&l.model, l.image_chw, o, 1000)
        };
        let g = ddpm_converter::ingest::lower::lower(&l.model, 1000, &mut grab).unwrap().graph;
        let ours = match &g.ops[0].kind {
            ddpm_converter::ingest::ir::OpKind::TimestepEmbed { table, .. } => table.clone(),
            k => panic!("first op {k:?}"),
        };
        let tract =
            ddpm_converter::ingest::float::time_table_tract(&l.model, l.image_chw, &frontier, 1000)
                .unwrap();
        assert_eq!(ours.len(), tract.len());
        // sin/cos of arguments up to ~1000 rad: a few ulp of the argument apart
        let worst = ours.iter().zip(&tract).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-4, "{model}: max |Δ| {worst}");
    }
}
