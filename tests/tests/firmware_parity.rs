//! Firmware parity: the firmware, built for Cortex-M and run under QEMU
//! (`mps2-an386`), prints the same `DIGEST` as the host runtime for the same
//! artifact, seed, steps and mode (DDIM-20, η = 0). Checked for three seeds on
//! thumbv7em code and on thumbv6m (Cortex-M0+) code, which runs on the emulated
//! M4 too, and for one seed on the Cortex-M33 profile (`qemu-m33`, `mps2-an505`,
//! thumbv8m.main with the DSP kernels).
//!
//! Two artifacts: a small synthetic network (always available, built here with
//! `ArtifactBuilder`) and the shipped model `models/mnist_unet.ddq` (or
//! `DDPM_ARTIFACT`). A missing QEMU, defmt-print, Rust target or shipped
//! artifact fails the test: it never skips.
//!
//! The v7em seed-1 run of each artifact is also matched against the output
//! shape in `firmware/expected/qemu-m4.out`.

#[path = "firmware_parity/synthetic.rs"]
mod synthetic;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use ddpm_runtime::{digest, Mode, Model, NoHooks, Sampler, SamplerConfig, Sigma};

const SEEDS: [u64; 3] = [1, 2, 3];
const STEPS: u32 = 20;
const TARGETS: [&str; 2] = ["thumbv7em-none-eabihf", "thumbv6m-none-eabi"];
/// The Cortex-M33 profile: its feature, its target and the seeds it runs (one
/// build and run per seed, so fewer than on the M4).
const M33: (&str, &str, &[u64]) = ("qemu-m33", "thumbv8m.main-none-eabihf", &[1]);

/// Firmware builds share one target directory; one at a time.
static FIRMWARE: Mutex<()> = Mutex::new(());

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().unwrap()
}

/// `DDPM_FW_TARGET_DIR` (as scripts/env.sh sets it), else a directory of its
/// own under the workspace target: the outer `cargo test` may hold that one's lock.
fn firmware_target_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("DDPM_FW_TARGET_DIR") {
        return PathBuf::from(d);
    }
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d).join("firmware"),
        None => repo().join("target").join("firmware"),
    }
}

fn require_tool(name: &str, arg: &str, hint: &str) {
    let home_bin = std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/bin").join(name));
    let ok =
        |p: &Path| Command::new(p).arg(arg).output().map(|o| o.status.success()).unwrap_or(false);
    let found = ok(Path::new(name)) || home_bin.as_deref().is_some_and(ok);
    assert!(found, "`{name}` is required for the firmware parity test and was not found: {hint}");
}

fn host_digest(bytes: &[u8], seed: u64) -> String {
    let model = Model::load(bytes).expect("host: artifact loads");
    let mut arena = vec![0u8; Sampler::arena_bytes(&model)];
    let cfg = SamplerConfig {
        seed,
        mode: Mode::Ddim { steps: STEPS, eta_q16: 0 },
        sigma: Sigma::Beta,
        clip_x0: false,
    };
    let mut s = Sampler::new(&model, &mut arena, cfg).expect("host: sampler");
    while s.step(&mut NoHooks).expect("host: step").is_some() {}
    let mut px = vec![0u8; model.image_len()];
    s.pixels(&mut px).expect("host: pixels");
    format!("{:016x}", digest(&px))
}

/// `cargo run --release` arguments for a board profile (`None`: the default, qemu-m4).
fn profile_args<'a>(board: Option<&'a str>, target: &'a str) -> Vec<&'a str> {
    let mut args = vec!["run", "--release", "--target", target];
    if let Some(b) = board {
        args.extend(["--no-default-features", "--features", b]);
    }
    args
}

/// Builds and runs the firmware (`cargo run --release` in `firmware/`) for
/// `board` (`None`: the default profile); returns stdout.
fn run_firmware(artifact: &Path, board: Option<&str>, target: &str, seed: u64) -> String {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(repo().join("firmware"))
        .args(profile_args(board, target))
        .env("CARGO_TARGET_DIR", firmware_target_dir())
        .env("DDPM_ARTIFACT", artifact)
        .env("DDPM_SEED", seed.to_string())
        .env("DDPM_STEPS", STEPS.to_string())
        .output()
        .expect("spawn cargo");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "firmware run failed ({target}, seed {seed}, {}): {}\n--- stdout\n{stdout}\n--- stderr\n{}",
        artifact.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn parse_digest(stdout: &str) -> String {
    let d: Vec<&str> = stdout.lines().filter_map(|l| l.trim().strip_prefix("DIGEST ")).collect();
    assert_eq!(d.len(), 1, "expected one DIGEST line in:\n{stdout}");
    let d = d[0].trim();
    assert!(
        d.len() == 16 && d.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "bad digest {d:?}"
    );
    d.to_owned()
}

/// `pattern` matches `line` where every `{}` stands for any run of characters.
fn matches(pattern: &str, line: &str) -> bool {
    let parts: Vec<&str> = pattern.split("{}").collect();
    if parts.len() == 1 {
        return pattern == line;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !line.starts_with(first) || !line[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &line[first.len()..line.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// Matches `stdout` against the pattern file: line by line, `{}` inside a line
/// is any text, and a line `{...}` is any number of lines.
fn check_expected(stdout: &str) {
    let path = repo().join("firmware/expected/qemu-m4.out");
    let expected = std::fs::read_to_string(&path).expect("firmware/expected/qemu-m4.out");
    let got: Vec<&str> = stdout.lines().collect();
    let want: Vec<&str> = expected.lines().collect();
    let (mut g, mut w) = (0, 0);
    while w < want.len() {
        if want[w] == "{...}" {
            let next = want.get(w + 1).copied();
            while g < got.len() && next.is_none_or(|n| !matches(n, got[g])) {
                g += 1;
            }
            w += 1;
            continue;
        }
        assert!(g < got.len(), "output ends before `{}` ({}):\n{stdout}", want[w], path.display());
        assert!(
            matches(want[w], got[g]),
            "output line {} `{}` does not match `{}` ({}):\n{stdout}",
            g + 1,
            got[g],
            want[w],
            path.display()
        );
        g += 1;
        w += 1;
    }
    assert_eq!(
        g,
        got.len(),
        "extra output after the last expected line ({}):\n{stdout}",
        path.display()
    );
}

fn parity(artifact: &Path) {
    require_tool("qemu-system-arm", "--version", "apt-get install qemu-system-arm");
    require_tool("defmt-print", "--version", "cargo install defmt-print --locked");
    let bytes = std::fs::read(artifact).unwrap_or_else(|e| panic!("{}: {e}", artifact.display()));
    let _guard = FIRMWARE.lock().unwrap_or_else(|e| e.into_inner());
    let mut checked = 0;
    for target in TARGETS {
        for seed in SEEDS {
            let stdout = run_firmware(artifact, None, target, seed);
            let want = host_digest(&bytes, seed);
            assert_eq!(
                parse_digest(&stdout),
                want,
                "{target} seed {seed}: firmware digest != host digest"
            );
            if target == TARGETS[0] && seed == SEEDS[0] {
                check_expected(&stdout);
            }
            eprintln!("{target} seed {seed}: DIGEST {want} (firmware = host)");
            checked += 1;
        }
    }
    assert_eq!(checked, TARGETS.len() * SEEDS.len());
    let (board, target, seeds) = M33;
    for &seed in seeds {
        let stdout = run_firmware(artifact, Some(board), target, seed);
        let want = host_digest(&bytes, seed);
        assert_eq!(
            parse_digest(&stdout),
            want,
            "{board} ({target}) seed {seed}: firmware digest != host digest"
        );
        assert!(
            stdout.lines().any(|l| l.starts_with("BENCH {")),
            "{board}: no BENCH line in:\n{stdout}"
        );
        eprintln!("{board} ({target}) seed {seed}: DIGEST {want} (firmware = host)");
    }
}

/// The firmware's kernel self-check (`--features selfcheck`) on thumbv7em (the
/// `SMLAD` conv kernels, the block requantization and the group-norm assembly
/// loops), on thumbv8m.main for the Cortex-M33 (the same DSP kernels) and on
/// thumbv6m code: every kernel the target picks equals the portable
/// one on 600 random draws (shapes that do not fit its buffers are skipped).
#[test]
fn firmware_kernels_match_portable_kernels_in_qemu() {
    require_tool("qemu-system-arm", "--version", "apt-get install qemu-system-arm");
    require_tool("defmt-print", "--version", "cargo install defmt-print --locked");
    let dir = firmware_target_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("synthetic-selfcheck.ddq");
    std::fs::write(&path, synthetic::artifact()).unwrap();
    let _guard = FIRMWARE.lock().unwrap_or_else(|e| e.into_inner());
    let runs = TARGETS.iter().map(|&t| (None, t)).chain([(Some(M33.0), M33.1)]);
    for (board, target) in runs {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut args = profile_args(board, target);
        args.extend(["--features", "selfcheck"]);
        let out = Command::new(cargo)
            .current_dir(repo().join("firmware"))
            .args(args)
            .env("CARGO_TARGET_DIR", firmware_target_dir())
            .env("DDPM_ARTIFACT", &path)
            .output()
            .expect("spawn cargo");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().find(|l| l.starts_with("SELFCHECK"));
        assert!(
            out.status.success(),
            "{target}: self-check failed ({}): {line:?}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let n: u32 = line
            .and_then(|l| l.strip_prefix("SELFCHECK ok "))
            .and_then(|l| l.strip_suffix(" cases"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{target}: no SELFCHECK ok line:\n{stdout}"));
        // Most draws fit (about 570 of 600): a check that ran only a few would
        // prove little.
        assert!(n >= 400, "{target}: only {n} cases checked");
        eprintln!("{target}: SELFCHECK ok {n} cases");
    }
}

#[test]
fn firmware_matches_host_on_synthetic_network() {
    let dir = firmware_target_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("synthetic.ddq");
    std::fs::write(&path, synthetic::artifact()).unwrap();
    parity(&path);
}

#[test]
fn firmware_matches_host_on_shipped_model() {
    let path = std::env::var_os("DDPM_ARTIFACT")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("models/mnist_unet.ddq"));
    assert!(
        path.is_file(),
        "{} is missing: run `converter quantize models/mnist_unet.onnx` first (or set DDPM_ARTIFACT)",
        path.display()
    );
    parity(&path.canonicalize().unwrap());
}
