//! `converter sensitivity`: which precision limits ε fidelity, measured by simulation.
//!
//! The lowered float graph runs in the IR interpreter with values rounded to a
//! chosen precision after every op ("fake quantization"), on float DDIM trajectories
//! from a seed other than calibration's. Each configuration reports the ε SQNR
//! against tract per visited timestep: median, worst, and the small-t figures where
//! int8 loses most. It answers "would int16 activations (everywhere, or only at the
//! image's resolution) or better weights reach a target?" before any kernel exists.
//! The int8 artifact itself is measured by `converter compare`.

use std::path::PathBuf;

use anyhow::{bail, Result};
use serde_json::{json, Value};

use crate::artifact::convert::Options;
use crate::evaluate::compare::{median_worst, sqnr_db};
use crate::ingest::float::{self, FloatModel};
use crate::ingest::ir::{Graph, OpKind};
use crate::ingest::{load, lower};
use crate::quantize::calib::{self, Method, Settings, State};
use crate::quantize::interp;
use crate::quantize::quant::{self, QParams};

/// `converter sensitivity` options.
#[derive(Clone, Debug)]
pub struct SensitivityOptions {
    /// The float ONNX model.
    pub model: PathBuf,
    /// Calibration trajectories.
    pub calib_trajectories: usize,
    /// Evaluation trajectories (from a seed other than calibration's).
    pub eval_trajectories: usize,
    /// Timesteps per evaluation trajectory.
    pub eval_timesteps: usize,
    /// Also leave one tensor at a time in float and rank the gains.
    pub per_tensor: bool,
    /// Print JSON instead of text.
    pub json: bool,
}

impl Default for SensitivityOptions {
    fn default() -> Self {
        SensitivityOptions {
            model: PathBuf::new(),
            calib_trajectories: 8,
            eval_trajectories: 2,
            eval_timesteps: 100,
            per_tensor: false,
            json: false,
        }
    }
}

/// Activation precision of one simulated tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Prec {
    Float,
    Int8,
    Int16,
}

/// One simulated configuration.
struct Config {
    name: &'static str,
    weights_int8: bool,
    /// Activation precision per tensor id.
    act: Box<dyn Fn(usize) -> Prec>,
    /// Tensor parameters when not derived from int8's (see the loop below).
    params: Option<Vec<QParams>>,
}

/// Rounds `v` to int8 (`q8`) or to int16: with `q8` itself when it is int16
/// parameters, else on int8's range (scale / 256, zero point × 256).
fn fake_quant(v: &mut [f32], p: Prec, q8: &QParams) {
    let (scale, zp, lo, hi) = match p {
        Prec::Float => return,
        Prec::Int16 if q8.is_i16() => (q8.scale, 0.0, -32768.0, 32767.0),
        Prec::Int8 => (q8.scale, q8.zero_point as f64, -128.0, 127.0),
        Prec::Int16 => (q8.scale / 256.0, q8.zero_point as f64 * 256.0, -32768.0, 32767.0),
    };
    for x in v.iter_mut() {
        *x = (((*x as f64 / scale + zp).round().clamp(lo, hi) - zp) * scale) as f32;
    }
}

/// Int8 symmetric per-output-channel weights, as the converter quantizes them.
fn quantize_weights(g: &mut Graph) {
    for op in &mut g.ops {
        if let OpKind::Conv2d { weights, bias, .. } = &mut op.kind {
            let per = weights.len() / bias.len().max(1);
            for w in weights.chunks_mut(per.max(1)) {
                let s = w.iter().fold(0f32, |a, b| a.max(b.abs())).max(1e-12) / 127.0;
                for x in w.iter_mut() {
                    *x = (*x / s).round().clamp(-127.0, 127.0) * s;
                }
            }
        }
    }
}

fn eps_sqnr(
    g: &Graph,
    chw: [usize; 3],
    states: &[State],
    q: &[QParams],
    act: &dyn Fn(usize) -> Prec,
) -> Vec<(usize, f64)> {
    let [c, h, w] = chw;
    states
        .iter()
        .map(|s| {
            let mut hook = |id: usize, v: &mut [f32]| fake_quant(v, act(id), &q[id]);
            let vals = interp::run_hooked(g, &interp::nchw_to_nhwc(&s.x, c, h, w), s.t, &mut hook);
            let e = interp::nhwc_to_nchw(&vals[g.output], c, h, w);
            (s.t, sqnr_db(&s.eps, &e))
        })
        .collect()
}

/// Median, worst (with its timestep) and the mean over `t < T/20` of one run.
fn summary(r: &[(usize, f64)], timesteps: usize) -> Value {
    let (med, worst) = median_worst(r);
    let worst_t = r.iter().find(|x| x.1 == worst).map(|x| x.0);
    let small: Vec<f64> = r.iter().filter(|x| x.0 < timesteps / 20).map(|x| x.1).collect();
    let small_mean = small.iter().sum::<f64>() / small.len().max(1) as f64;
    json!({
        "eps_sqnr_db_median": med, "eps_sqnr_db_min": worst, "worst_t": worst_t,
        "small_t_mean_db": small_mean,
    })
}

/// Runs the command.
///
/// # Errors
/// Bad options, or a model that does not load, lower or run.
pub fn run_sensitivity(o: &SensitivityOptions) -> Result<()> {
    let (calib_traj, eval_traj, eval_steps) =
        (o.calib_trajectories, o.eval_trajectories, o.eval_timesteps);
    let (per_tensor, as_json, model) = (o.per_tensor, o.json, &o.model);
    if calib_traj == 0 || eval_traj == 0 || eval_steps == 0 {
        bail!("trajectory and timestep counts must be at least 1");
    }
    let opts = Options::default();
    let sched = &opts.schedule;
    let tsteps = sched.timesteps;
    let l = load::load(model, None)?;
    let chw = l.image_chw;
    let mut table =
        |o: &[tract_onnx::prelude::OutletId]| float::time_table(&l.model, chw, o, tsteps);
    let graph = lower::lower(&l.model, tsteps, &mut table)?.graph;
    let fm = FloatModel::new(&l.model, chw)?;
    eprintln!("calibrating on {calib_traj} trajectories, evaluating on {eval_traj} × {eval_steps} timesteps");
    let cs = Settings { trajectories: calib_traj, ..opts.calib };
    let states = calib::trajectories(&fm, chw, sched, &cs, false)?;
    let es = Settings {
        trajectories: eval_traj,
        timesteps: eval_steps,
        seed: opts.calib.seed ^ 0x5eed,
        ..opts.calib
    };
    let eval = calib::trajectories(&fm, chw, sched, &es, false)?;
    let stats = calib::collect(&graph, chw, &states, false);
    // int8 as the converter does it (its default method); int16 covers the full range.
    let q8 = quant::tensor_params(&graph, &stats, opts.calib.method);
    let q_mm = quant::tensor_params(&graph, &stats, Method::MinMax);
    let mut gw = graph.clone();
    quantize_weights(&mut gw);
    let full_res = {
        let hw = chw[1] * chw[2];
        let v: Vec<bool> = graph.tensors.iter().map(|t| t.h * t.w >= hw).collect();
        move |i: usize| v[i]
    };
    let fr = full_res.clone();
    // The tensors `converter quantize --activations mixed` makes int16 (the policy
    // without the parameter-fit check), with their symmetric min/max parameters.
    let wide = crate::quantize::precision::int16_tensors(&graph, chw[1] * chw[2], &[]);
    let q_mixed = quant::tensor_params_mixed(&graph, &stats, opts.calib.method, &wide);
    let wm = wide.clone();
    let configs: Vec<(Config, bool)> = vec![
        (
            Config {
                name: "w8 (activations float)",
                weights_int8: true,
                act: Box::new(|_| Prec::Float),
                params: None,
            },
            false,
        ),
        (
            Config {
                name: "a8 (weights float)",
                weights_int8: false,
                act: Box::new(|_| Prec::Int8),
                params: None,
            },
            false,
        ),
        (
            Config {
                name: "w8 a8 (the artifact's scheme)",
                weights_int8: true,
                act: Box::new(|_| Prec::Int8),
                params: None,
            },
            false,
        ),
        (
            Config {
                name: "w8 a16 everywhere",
                weights_int8: true,
                act: Box::new(|_| Prec::Int16),
                params: None,
            },
            true,
        ),
        (
            Config {
                name: "w8 a16 at image resolution, a8 elsewhere",
                weights_int8: true,
                act: Box::new(move |i| if fr(i) { Prec::Int16 } else { Prec::Int8 }),
                params: None,
            },
            true,
        ),
        (
            Config {
                name: "w8 a16 where --activations mixed puts it",
                weights_int8: true,
                act: Box::new(move |i| if wm[i] { Prec::Int16 } else { Prec::Int8 }),
                params: Some(q_mixed),
            },
            false,
        ),
    ];
    let mut rows = Vec::new();
    for (cfg, minmax16) in &configs {
        let g = if cfg.weights_int8 { &gw } else { &graph };
        // int16 tensors use the min/max range (no clipping); int8 ones the converter's.
        let q: Vec<QParams> = if let Some(q) = &cfg.params {
            q.clone()
        } else {
            (0..graph.tensors.len())
                .map(|i| if *minmax16 && (cfg.act)(i) == Prec::Int16 { q_mm[i] } else { q8[i] })
                .collect()
        };
        let r = eps_sqnr(g, chw, &eval, &q, &*cfg.act);
        let mut s = summary(&r, tsteps);
        s["config"] = json!(cfg.name);
        if !as_json {
            println!(
                "{:44} median {:6.2} dB  worst {:6.2} dB (t = {})  mean over t < {}: {:6.2} dB",
                cfg.name,
                s["eps_sqnr_db_median"].as_f64().unwrap_or(f64::NAN),
                s["eps_sqnr_db_min"].as_f64().unwrap_or(f64::NAN),
                s["worst_t"],
                tsteps / 20,
                s["small_t_mean_db"].as_f64().unwrap_or(f64::NAN),
            );
        }
        rows.push(s);
    }
    let mut tensors = Vec::new();
    if per_tensor {
        // Leave one tensor in float, all others int8, at t < T/6 where int8 is weakest.
        let small: Vec<State> = eval.iter().filter(|s| s.t < tsteps / 6).cloned().collect();
        let base = median_worst(&eps_sqnr(&gw, chw, &small, &q8, &|_| Prec::Int8)).0;
        let time_only = calib::time_only_tensors(&graph);
        let producers = graph.producers();
        for i in (0..graph.tensors.len()).filter(|&i| !time_only[i]) {
            let r = eps_sqnr(&gw, chw, &small, &q8, &|id| {
                if id == i {
                    Prec::Float
                } else {
                    Prec::Int8
                }
            });
            let op = producers[i].map(|p| graph.ops[p].kind.name()).unwrap_or("input");
            tensors.push(json!({
                "tensor": i, "name": graph.tensors[i].name, "op": op,
                "shape": graph.tensors[i].shape(), "gain_db": median_worst(&r).0 - base,
            }));
        }
        tensors.sort_by(|a, b| {
            b["gain_db"].as_f64().unwrap_or(0.0).total_cmp(&a["gain_db"].as_f64().unwrap_or(0.0))
        });
        if !as_json {
            println!(
                "\nleaving one tensor in float (w8 a8 elsewhere), median ε SQNR gain at t < {}:",
                tsteps / 6
            );
            for t in tensors.iter().take(10) {
                println!(
                    "  {:+6.2} dB  #{:<3} {:16} {:?} {}",
                    t["gain_db"].as_f64().unwrap_or(f64::NAN),
                    t["tensor"],
                    t["op"].as_str().unwrap_or(""),
                    t["shape"],
                    t["name"].as_str().unwrap_or("")
                );
            }
        }
    }
    if as_json {
        println!("{}", json!({ "configs": rows, "per_tensor": tensors }));
    }
    Ok(())
}
