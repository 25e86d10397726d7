//! The `converter` command line: the clap parser ([`args`]) and one thin runner per
//! subcommand, which turns the parsed arguments into the library's options, calls
//! it and prints the result.
//!
//! Exit codes: 0 on success and for `--help` / `--version`, 2 for a usage error
//! (clap's), 1 with one `error: ...` line when the library fails.

pub mod args;

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;

use crate::artifact::{convert, inspect};
use crate::evaluate::{bench, compare, quality, sample, sensitivity};
use crate::ingest::load;
use crate::quantize::precision::{self, Activations};
use args::{Cli, Command, InspectArgs, QuantizeArgs};

/// Parses the process's arguments and runs the subcommand.
pub fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one parsed command line.
///
/// # Errors
/// Whatever the subcommand fails with.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Quantize(a) => run_quantize(&a),
        Command::Inspect(a) => run_inspect(&a),
        Command::Sample(a) => sample::run_sample(&a.options()),
        Command::Compare(a) if a.per_tensor => compare::run_per_tensor(&a.per_tensor_options()),
        Command::Compare(a) => quality::run_compare(&a.options()),
        Command::Bench(a) => bench::run_bench(&a.options()),
        Command::Sensitivity(a) => sensitivity::run_sensitivity(&a.options()),
        Command::DumpGraph(a) => {
            let l = load::load(&a.model, a.input_shape)?;
            print!("{}", load::dump(&l.model));
            Ok(())
        }
    }
}

/// `converter inspect`.
fn run_inspect(a: &InspectArgs) -> Result<()> {
    let p = a.artifact.display();
    let bytes = std::fs::read(&a.artifact).with_context(|| format!("cannot read {p}"))?;
    let r = inspect::report(&bytes).with_context(|| p.to_string())?;
    if a.json {
        println!("{r}");
    } else {
        print!("{}", inspect::text(&r));
    }
    Ok(())
}

/// `converter quantize`: converts, checks the board, writes, then reports the
/// artifact's figures, the tensors left int8 at the image's resolution and, with
/// `--report-sqnr`, the ε SQNR against float.
fn run_quantize(a: &QuantizeArgs) -> Result<()> {
    let opts = a.options();
    let out = a.out();
    let t0 = Instant::now();
    let c = convert::convert(&a.model, &opts)?;
    if let Some(b) = &a.board {
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
    if a.report_sqnr > 0 {
        let seed = opts.calib.seed.wrapping_add(1);
        let states = convert::eval_states(&c, &opts.schedule, seed, a.report_sqnr)?;
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
