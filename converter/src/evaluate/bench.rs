//! `converter bench`: per-step latency and peak memory of the int8 runtime and of
//! tract f32 on the same model, in the same process, steps interleaved.
//!
//! A step is one network evaluation plus the sampler update (DDIM, η = 0, the
//! same timesteps on both engines). Memory: int8 is exact, the sampler's arena
//! (network tensors + scratch + i32 state; the artifact itself is read in place);
//! tract is the growth of the process's peak RSS (`VmHWM` in `/proc/self/status`,
//! reset first through `/proc/self/clear_refs` when the kernel allows) over loading,
//! optimizing and running the model, which includes its weights and plan buffers.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use ddpm_runtime::format::opcode_name;
use ddpm_runtime::{Hooks, Mode, Model, NoHooks, Sampler, SamplerConfig, Sigma};
use serde_json::json;

use crate::evaluate::sample::{self, FloatSampler, FloatSchedule, Precision};

/// `converter bench` options.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// The artifact.
    pub artifact: PathBuf,
    /// Float ONNX for tract; None: `models/mnist_unet.onnx`.
    pub model: Option<PathBuf>,
    /// Print JSON instead of text.
    pub json: bool,
    /// Timed steps per engine (at least 10).
    pub steps: u32,
    /// Warm-up steps before timing.
    pub warmup: u32,
    /// Give the int8 sampler the prepared-weights cache (`Sampler::arena_bytes_with_cache`).
    pub weight_cache: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            artifact: PathBuf::new(),
            model: None,
            json: false,
            steps: 20,
            warmup: 2,
            weight_cache: true,
        }
    }
}

/// A `/proc/self/status` field in kB, as bytes.
fn proc_status_bytes(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resets the peak-RSS counter (Linux ≥ 4.0); false where it is not allowed.
fn reset_hwm() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Wall time per opcode (host profile of the int8 runtime).
#[derive(Default)]
struct OpTimer {
    start: Option<Instant>,
    per_opcode: std::collections::BTreeMap<u16, f64>,
}

impl Hooks for OpTimer {
    fn op_start(&mut self, _index: u16, _opcode: u16) {
        self.start = Some(Instant::now());
    }
    fn op_end(&mut self, _index: u16, opcode: u16) {
        if let Some(s) = self.start.take() {
            *self.per_opcode.entry(opcode).or_default() += s.elapsed().as_secs_f64() * 1e3;
        }
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// `converter bench`.
///
/// # Errors
/// Bad options, load or run failures.
pub fn run_bench(o: &BenchOptions) -> Result<()> {
    let (artifact, json_out) = (&o.artifact, o.json);
    let (steps, warmup, cache) = (o.steps, o.warmup, o.weight_cache);
    let model = o.model.clone().unwrap_or_else(|| sample::default_model_path("mnist_unet.onnx"));
    if steps < 10 {
        bail!("--steps must be at least 10 (the median of fewer steps is noise)");
    }
    let bytes =
        std::fs::read(artifact).with_context(|| format!("cannot read {}", artifact.display()))?;
    let m = Model::load(&bytes).map_err(|e| anyhow!("artifact rejected: {e}"))?;
    let total = steps + warmup;
    if total > m.timesteps() {
        bail!("--steps + --warmup must not exceed T = {}", m.timesteps());
    }
    let cfg = SamplerConfig {
        seed: 1,
        mode: Mode::Ddim { steps: total, eta_q16: 0 },
        sigma: Sigma::Beta,
        clip_x0: false,
    };

    // tract first, so its peak-RSS growth is not hidden by earlier allocations.
    let hwm_reset = reset_hwm();
    let rss0 = proc_status_bytes(if hwm_reset { "VmRSS:" } else { "VmHWM:" });
    let (fm, chw) = sample::load_float(&model, Precision::F32)?;
    let sched = FloatSchedule::from_model(&m);
    let mut fs = FloatSampler::new(&fm, &sched, chw, cfg)?;
    fs.step()?; // plan buffers allocated on the first run

    let arena_len =
        if cache { Sampler::arena_bytes_with_cache(&m) } else { Sampler::arena_bytes(&m) };
    let cache_bytes = arena_len - Sampler::arena_bytes(&m);
    let mut arena = vec![0u8; arena_len];
    let int8_bytes = arena.len();
    let mut q = Sampler::new(&m, &mut arena, cfg).map_err(|e| anyhow!("sampler: {e}"))?;
    q.step(&mut NoHooks).map_err(|e| anyhow!("{e}"))?;

    let (mut ti, mut tf) = (Vec::new(), Vec::new());
    for k in 1..total {
        let s = Instant::now();
        q.step(&mut NoHooks).map_err(|e| anyhow!("{e}"))?;
        let di = s.elapsed().as_secs_f64() * 1e3;
        let s = Instant::now();
        fs.step()?;
        let df = s.elapsed().as_secs_f64() * 1e3;
        if k >= warmup {
            ti.push(di);
            tf.push(df);
        }
    }
    // Where the int8 step's time goes: a separate pass with per-op timing hooks (not
    // part of the timed steps above), mean ms per step per op class.
    let mut arena2 = vec![0u8; arena_len];
    let mut q2 = Sampler::new(&m, &mut arena2, cfg).map_err(|e| anyhow!("sampler: {e}"))?;
    let mut timer = OpTimer::default();
    let prof_steps = total.min(10);
    for _ in 0..prof_steps {
        q2.step(&mut timer).map_err(|e| anyhow!("{e}"))?;
    }
    let mut per_op: Vec<(&'static str, f64)> = timer
        .per_opcode
        .iter()
        .map(|(&op, &ms)| (opcode_name(op), ms / prof_steps as f64))
        .collect();
    per_op.sort_by(|a, b| b.1.total_cmp(&a.1));
    let tract_peak = match (rss0, proc_status_bytes("VmHWM:")) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    let n_timed = ti.len();
    let (int8_ms, tract_ms) = (median(&mut ti), median(&mut tf));
    let ratio = int8_ms / tract_ms;
    let method = if hwm_reset {
        "VmHWM after tract load+optimize+steps minus VmRSS before (peak reset via clear_refs)"
    } else {
        "VmHWM growth over tract load+optimize+steps (peak could not be reset)"
    };
    if json_out {
        let j = json!({
            "int8_step_ms": int8_ms,
            "tract_step_ms": tract_ms,
            "ratio": ratio,
            "steps_timed": n_timed,
            "int8_peak_bytes": int8_bytes,
            "int8_arena_bytes": m.arena_bytes(),
            "int8_state_bytes": 4 * m.image_len(),
            "int8_weight_cache_bytes": cache_bytes,
            "artifact_bytes": bytes.len(),
            "tract_peak_bytes": tract_peak,
            "tract_memory_method": method,
            "int8_memory_method": "Sampler::arena_bytes_with_cache: network arena (tensors + scratch) padded to 4 + i32 state + prepared-weights cache (x86_64 AVX2: Winograd-transformed weights); artifact read in place",
            "int8_op_ms_per_step": per_op.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        });
        println!("{}", serde_json::to_string_pretty(&j)?);
        return Ok(());
    }
    println!("per denoising step (network + update), median of {n_timed} interleaved steps:");
    println!("  int8 runtime : {int8_ms:9.3} ms/step");
    println!("  tract f32    : {tract_ms:9.3} ms/step");
    println!("  ratio int8/tract: {ratio:.2}×");
    println!("int8 runtime by op class (mean of {prof_steps} profiled steps):");
    for (k, v) in &per_op {
        println!("  {k:<16} {v:8.3} ms/step");
    }
    println!("memory:");
    println!(
        "  int8 : {int8_bytes} bytes (arena {} + state {} + prepared-weights cache {}; artifact {} bytes read in place)",
        m.arena_bytes(),
        4 * m.image_len(),
        cache_bytes,
        bytes.len()
    );
    match tract_peak {
        Some(p) => println!("  tract: {p} bytes ({method})"),
        None => println!("  tract: unavailable (no /proc/self/status)"),
    }
    Ok(())
}
