//! `converter`: quantize a DDPM UNet ONNX into a ddpm-edge artifact, inspect one,
//! compare one against the float model.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use ddpm_converter::calib::{Method, Settings};
use ddpm_converter::convert::{self, Options};
use ddpm_converter::precision::{self, Activations};
use ddpm_converter::schedule::{Kind, Schedule};
use ddpm_converter::{compare, inspect, load};

const USAGE: &str = "usage:
  converter quantize MODEL.onnx [-o OUT.ddq] [--input-shape C,H,W]
      [--schedule linear|cosine|quadratic] [--timesteps T] [--beta-start B] [--beta-end B]
      [--calib-trajectories N] [--calib-timesteps N] [--calib-seed S]
      [--calib-method minmax|percentile|mse] [--activations mixed|int8] [--report-sqnr N]
      [--quiet] [--board qemu-m4|qemu-m7|pico|stm32h743|nrf52840|stm32f411|custom:FLASH,RAM]
      [--no-bias-correction]
      --no-bias-correction: keep the output conv's bias as trained (by default it is
      corrected by the quantized network's mean ε error on the calibration states);
      --activations mixed (default): int16 activations (int8 weights) for the tensors at
      the image's resolution where every op touching them allows it, int8 elsewhere;
      int8: int8 everywhere
  converter inspect ARTIFACT.ddq [--json]
  converter compare ARTIFACT.ddq MODEL.onnx --per-tensor [--steps N] [--seed S] [--min-t T]
  converter dump-graph MODEL.onnx      (tract's decluttered graph, for debugging)";

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Flags and positional arguments.
struct Args {
    pos: Vec<String>,
    flags: Vec<(String, Option<String>)>,
}

const SWITCHES: &[&str] = &["--json", "--quiet", "--per-tensor", "--no-bias-correction"];

impl Args {
    fn parse(v: &[String]) -> Result<Args> {
        let (mut pos, mut flags) = (Vec::new(), Vec::new());
        let mut i = 0;
        while i < v.len() {
            let a = &v[i];
            if a.starts_with('-') && a.len() > 1 {
                if SWITCHES.contains(&a.as_str()) {
                    flags.push((a.clone(), None));
                } else {
                    let val = v.get(i + 1).ok_or_else(|| anyhow!("{a} needs a value"))?;
                    flags.push((a.clone(), Some(val.clone())));
                    i += 1;
                }
            } else {
                pos.push(a.clone());
            }
            i += 1;
        }
        Ok(Args { pos, flags })
    }
    fn has(&self, f: &str) -> bool {
        self.flags.iter().any(|(k, _)| k == f)
    }
    fn get(&self, f: &str) -> Option<&str> {
        self.flags.iter().rev().find(|(k, _)| k == f).and_then(|(_, v)| v.as_deref())
    }
    fn num<T: std::str::FromStr>(&self, f: &str, default: T) -> Result<T> {
        match self.get(f) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| anyhow!("{f} {v:?} is not a valid number")),
        }
    }
    fn check(&self, allowed: &[&str], npos: usize) -> Result<()> {
        for (k, _) in &self.flags {
            if !allowed.contains(&k.as_str()) {
                bail!("unknown option {k} (see converter --help)");
            }
        }
        if self.pos.len() != npos {
            bail!(
                "expected {npos} file argument(s), got {} (see converter --help)",
                self.pos.len()
            );
        }
        Ok(())
    }
}

fn run() -> Result<()> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = argv.first() else { bail!("{USAGE}") };
    if argv[1..].iter().any(|a| a == "-h" || a == "--help") {
        match ddpm_converter::cli_extra::usage_of(cmd) {
            Some(u) => println!("{u}"),
            None => println!("{USAGE}\n{}", ddpm_converter::cli_extra::USAGE),
        }
        return Ok(());
    }
    // sample / compare (quality report) / bench / sensitivity live in cli_extra.
    if let Some(r) = ddpm_converter::cli_extra::dispatch(cmd, &argv[1..]) {
        return r;
    }
    let args = Args::parse(&argv[1..])?;
    match cmd.as_str() {
        "quantize" => quantize(&args),
        "inspect" => {
            args.check(&["--json"], 1)?;
            let p = &args.pos[0];
            let bytes = std::fs::read(p).with_context(|| format!("cannot read {p}"))?;
            let r = inspect::report(&bytes).with_context(|| p.to_string())?;
            if args.has("--json") {
                println!("{r}");
            } else {
                print!("{}", inspect::text(&r));
            }
            Ok(())
        }
        "compare" => compare_cmd(&args),
        "dump-graph" => {
            args.check(&["--input-shape"], 1)?;
            let l = load::load(Path::new(&args.pos[0]), input_shape(&args)?)?;
            print!("{}", load::dump(&l.model));
            Ok(())
        }
        "-h" | "--help" | "help" => {
            println!("{USAGE}\n{}", ddpm_converter::cli_extra::USAGE);
            Ok(())
        }
        other => bail!("unknown command {other:?} (see converter --help)"),
    }
}

fn input_shape(args: &Args) -> Result<Option<[usize; 3]>> {
    args.get("--input-shape")
        .map(|s| {
            let v: Vec<usize> = s
                .split(',')
                .map(|x| x.trim().parse())
                .collect::<Result<_, _>>()
                .map_err(|_| anyhow!("--input-shape {s:?} must be C,H,W"))?;
            match v[..] {
                [c, h, w] if c > 0 && h > 0 && w > 0 => Ok([c, h, w]),
                _ => bail!("--input-shape {s:?} must be three positive numbers C,H,W"),
            }
        })
        .transpose()
}

fn schedule(args: &Args) -> Result<Schedule> {
    let d = Schedule::default();
    Ok(Schedule {
        kind: Kind::parse(args.get("--schedule").unwrap_or("linear"))?,
        timesteps: args.num("--timesteps", d.timesteps)?,
        beta_start: args.num("--beta-start", d.beta_start)?,
        beta_end: args.num("--beta-end", d.beta_end)?,
    })
}

fn quantize(args: &Args) -> Result<()> {
    args.check(
        &[
            "-o",
            "--input-shape",
            "--schedule",
            "--timesteps",
            "--beta-start",
            "--beta-end",
            "--calib-trajectories",
            "--calib-timesteps",
            "--calib-seed",
            "--calib-method",
            "--report-sqnr",
            "--quiet",
            "--board",
            "--activations",
            "--no-bias-correction",
        ],
        1,
    )?;
    let board = args.get("--board").map(ddpm_converter::board::Board::parse).transpose()?;
    let src = PathBuf::from(&args.pos[0]);
    let out = args.get("-o").map(PathBuf::from).unwrap_or_else(|| src.with_extension("ddq"));
    let d = Settings::default();
    let opts = Options {
        input_shape: input_shape(args)?,
        calib: Settings {
            trajectories: args.num("--calib-trajectories", d.trajectories)?,
            timesteps: args.num("--calib-timesteps", d.timesteps)?,
            seed: args.num("--calib-seed", d.seed)?,
            method: Method::parse(args.get("--calib-method").unwrap_or(d.method.name()))?,
        },
        schedule: schedule(args)?,
        progress: !args.has("--quiet"),
        activations: Activations::parse(args.get("--activations").unwrap_or("mixed"))?,
        bias_correction: !args.has("--no-bias-correction"),
    };
    let t0 = Instant::now();
    let c = convert::convert(&src, &opts)?;
    if let Some(b) = &board {
        b.check(&c.bytes)?;
    }
    std::fs::write(&out, &c.bytes).with_context(|| format!("cannot write {}", out.display()))?;
    let secs = t0.elapsed().as_secs_f64();
    let r = inspect::report(&c.bytes)?;
    eprintln!(
        "wrote {} ({} bytes, {} ops) in {secs:.1} s: params {}, arena {} B (lower bound {} B), {} MACs/step, lowering max |Δε| {:.1e}",
        out.display(),
        c.bytes.len(),
        c.graph.ops.len(),
        r["params"],
        c.arena.0,
        c.arena.1,
        r["macs_per_step"],
        c.lowering_error
    );
    let n16 = c.int16.iter().filter(|&&w| w).count();
    eprintln!("activations {}: {n16} of {} tensors int16", opts.activations.name(), c.int16.len());
    if opts.activations == Activations::Mixed {
        let hw = c.chw[1] * c.chw[2];
        for (t, x) in c.graph.tensors.iter().enumerate() {
            if x.h * x.w < hw || c.int16[t] {
                continue;
            }
            let why = match c.kept_int8.iter().find(|k| k.0 == t) {
                Some(k) => k.1.clone(),
                None => precision::reason_int8(&c.graph, hw, &c.int16, t).unwrap_or_default(),
            };
            eprintln!("  int8 at image resolution: tensor {t} {} {:?}: {why}", x.name, x.shape());
        }
    }
    let n: usize = args.num("--report-sqnr", 0)?;
    if n > 0 {
        let states = convert::eval_states(&c, &opts.schedule, opts.calib.seed.wrapping_add(1), n)?;
        let s = compare::eps_sqnr(&c.bytes, &states)?;
        let (med, worst) = compare::median_worst(&s);
        let at = s.iter().find(|x| x.1 == worst).map(|x| x.0).unwrap_or(0);
        let rest: Vec<(usize, f64)> = s.iter().copied().filter(|x| x.0 != at).collect();
        let (_, next) = compare::median_worst(&rest);
        eprintln!(
            "ε SQNR int8 vs float over {} timesteps: median {med:.1} dB, worst {worst:.1} dB at t = {at} (next worst {next:.1} dB)",
            s.len()
        );
        for (t, db) in &s {
            eprintln!("  t = {t:4}: {db:5.1} dB");
        }
    }
    Ok(())
}

fn compare_cmd(args: &Args) -> Result<()> {
    args.check(&["--steps", "--seed", "--per-tensor", "--input-shape", "--min-t"], 2)?;
    let bytes =
        std::fs::read(&args.pos[0]).with_context(|| format!("cannot read {}", args.pos[0]))?;
    let model = ddpm_runtime::Model::load(&bytes)
        .map_err(|e| anyhow!("{}: not a valid artifact: {e}", args.pos[0]))?;
    let sched = Schedule { timesteps: model.timesteps() as usize, ..Schedule::default() };
    let opts = Options {
        input_shape: input_shape(args)?,
        schedule: sched,
        progress: false,
        ..Options::default()
    };
    // The float model and graph are rebuilt from the ONNX (no calibration needed).
    let l = load::load(Path::new(&args.pos[1]), opts.input_shape)?;
    let chw = l.image_chw;
    let fm = ddpm_converter::float::FloatModel::new(&l.model, chw)?;
    let steps: usize = args.num("--steps", 25)?;
    let seed: u64 = args.num("--seed", 1)?;
    let s = Settings { trajectories: 1, timesteps: steps, seed, ..Settings::default() };
    let min_t: usize = args.num("--min-t", 0)?;
    let states: Vec<_> = ddpm_converter::calib::trajectories(&fm, chw, &sched, &s, false)?
        .into_iter()
        .filter(|s| s.t >= min_t)
        .collect();
    let r = compare::eps_sqnr(&bytes, &states)?;
    for (t, db) in &r {
        println!("t={t:4} eps SQNR {db:6.2} dB");
    }
    let (med, worst) = compare::median_worst(&r);
    println!("median {med:.2} dB, worst {worst:.2} dB over {} timesteps", r.len());
    if args.has("--per-tensor") {
        let mut table = |o: &[tract_onnx::prelude::OutletId]| {
            ddpm_converter::float::time_table(&l.model, chw, o, sched.timesteps)
        };
        let g = ddpm_converter::lower::lower(&l.model, sched.timesteps, &mut table)?.graph;
        let q = compare::artifact_qparams(&bytes, &g)?;
        let (debug, _) = ddpm_converter::write::write_with(&g, &q, &sched, "{}", false)?;
        let per = compare::tensor_sqnr(&debug, &g, &states)?;
        let producers = g.producers();
        for (i, db) in per.iter().enumerate() {
            let op = producers[i].map(|p| g.ops[p].kind.name()).unwrap_or("input");
            println!("tensor {i:3} {op:16} {:40} {db:6.2} dB", g.tensors[i].name);
        }
    }
    Ok(())
}
