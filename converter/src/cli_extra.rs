//! The `sample`, `compare`, `bench` and `sensitivity` subcommands, reached through [`dispatch`].

use std::str::FromStr;

use anyhow::{anyhow, Result};

/// Runs `cmd` if it is one of this module's subcommands (`args` excludes `cmd`);
/// `None` when it is not.
///
/// `compare --per-tensor` is left to the converter's own per-tensor comparison
/// (`None`); every other `compare` is the full quality report here, which accepts
/// MODEL and ARTIFACT in either order.
pub fn dispatch(cmd: &str, args: &[String]) -> Option<Result<()>> {
    match cmd {
        "sample" => Some(crate::sample::run_sample(args)),
        "compare" if args.iter().any(|a| a == "--per-tensor") => None,
        "compare" => Some(crate::quality::run_compare(args)),
        "bench" => Some(crate::bench::run_bench(args)),
        "sensitivity" => Some(crate::sensitivity::run_sensitivity(args)),
        _ => None,
    }
}

/// The full usage of one of this module's subcommands (for `--help`).
pub fn usage_of(cmd: &str) -> Option<String> {
    Some(match cmd {
        "sample" => crate::sample::SAMPLE_USAGE.to_string(),
        "compare" => crate::quality::COMPARE_USAGE.to_string(),
        "bench" => crate::bench::BENCH_USAGE.to_string(),
        "sensitivity" => format!("usage: {}", crate::sensitivity::USAGE),
        _ => return None,
    })
}

/// One-line usage of the subcommands here.
pub const USAGE: &str = "converter sample (ARTIFACT | MODEL.onnx) [options]
converter compare MODEL.onnx ARTIFACT [--json] [--plot sqnr.png] [-n N]
converter bench ARTIFACT [--model MODEL.onnx] [--json]
converter sensitivity MODEL.onnx [--per-tensor] [--json]";

/// A minimal flag reader over the argument list.
pub struct Args<'a> {
    args: &'a [String],
    i: usize,
}

impl<'a> Args<'a> {
    /// Reader over `args`.
    pub fn new(args: &'a [String]) -> Args<'a> {
        Args { args, i: 0 }
    }

    /// The next argument, flag or positional.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<String> {
        let a = self.args.get(self.i)?.clone();
        self.i += 1;
        Some(a)
    }

    /// The value following `flag`.
    ///
    /// # Errors
    /// When the list ends.
    pub fn value(&mut self, flag: &str) -> Result<String> {
        self.next().ok_or_else(|| anyhow!("{flag} needs a value"))
    }

    /// The value following `flag`, parsed.
    ///
    /// # Errors
    /// When missing or unparsable.
    pub fn parse<T: FromStr>(&mut self, flag: &str) -> Result<T>
    where
        T::Err: std::fmt::Display,
    {
        let v = self.value(flag)?;
        v.parse().map_err(|e| anyhow!("{flag} {v:?}: {e}"))
    }
}
