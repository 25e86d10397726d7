//! The `converter` CLI cross-built for aarch64-unknown-linux-gnu (Raspberry-Pi-class
//! boards) samples the same pixels as on x86_64: `converter sample ARTIFACT
//! --engine int8 --seed 7 -n 2` under `qemu-aarch64` prints the digests the host
//! computes with the same code (`ddpm_converter::evaluate::sample::sample_int8`, what
//! `converter sample` runs on the host).
//!
//! The converter is reproducible across hosts: `converter quantize` of the shipped
//! model under `qemu-aarch64` writes the same bytes as the same conversion on the
//! x86_64 host (calibration shortened to keep the emulated run short; same flags on
//! both sides).
//!
//! The runtime's unit tests, cross-built, pass under `qemu-aarch64` both as a
//! Cortex-A76 (Raspberry Pi 5: the int8 convolutions take the `SDOT` kernel) and
//! as a Cortex-A72 (Raspberry Pi 4: no dot-product extension, NEON `SMLAL`).
//!
//! Needs `rustup target add aarch64-unknown-linux-gnu` and Debian's
//! `gcc-aarch64-linux-gnu` and `qemu-user`; it fails (never skips) without them.
//! Environment: `DDPM_ARTIFACT` (an artifact to use; otherwise the shipped model is
//! quantized into a temporary directory), `DDPM_AARCH64_TARGET_DIR` (cross build
//! directory, default `$HOME/.cache/ddpm-edge/target-aarch64`).

use std::path::{Path, PathBuf};
use std::process::Command;

use ddpm_converter::evaluate::sample::{bar, default_cfg, sample_int8};
use ddpm_runtime::{Digest, Model, SamplerConfig};

const TARGET: &str = "aarch64-unknown-linux-gnu";
const LINKER: &str = "aarch64-linux-gnu-gcc";
const SYSROOT: &str = "/usr/aarch64-linux-gnu";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn require_tool(name: &str, version_flag: &str, package: &str) {
    let ok = Command::new(name).arg(version_flag).output().is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "`{name}` is missing: install it (`apt-get install {package}`); this test does not skip"
    );
}

fn artifact(tmp: &Path) -> PathBuf {
    if let Ok(p) = std::env::var("DDPM_ARTIFACT") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "DDPM_ARTIFACT={} does not exist", p.display());
        return p;
    }
    let out = tmp.join("mnist_unet.ddq");
    let opts = ddpm_converter::artifact::convert::Options::default();
    let c =
        ddpm_converter::artifact::convert::convert(&root().join("models/mnist_unet.onnx"), &opts)
            .expect("quantizing models/mnist_unet.onnx");
    std::fs::write(&out, c.bytes).unwrap();
    out
}

fn target_dir() -> PathBuf {
    match std::env::var("DDPM_AARCH64_TARGET_DIR") {
        Ok(d) => PathBuf::from(d),
        Err(_) => {
            let home = std::env::var("HOME").expect("HOME or DDPM_AARCH64_TARGET_DIR must be set");
            Path::new(&home).join(".cache/ddpm-edge/target-aarch64")
        }
    }
}

fn cross_build() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let dir = target_dir();
    let st = Command::new(&cargo)
        .current_dir(root())
        .args([
            "build",
            "--release",
            "--target",
            TARGET,
            "-p",
            "ddpm-converter",
            "--bin",
            "converter",
        ])
        .env("CARGO_TARGET_DIR", &dir)
        .env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER", LINKER)
        .status()
        .expect("running cargo");
    assert!(
        st.success(),
        "cross build for {TARGET} failed (is the target installed? `rustup target add {TARGET}`)"
    );
    let bin = dir.join(TARGET).join("release/converter");
    let elf = std::fs::read(&bin).expect("reading the cross-built converter");
    // ELF, 64-bit, little-endian, e_machine = EM_AARCH64 (183).
    assert_eq!(&elf[..4], b"\x7fELF");
    assert_eq!((elf[4], elf[5], u16::from_le_bytes([elf[18], elf[19]])), (2, 1, 183));
    bin
}

fn digests(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("digest: "))
        .map(|d| d.split_whitespace().next().unwrap_or("").to_string())
        .collect()
}

#[test]
fn aarch64_converter_sample_digests_match_x86_64() {
    require_tool("qemu-aarch64", "--version", "qemu-user");
    require_tool(LINKER, "--version", "gcc-aarch64-linux-gnu");
    assert!(
        Path::new(SYSROOT).is_dir(),
        "{SYSROOT} is missing (apt-get install gcc-aarch64-linux-gnu)"
    );
    let tmp = std::env::temp_dir().join(format!("ddpm-aarch64-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let art = artifact(&tmp);

    // Host (x86_64): the code `converter sample` runs, seeds 7 and 8.
    let bytes = std::fs::read(&art).unwrap();
    let m = Model::load(&bytes).expect("artifact loads");
    let hidden = bar(0, "", false);
    let host: Vec<String> = (7..9)
        .map(|seed| {
            let cfg = SamplerConfig { seed, ..default_cfg() };
            Digest::of(&sample_int8(&m, cfg, &hidden).unwrap()).to_string()
        })
        .collect();

    let bin = cross_build();
    let png = tmp.join("aarch64.png");
    let out = Command::new("qemu-aarch64")
        .args(["-L", SYSROOT])
        .arg(&bin)
        .args(["sample", art.to_str().unwrap(), "--engine", "int8", "--seed", "7", "-n", "2"])
        .args(["--quiet", "-o", png.to_str().unwrap()])
        .output()
        .expect("running qemu-aarch64");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "converter under qemu-aarch64 failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let arm = digests(&stdout);
    assert_eq!(arm.len(), 2, "expected 2 digests from the aarch64 run:\n{stdout}");
    assert_eq!(arm, host, "aarch64 and x86_64 digests differ");
    assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));
    eprintln!("aarch64 digests {arm:?} equal x86_64's");
    std::fs::remove_dir_all(&tmp).ok();
}

/// `converter quantize` flags of the cross-host reproducibility check: a short
/// calibration (one trajectory of three timesteps) so the emulated run stays short.
const QUANTIZE_FLAGS: [&str; 5] =
    ["--calib-trajectories", "1", "--calib-timesteps", "3", "--quiet"];

#[test]
fn aarch64_converter_quantize_bytes_match_x86_64() {
    require_tool("qemu-aarch64", "--version", "qemu-user");
    require_tool(LINKER, "--version", "gcc-aarch64-linux-gnu");
    let tmp = std::env::temp_dir().join(format!("ddpm-aarch64-quantize-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let onnx = root().join("models/mnist_unet.onnx");

    // Host (x86_64): what `converter quantize` runs with QUANTIZE_FLAGS.
    let opts = ddpm_converter::artifact::convert::Options {
        calib: ddpm_converter::quantize::calib::Settings {
            trajectories: 1,
            timesteps: 3,
            ..Default::default()
        },
        ..Default::default()
    };
    let host = ddpm_converter::artifact::convert::convert(&onnx, &opts)
        .expect("quantizing on the host")
        .bytes;

    let bin = cross_build();
    let out_path = tmp.join("aarch64.ddq");
    let t0 = std::time::Instant::now();
    let out = Command::new("qemu-aarch64")
        .args(["-L", SYSROOT])
        .arg(&bin)
        .args(["quantize", onnx.to_str().unwrap(), "-o", out_path.to_str().unwrap()])
        .args(QUANTIZE_FLAGS)
        .output()
        .expect("running qemu-aarch64");
    assert!(
        out.status.success(),
        "converter quantize under qemu-aarch64 failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let arm = std::fs::read(&out_path).expect("reading the aarch64 artifact");
    assert_eq!(arm.len(), host.len(), "aarch64 and x86_64 artifacts differ in size");
    let first = arm.iter().zip(&host).position(|(a, b)| a != b);
    assert!(first.is_none(), "aarch64 and x86_64 artifacts differ from byte {first:?} on");
    eprintln!(
        "aarch64 conversion ({} bytes, {:.0} s under qemu) is byte-identical to x86_64's",
        arm.len(),
        t0.elapsed().as_secs_f64()
    );
    std::fs::remove_dir_all(&tmp).ok();
}

/// Cross-builds the runtime's unit tests and returns the test executable.
fn cross_build_runtime_tests() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&cargo)
        .current_dir(root())
        .args(["test", "--release", "--target", TARGET, "-p", "ddpm-runtime"])
        .args(["--features", "std", "--lib", "--no-run", "--message-format=json"])
        .env("CARGO_TARGET_DIR", target_dir())
        .env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER", LINKER)
        .output()
        .expect("running cargo");
    assert!(
        out.status.success(),
        "cross build of the runtime tests failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The lib test executable, from cargo's JSON messages.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let exe = stdout
        .lines()
        .filter(|l| l.contains("\"compiler-artifact\"") && l.contains("\"kind\":[\"lib\"]"))
        .find_map(|l| {
            let i = l.find("\"executable\":\"")? + "\"executable\":\"".len();
            let rest = l.get(i..)?;
            Some(PathBuf::from(rest.get(..rest.find('"')?)?))
        })
        .expect("cargo named no runtime test executable");
    assert!(exe.is_file(), "{} missing", exe.display());
    exe
}

#[test]
fn aarch64_runtime_unit_tests_pass_with_and_without_sdot() {
    require_tool("qemu-aarch64", "--version", "qemu-user");
    require_tool(LINKER, "--version", "gcc-aarch64-linux-gnu");
    let exe = cross_build_runtime_tests();
    for (cpu, sdot) in [("cortex-a76", "1"), ("cortex-a72", "0")] {
        let out = Command::new("qemu-aarch64")
            .args(["-L", SYSROOT, "-cpu", cpu])
            .arg(&exe)
            .env("DDPM_EXPECT_SDOT", sdot)
            .output()
            .expect("running qemu-aarch64");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "runtime unit tests failed under qemu-aarch64 -cpu {cpu}:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("test result: ok."), "{stdout}");
        assert!(stdout.contains("sdot_detected_as_the_harness_expects ... ok"), "{stdout}");
        eprintln!("runtime unit tests pass as a {cpu}");
    }
}
