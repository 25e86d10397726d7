//! The ONNX ingestion check (`onnx_ingest` target).

use std::path::PathBuf;

use ddpm_converter::{float, load, lower};

/// Timesteps the lowering is asked for (the embedding table has this many rows).
pub const TIMESTEPS: usize = 4;

fn scratch_path() -> PathBuf {
    // `load::load` reads a path; one file per process, on tmpfs when available.
    let dir = std::env::var_os("DDPM_FUZZ_TMP")
        .map(PathBuf::from)
        .or_else(|| {
            let shm = PathBuf::from("/dev/shm");
            shm.is_dir().then_some(shm)
        })
        .unwrap_or_else(std::env::temp_dir);
    dir.join(format!("ddpm-fuzz-onnx-{}.onnx", std::process::id()))
}

/// How far [`check_onnx`] got.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OnnxOutcome {
    /// `load::load` succeeded.
    pub loaded: bool,
    /// `lower::lower` succeeded.
    pub lowered: bool,
}

/// Runs `load::load` on `data` and, on success, `lower::lower`. The timestep
/// embedding is evaluated with tract (`float::time_table`, as `convert` does) for
/// one input in eight, chosen by length, and is a zero table otherwise (the
/// evaluation optimizes and runs the model, which would dominate every execution).
pub fn check_onnx(data: &[u8]) -> OnnxOutcome {
    let mut out = OnnxOutcome::default();
    let path = scratch_path();
    if std::fs::write(&path, data).is_err() {
        return out;
    }
    let l = match load::load(&path, None) {
        Ok(l) => l,
        Err(_) => return out,
    };
    out.loaded = true;
    let _ = load::dump(&l.model);
    let real_table = data.len() % 8 == 0;
    let chw = l.image_chw;
    let model = &l.model;
    let mut table = |outlets: &[tract_onnx::prelude::OutletId]| {
        if real_table {
            return float::time_table(model, chw, outlets, TIMESTEPS);
        }
        let mut total = 0usize;
        for o in outlets {
            let f = model.outlet_fact(*o)?;
            let n: usize = f.shape.as_concrete().map(|s| s.iter().product()).unwrap_or(1);
            total = total.saturating_add(n);
        }
        Ok(vec![0f32; TIMESTEPS.saturating_mul(total).min(1 << 24)])
    };
    if let Ok(lw) = lower::lower(model, TIMESTEPS, &mut table) {
        out.lowered = true;
        let g = &lw.graph;
        let _ = g.params();
        for op in &g.ops {
            let _ = g.macs(op);
        }
    }
    out
}
