//! The ONNX ingestion check (`onnx_ingest` target).

use std::path::PathBuf;

use ddpm_converter::ingest::{float, load, lower};

/// Timesteps the lowering is asked for (the embedding table has this many rows).
pub const TIMESTEPS: usize = 4;

/// Inputs whose length is a multiple of this get the real timestep table.
pub const REAL_TABLE_EVERY: usize = 64;

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

/// `DDPM_FUZZ_VERBOSE=1`: print why each input stops (to check seeds by hand).
fn verbose() -> bool {
    use std::sync::OnceLock;
    static V: OnceLock<bool> = OnceLock::new();
    *V.get_or_init(|| std::env::var_os("DDPM_FUZZ_VERBOSE").is_some_and(|v| v == "1"))
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
/// embedding is evaluated by the deterministic evaluator (`float::time_table`, as `convert` does) for
/// one input length in 64, and is a zero table otherwise: the evaluation optimizes
/// and runs the model, which is not ingestion and costs more than all the rest.
pub fn check_onnx(data: &[u8]) -> OnnxOutcome {
    let mut out = OnnxOutcome::default();
    let path = scratch_path();
    if std::fs::write(&path, data).is_err() {
        return out;
    }
    let verbose = verbose();
    let l = match load::load(&path, None) {
        Ok(l) => l,
        Err(e) => {
            if verbose {
                eprintln!("load: {e:#}");
            }
            return out;
        }
    };
    out.loaded = true;
    let real_table = data.len() % REAL_TABLE_EVERY == 0;
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
    let lowered = lower::lower(model, TIMESTEPS, &mut table);
    if verbose {
        match &lowered {
            Ok(lw) => eprintln!("lowered: {} ops", lw.graph.ops.len()),
            Err(e) => eprintln!("lower: {e:#}"),
        }
    }
    if let Ok(lw) = lowered {
        out.lowered = true;
        let g = &lw.graph;
        let _ = g.params();
        for op in &g.ops {
            let _ = g.macs(op);
        }
    }
    out
}
