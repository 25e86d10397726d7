//! Checks shared by the fuzz targets and the `replay` tool.
//!
//! Every function here must return normally for any input: a panic, an abort, an
//! out-of-bounds access or a hang is a bug in the code under test.

use ddpm_runtime::format::artifact_crc;
use ddpm_runtime::{Model, Mode, NoHooks, Sampler, SamplerConfig, Sigma};

/// Largest sampler arena the loader target allocates (bigger models are only loaded).
pub const MAX_ARENA: usize = 4 << 20;
/// Largest forward-pass cost (multiply-accumulates) the loader target runs a step
/// for; a well-formed but large network is not a bug, just slow.
pub const MAX_MACS: u64 = 20_000_000;
/// Largest summed tensor size (bytes written per forward pass) stepped through.
pub const MAX_WRITTEN: u64 = 16 << 20;

/// Offset of the `file_size` header field.
pub const FILE_SIZE_OFFSET: usize = 16;
/// Offset of the CRC header field.
pub const CRC_OFFSET: usize = ddpm_runtime::format::CRC_OFFSET;

/// Rewrites `file_size` and the CRC so that the loader's integrity checks pass and
/// the deeper validation sees the (mutated) content. No-op below 64 bytes.
pub fn patch_header(buf: &mut [u8]) {
    if buf.len() < ddpm_runtime::format::HEADER_SIZE {
        return;
    }
    let n = buf.len() as u32;
    buf[FILE_SIZE_OFFSET..FILE_SIZE_OFFSET + 4].copy_from_slice(&n.to_le_bytes());
    let c = artifact_crc(buf);
    buf[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&c.to_le_bytes());
}

/// What [`check_artifact`] got to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// `Model::load` on the raw bytes succeeded.
    pub raw_ok: bool,
    /// `Model::load` after [`patch_header`] succeeded.
    pub patched_ok: bool,
    /// Sampler steps that ran (0 when skipped or on a typed error).
    pub steps: u32,
}

/// `DDPM_FUZZ_FORWARD_ONLY=1`: run `Model::forward` instead of sampler steps, to keep
/// fuzzing the loader and the kernels while a sampler bug is open.
pub fn forward_only() -> bool {
    use std::sync::OnceLock;
    static F: OnceLock<bool> = OnceLock::new();
    *F.get_or_init(|| std::env::var_os("DDPM_FUZZ_FORWARD_ONLY").is_some_and(|v| v == "1"))
}

/// Fixed sampler arena, reused across runs (allocated once per process).
fn with_arena<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    use std::cell::RefCell;
    thread_local! {
        static ARENA: RefCell<Vec<u8>> = RefCell::new(vec![0u8; MAX_ARENA]);
    }
    ARENA.with(|a| f(&mut a.borrow_mut()))
}

/// Work one forward pass does, bounded with saturating arithmetic: (MACs, bytes
/// written). Uses only the public, documented view of the model.
pub fn forward_cost(model: &Model<'_>) -> (u64, u64) {
    let mut macs = 0u64;
    let mut written = 0u64;
    for op in model.ops() {
        // MATMUL: batch·m·n outputs of k products each, from the params directly so
        // a huge product cannot overflow inside this harness.
        let p = |i: usize| op.param(i).unwrap_or(0).max(0) as u64;
        // `Model::op_macs` multiplies these unchecked (see regressions/README.md);
        // only ask it when the product fits.
        let m = if op.opcode == ddpm_runtime::format::opcode::MATMUL {
            match p(0).checked_mul(p(1)).and_then(|v| v.checked_mul(p(2))?.checked_mul(p(3))) {
                Some(v) => model.op_macs(&op).max(v),
                None => u64::MAX,
            }
        } else {
            model.op_macs(&op)
        };
        macs = macs.saturating_add(m);
        if let Some(y) = op.output(0).and_then(|o| model.tensor_info(o).ok()) {
            written = written.saturating_add(y.size as u64);
        }
    }
    (macs, written)
}

/// Loads `data` as an artifact twice (as given, and with file size and CRC patched);
/// on success runs the public accessors and, when the model is small enough, one
/// sampler step in DDPM and one in DDIM mode.
pub fn check_artifact(data: &[u8]) -> Outcome {
    let mut out = Outcome::default();
    if let Ok(m) = Model::load(data) {
        out.raw_ok = true;
        // Valid as given: exercise it directly (the patch below is then a no-op).
        out.steps = exercise(&m, data);
        out.patched_ok = true;
        return out;
    }
    let mut buf = data.to_vec();
    patch_header(&mut buf);
    if let Ok(m) = Model::load(&buf) {
        out.patched_ok = true;
        out.steps = exercise(&m, &buf);
    }
    out
}

fn exercise(m: &Model<'_>, bytes: &[u8]) -> u32 {
    // Accessors a host tool or firmware calls on a loaded model.
    let _ = m.provenance();
    let _ = m.image_shape();
    let _ = m.schedule_kind();
    for k in 0..9 {
        let _ = m.schedule_frac_bits(k);
        let _ = m.sched(k, 0);
        let _ = m.sched(k, m.timesteps().saturating_sub(1));
    }
    for id in 0..m.tensor_count().saturating_add(1) {
        let _ = m.tensor_info(id);
    }
    for op in m.ops() {
        let _ = op.name();
        for i in 0..op.n_inputs() + 1 {
            let _ = op.input(i);
        }
        let _ = op.output(0);
        let _ = op.param(op.n_params());
    }

    let need = Sampler::arena_bytes(m);
    if need > MAX_ARENA {
        return 0;
    }
    let (macs, written) = forward_cost(m);
    if macs > MAX_MACS || written > MAX_WRITTEN {
        return 0;
    }
    // Seed and DDIM parameters from the bytes, so mutations reach other configs.
    let crc = ddpm_runtime::crc32(bytes);
    let t = m.timesteps();
    let cfgs = [
        SamplerConfig {
            seed: crc as u64,
            mode: Mode::Ddpm,
            sigma: match crc % 3 {
                0 => Sigma::Beta,
                1 => Sigma::BetaTilde,
                _ => Sigma::Zero,
            },
            clip_x0: crc & 8 != 0,
        },
        SamplerConfig {
            seed: !crc as u64,
            mode: Mode::Ddim { steps: 1 + (crc >> 4) % t, eta_q16: (crc >> 8) % 65537 },
            sigma: Sigma::Beta,
            clip_x0: crc & 16 != 0,
        },
    ];
    let mut steps = 0;
    if forward_only() {
        // Kernels only: the network at the first and the last timestep.
        with_arena(|arena| {
            let arena = &mut arena[..need];
            for t in [t - 1, 0] {
                if m.forward(arena, t, &mut NoHooks).is_ok() {
                    steps += 1;
                }
            }
        });
        return steps;
    }
    with_arena(|arena| {
        for cfg in cfgs {
            let arena = &mut arena[..need];
            if let Ok(mut s) = Sampler::new(m, arena, cfg) {
                if let Ok(Some(_)) = s.step(&mut NoHooks) {
                    steps += 1;
                    let mut px = vec![0u8; m.image_len()];
                    let _ = s.pixels(&mut px);
                    let _ = s.eps();
                }
            }
        }
    });
    steps
}

#[cfg(feature = "onnx")]
pub mod onnx;
