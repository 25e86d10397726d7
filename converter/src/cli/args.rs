//! The command line, declared with clap: one struct per subcommand, values checked
//! by the parser, and the conversion of each into the library's options.

use std::path::PathBuf;

use clap::builder::RangedU64ValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};
use ddpm_runtime::{Mode, SamplerConfig, Sigma};

use crate::artifact::convert::Options;
use crate::evaluate::bench::BenchOptions;
use crate::evaluate::compare::PerTensorOptions;
use crate::evaluate::quality::{self, CompareOpts};
use crate::evaluate::sample::{self, Engine, Precision, SampleOptions};
use crate::evaluate::sensitivity::SensitivityOptions;
use crate::quantize::board::Board;
use crate::quantize::calib::{Method, Settings};
use crate::quantize::precision::Activations;
use crate::quantize::schedule::{Kind, Schedule};

/// Quantize a DDPM UNet ONNX into a ddpm-edge artifact, inspect one, sample from it,
/// compare it against the float model, benchmark it.
#[derive(Debug, Parser)]
// A repeated option takes its last value, as it always has.
#[command(name = "converter", version, propagate_version = true, args_override_self = true)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Quantize MODEL.onnx into an artifact (calibrate, quantize, tables, plan).
    Quantize(QuantizeArgs),
    /// Print an artifact's ops, MACs, flash and arena.
    Inspect(InspectArgs),
    /// Sample digits with the int8 runtime or with tract; print one digest per sample.
    Sample(SampleArgs),
    /// Compare an artifact against its float model: ε SQNR, same-seed PSNR,
    /// classifier scores and FID (or, with --per-tensor, the SQNR of every tensor).
    Compare(CompareArgs),
    /// Per-step latency and memory of the int8 runtime against tract f32.
    Bench(BenchArgs),
    /// Simulated ε SQNR for int8 / int16 activation and weight choices.
    Sensitivity(SensitivityArgs),
    /// Print tract's decluttered graph (for debugging).
    DumpGraph(DumpGraphArgs),
}

/// `--schedule`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ScheduleKind {
    /// β linear from --beta-start to --beta-end.
    Linear,
    /// Nichol & Dhariwal's cosine ᾱ.
    Cosine,
    /// √β linear.
    Quadratic,
}

impl From<ScheduleKind> for Kind {
    fn from(k: ScheduleKind) -> Kind {
        match k {
            ScheduleKind::Linear => Kind::Linear,
            ScheduleKind::Cosine => Kind::Cosine,
            ScheduleKind::Quadratic => Kind::Quadratic,
        }
    }
}

/// `--calib-method`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CalibMethod {
    /// Observed minimum and maximum.
    #[value(name = "minmax")]
    MinMax,
    /// The 0.01 % and 99.99 % percentiles.
    Percentile,
    /// The range minimizing the int8 quantization mean squared error.
    Mse,
}

impl From<CalibMethod> for Method {
    fn from(m: CalibMethod) -> Method {
        match m {
            CalibMethod::MinMax => Method::MinMax,
            CalibMethod::Percentile => Method::Percentile,
            CalibMethod::Mse => Method::Mse,
        }
    }
}

impl From<Method> for CalibMethod {
    fn from(m: Method) -> CalibMethod {
        match m {
            Method::MinMax => CalibMethod::MinMax,
            Method::Percentile => CalibMethod::Percentile,
            Method::Mse => CalibMethod::Mse,
        }
    }
}

/// `--activations`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ActivationsArg {
    /// int16 activations (int8 weights) for the tensors at the image's resolution
    /// where every op touching them allows it, int8 elsewhere.
    Mixed,
    /// int8 everywhere.
    Int8,
}

impl From<ActivationsArg> for Activations {
    fn from(a: ActivationsArg) -> Activations {
        match a {
            ActivationsArg::Mixed => Activations::Mixed,
            ActivationsArg::Int8 => Activations::Int8,
        }
    }
}

/// `--engine`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EngineArg {
    /// The int8 runtime.
    Int8,
    /// tract, float.
    Tract,
}

impl From<EngineArg> for Engine {
    fn from(e: EngineArg) -> Engine {
        match e {
            EngineArg::Int8 => Engine::Int8,
            EngineArg::Tract => Engine::Tract,
        }
    }
}

/// `--precision`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PrecisionArg {
    /// Weights as exported.
    F32,
    /// Every f32 constant rounded to f16 and back (compute stays f32).
    F16,
}

impl From<PrecisionArg> for Precision {
    fn from(p: PrecisionArg) -> Precision {
        match p {
            PrecisionArg::F32 => Precision::F32,
            PrecisionArg::F16 => Precision::F16,
        }
    }
}

/// `--mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Every timestep, stochastic.
    Ddpm,
    /// --steps timesteps, η = --eta.
    Ddim,
}

/// `--sigma`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SigmaArg {
    /// σ² = β.
    Beta,
    /// σ² = β̃ (the posterior variance).
    BetaTilde,
    /// No noise.
    Zero,
}

impl From<SigmaArg> for Sigma {
    fn from(s: SigmaArg) -> Sigma {
        match s {
            SigmaArg::Beta => Sigma::Beta,
            SigmaArg::BetaTilde => Sigma::BetaTilde,
            SigmaArg::Zero => Sigma::Zero,
        }
    }
}

/// `C,H,W`, three positive numbers.
fn parse_chw(s: &str) -> Result<[usize; 3], String> {
    let v: Vec<usize> = s
        .split(',')
        .map(|x| x.trim().parse())
        .collect::<Result<_, _>>()
        .map_err(|_| "must be C,H,W".to_string())?;
    match v[..] {
        [c, h, w] if c > 0 && h > 0 && w > 0 => Ok([c, h, w]),
        _ => Err("must be three positive numbers C,H,W".into()),
    }
}

/// A number in [0, 1].
fn parse_eta(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} must be in [0, 1]"))
    }
}

/// A board profile or `custom:FLASH,RAM`.
fn parse_board(s: &str) -> Result<Board, String> {
    Board::parse(s).map_err(|e| format!("{e:#}"))
}

/// A `usize` of at least `min`.
fn at_least(min: u64) -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::<usize>::new().range(min..)
}

/// `converter quantize`.
#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// The ONNX model.
    #[arg(value_name = "MODEL.onnx")]
    pub model: PathBuf,
    /// Output artifact [default: MODEL with the extension .ddq].
    #[arg(short = 'o', value_name = "OUT.ddq")]
    pub out: Option<PathBuf>,
    /// Image shape when the model leaves it dynamic.
    #[arg(long, value_name = "C,H,W", value_parser = parse_chw)]
    pub input_shape: Option<[usize; 3]>,
    /// Noise schedule.
    #[arg(long, value_enum, default_value_t = ScheduleKind::Linear)]
    pub schedule: ScheduleKind,
    /// Number of timesteps T.
    #[arg(long, value_name = "T", default_value_t = Schedule::default().timesteps)]
    pub timesteps: usize,
    /// β at the first step (linear, quadratic).
    #[arg(long, value_name = "B", default_value_t = Schedule::default().beta_start)]
    pub beta_start: f64,
    /// β at the last step (linear, quadratic).
    #[arg(long, value_name = "B", default_value_t = Schedule::default().beta_end)]
    pub beta_end: f64,
    /// Calibration: reverse trajectories from independent noise.
    #[arg(long, value_name = "N", default_value_t = Settings::default().trajectories,
          value_parser = at_least(1))]
    pub calib_trajectories: usize,
    /// Calibration: timesteps per trajectory.
    #[arg(long, value_name = "N", default_value_t = Settings::default().timesteps,
          value_parser = at_least(1))]
    pub calib_timesteps: usize,
    /// Calibration: noise seed.
    #[arg(long, value_name = "S", default_value_t = Settings::default().seed)]
    pub calib_seed: u64,
    /// Calibration: how each tensor's clipping range is chosen.
    #[arg(long, value_enum, default_value_t = CalibMethod::from(Settings::default().method))]
    pub calib_method: CalibMethod,
    /// Activation precision.
    #[arg(long, value_enum, default_value_t = ActivationsArg::Mixed)]
    pub activations: ActivationsArg,
    /// After writing, print the ε SQNR int8 vs float over N timesteps of one float
    /// trajectory (0: skip).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub report_sqnr: usize,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// Fail, writing nothing, unless the artifact and its arena fit this board:
    /// qemu-m4, qemu-m7, pico, stm32h743, nrf52840, stm32f411 or custom:FLASH,RAM
    /// (bytes, or with a K / M suffix).
    #[arg(long, value_name = "BOARD", value_parser = parse_board)]
    pub board: Option<Board>,
    /// Keep the output conv's bias as trained (by default it is corrected by the
    /// quantized network's mean ε error on the calibration states).
    #[arg(long)]
    pub no_bias_correction: bool,
}

impl QuantizeArgs {
    /// The conversion options.
    pub fn options(&self) -> Options {
        Options {
            input_shape: self.input_shape,
            calib: Settings {
                trajectories: self.calib_trajectories,
                timesteps: self.calib_timesteps,
                seed: self.calib_seed,
                method: self.calib_method.into(),
            },
            schedule: Schedule {
                kind: self.schedule.into(),
                timesteps: self.timesteps,
                beta_start: self.beta_start,
                beta_end: self.beta_end,
            },
            progress: !self.quiet,
            activations: self.activations.into(),
            bias_correction: !self.no_bias_correction,
        }
    }

    /// The output path.
    pub fn out(&self) -> PathBuf {
        self.out.clone().unwrap_or_else(|| self.model.with_extension("ddq"))
    }
}

/// `converter inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The artifact.
    #[arg(value_name = "ARTIFACT.ddq")]
    pub artifact: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `converter dump-graph`.
#[derive(Debug, Args)]
pub struct DumpGraphArgs {
    /// The ONNX model.
    #[arg(value_name = "MODEL.onnx")]
    pub model: PathBuf,
    /// Image shape when the model leaves it dynamic.
    #[arg(long, value_name = "C,H,W", value_parser = parse_chw)]
    pub input_shape: Option<[usize; 3]>,
}

/// The sampler flags of `sample` and `compare`.
#[derive(Debug, Args)]
pub struct SamplerArgs {
    /// Sampler.
    #[arg(long, value_enum, default_value_t = ModeArg::Ddim)]
    pub mode: ModeArg,
    /// DDIM steps [default: 50; compare: 20; compare --per-tensor: 25 trajectory
    /// timesteps].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub steps: Option<u32>,
    /// DDIM η in [0, 1].
    #[arg(long, value_name = "E", default_value_t = 0.0, value_parser = parse_eta)]
    pub eta: f64,
    /// Noise variance of the stochastic steps.
    #[arg(long, value_enum, default_value_t = SigmaArg::Beta)]
    pub sigma: SigmaArg,
    /// Clip the predicted x₀ to [-1, 1].
    #[arg(long)]
    pub clip_x0: bool,
    /// Seed of sample 0; sample i uses S+i [default: 0; compare --per-tensor: 1].
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
}

impl SamplerArgs {
    /// The sampler configuration, `default_steps` DDIM steps unless --steps.
    pub fn cfg(&self, default_steps: u32) -> SamplerConfig {
        let mut cfg = SamplerConfig {
            seed: self.seed.unwrap_or(0),
            mode: match self.mode {
                ModeArg::Ddpm => Mode::Ddpm,
                ModeArg::Ddim => Mode::Ddim { steps: 0, eta_q16: 0 },
            },
            sigma: self.sigma.into(),
            clip_x0: self.clip_x0,
        };
        sample::finish_cfg(&mut cfg, self.steps.unwrap_or(default_steps), self.eta);
        cfg
    }
}

/// `converter sample`.
#[derive(Debug, Args)]
pub struct SampleArgs {
    /// An artifact, or an ONNX model.
    #[arg(value_name = "ARTIFACT | MODEL.onnx")]
    pub input: PathBuf,
    /// Engine [default: int8 for an artifact, tract for an ONNX model].
    #[arg(long, value_enum)]
    pub engine: Option<EngineArg>,
    /// tract's weights (--engine tract only).
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    pub precision: PrecisionArg,
    /// Float ONNX for --engine tract on an artifact [default: models/mnist_unet.onnx].
    #[arg(long, value_name = "MODEL.onnx")]
    pub model: Option<PathBuf>,
    /// Sampler flags.
    #[command(flatten)]
    pub sampler: SamplerArgs,
    /// Number of samples.
    #[arg(short = 'n', long = "count", value_name = "COUNT", default_value_t = 1,
          value_parser = at_least(1))]
    pub count: usize,
    /// Write the samples as a PNG grid.
    #[arg(short = 'o', long = "output", value_name = "grid.png")]
    pub out: Option<PathBuf>,
    /// Grid scale factor.
    #[arg(long, value_name = "K", default_value_t = 2,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=16))]
    pub scale: usize,
    /// No progress bar.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Activation precision when --engine int8 quantizes an ONNX model first.
    #[arg(long, value_enum, default_value_t = ActivationsArg::Mixed)]
    pub activations: ActivationsArg,
}

impl SampleArgs {
    /// The sampling options.
    pub fn options(&self) -> SampleOptions {
        SampleOptions {
            input: self.input.clone(),
            engine: self.engine.map(Engine::from),
            precision: self.precision.into(),
            model: self.model.clone(),
            cfg: self.sampler.cfg(50),
            count: self.count,
            out: self.out.clone(),
            scale: self.scale,
            progress: !self.quiet,
            activations: self.activations.into(),
        }
    }
}

/// The flags of `compare` that only the quality report takes.
const REPORT_ONLY: [&str; 12] = [
    "json",
    "plot",
    "n",
    "mode",
    "eta",
    "sigma",
    "clip_x0",
    "sqnr_steps",
    "sqnr_trajectories",
    "classifier",
    "heldout",
    "quiet",
];

/// `converter compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The float ONNX model (MODEL.onnx and ARTIFACT may come in either order).
    #[arg(value_name = "MODEL.onnx")]
    pub model: PathBuf,
    /// The artifact.
    #[arg(value_name = "ARTIFACT")]
    pub artifact: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Plot the ε SQNR per timestep to this PNG.
    #[arg(long, value_name = "sqnr.png")]
    pub plot: Option<PathBuf>,
    /// Samples per engine.
    #[arg(short = 'n', value_name = "N", default_value_t = 256, value_parser = at_least(2))]
    pub n: usize,
    /// Sampler flags.
    #[command(flatten)]
    pub sampler: SamplerArgs,
    /// DDIM steps of each float trajectory the ε SQNR is measured along.
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub sqnr_steps: u32,
    /// Number of those trajectories.
    #[arg(long, value_name = "K", default_value_t = 2, value_parser = at_least(1))]
    pub sqnr_trajectories: usize,
    /// Digit classifier [default: models/mnist_classifier.onnx].
    #[arg(long, value_name = "CLF.onnx")]
    pub classifier: Option<PathBuf>,
    /// Held-out real digits [default: models/heldout.bin].
    #[arg(long, value_name = "heldout.bin")]
    pub heldout: Option<PathBuf>,
    /// No progress bars.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Instead of the quality report: ε SQNR along one float trajectory (--steps
    /// timesteps, default 25; --seed, default 1), then the SQNR of every tensor.
    #[arg(long, conflicts_with_all = REPORT_ONLY)]
    pub per_tensor: bool,
    /// With --per-tensor: only timesteps t >= T.
    #[arg(long, value_name = "T", requires = "per_tensor")]
    pub min_t: Option<usize>,
    /// With --per-tensor: image shape when the model leaves it dynamic.
    #[arg(long, value_name = "C,H,W", value_parser = parse_chw, requires = "per_tensor")]
    pub input_shape: Option<[usize; 3]>,
}

impl CompareArgs {
    /// `(model, artifact)`, whichever order they were given in.
    fn paths(&self) -> (PathBuf, PathBuf) {
        quality::model_and_artifact(self.model.clone(), self.artifact.clone())
    }

    /// The quality report's options.
    pub fn options(&self) -> CompareOpts {
        let d = CompareOpts::default();
        let (model, artifact) = self.paths();
        CompareOpts {
            model,
            artifact,
            json: self.json,
            plot: self.plot.clone(),
            n: self.n,
            cfg: self.sampler.cfg(20),
            sqnr_steps: self.sqnr_steps,
            sqnr_trajectories: self.sqnr_trajectories,
            classifier: self.classifier.clone().unwrap_or(d.classifier),
            heldout: self.heldout.clone().unwrap_or(d.heldout),
            progress: !self.quiet,
        }
    }

    /// The options of `--per-tensor`.
    pub fn per_tensor_options(&self) -> PerTensorOptions {
        let d = PerTensorOptions::default();
        let (model, artifact) = self.paths();
        PerTensorOptions {
            artifact,
            model,
            input_shape: self.input_shape,
            steps: self.sampler.steps.map_or(d.steps, |s| s as usize),
            seed: self.sampler.seed.unwrap_or(d.seed),
            min_t: self.min_t.unwrap_or(d.min_t),
        }
    }
}

/// `converter bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The artifact.
    #[arg(value_name = "ARTIFACT")]
    pub artifact: PathBuf,
    /// Float ONNX for tract [default: models/mnist_unet.onnx].
    #[arg(long, value_name = "MODEL.onnx")]
    pub model: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Timed steps per engine (the median of fewer than 10 is noise).
    #[arg(long, value_name = "N", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(10..))]
    pub steps: u32,
    /// Warm-up steps before timing.
    #[arg(long, value_name = "K", default_value_t = 2)]
    pub warmup: u32,
    /// The int8 sampler gets only Sampler::arena_bytes (no prepared-weights cache).
    #[arg(long)]
    pub no_weight_cache: bool,
}

impl BenchArgs {
    /// The bench options.
    pub fn options(&self) -> BenchOptions {
        BenchOptions {
            artifact: self.artifact.clone(),
            model: self.model.clone(),
            json: self.json,
            steps: self.steps,
            warmup: self.warmup,
            weight_cache: !self.no_weight_cache,
        }
    }
}

/// `converter sensitivity`.
#[derive(Debug, Args)]
pub struct SensitivityArgs {
    /// The float ONNX model.
    #[arg(value_name = "MODEL.onnx")]
    pub model: PathBuf,
    /// Calibration trajectories.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = at_least(1))]
    pub calib_trajectories: usize,
    /// Evaluation trajectories.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = at_least(1))]
    pub eval_trajectories: usize,
    /// Timesteps per evaluation trajectory.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = at_least(1))]
    pub eval_timesteps: usize,
    /// Also leave one tensor at a time in float and rank the gains.
    #[arg(long)]
    pub per_tensor: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

impl SensitivityArgs {
    /// The sensitivity options.
    pub fn options(&self) -> SensitivityOptions {
        SensitivityOptions {
            model: self.model.clone(),
            calib_trajectories: self.calib_trajectories,
            eval_trajectories: self.eval_trajectories,
            eval_timesteps: self.eval_timesteps,
            per_tensor: self.per_tensor,
            json: self.json,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn parser_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_match_the_library() {
        let c = Cli::try_parse_from(["converter", "quantize", "m.onnx"]).unwrap();
        let Command::Quantize(q) = c.command else { panic!("not quantize") };
        let (o, d) = (q.options(), Options::default());
        assert_eq!((o.calib, o.schedule, o.activations), (d.calib, d.schedule, d.activations));
        assert!(o.progress && o.bias_correction);
        assert_eq!(q.out(), PathBuf::from("m.ddq"));
        let c = Cli::try_parse_from(["converter", "sample", "a.ddq"]).unwrap();
        let Command::Sample(s) = c.command else { panic!("not sample") };
        let d = SampleOptions::default();
        let o = s.options();
        assert_eq!((o.cfg, o.count, o.scale), (d.cfg, d.count, d.scale));
        let c = Cli::try_parse_from(["converter", "compare", "m.onnx", "a.ddq"]).unwrap();
        let Command::Compare(s) = c.command else { panic!("not compare") };
        let (o, d) = (s.options(), CompareOpts::default());
        assert_eq!((o.cfg, o.n, o.sqnr_steps), (d.cfg, d.n, d.sqnr_steps));
    }

    #[test]
    fn per_tensor_flags_are_exclusive() {
        let p =
            |a: &[&str]| Cli::try_parse_from([&["converter", "compare", "a", "b"][..], a].concat());
        assert!(p(&["--per-tensor", "--min-t", "3", "--steps", "4", "--seed", "2"]).is_ok());
        assert!(p(&["--per-tensor", "--json"]).is_err());
        assert!(p(&["--min-t", "3"]).is_err());
        assert!(p(&["--json", "-n", "6"]).is_ok());
    }
}
