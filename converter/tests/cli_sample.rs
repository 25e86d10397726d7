//! `converter sample`, `bench` and `compare` end to end on the shipped model
//! (quantized once into a temporary directory).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const BIN: &str = env!("CARGO_BIN_EXE_converter");

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

fn onnx() -> PathBuf {
    models().join("mnist_unet.onnx")
}

fn tmp_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("ddpm-cli-sample-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The shipped model quantized once per test process.
fn artifact() -> &'static Path {
    static ART: OnceLock<PathBuf> = OnceLock::new();
    ART.get_or_init(|| {
        let out = tmp_dir().join("mnist_unet.ddq");
        let o = Command::new(BIN)
            .args(["quantize", onnx().to_str().unwrap(), "-o", out.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(o.status.success(), "quantize failed: {}", String::from_utf8_lossy(&o.stderr));
        out
    })
}

fn run(args: &[&str]) -> String {
    let o = Command::new(BIN).args(args).output().unwrap();
    assert!(
        o.status.success(),
        "converter {args:?} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn digests(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("digest: "))
        .map(|d| d.split_whitespace().next().unwrap().to_string())
        .inspect(|d| assert!(d.len() == 16 && d.chars().all(|c| c.is_ascii_hexdigit()), "{d}"))
        .collect()
}

#[test]
fn sample_writes_png_and_one_digest_per_sample() {
    let png = tmp_dir().join("grid.png");
    let art = artifact().to_str().unwrap();
    let out = run(&[
        "sample",
        art,
        "--steps",
        "4",
        "--seed",
        "3",
        "-n",
        "3",
        "-o",
        png.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(digests(&out).len(), 3, "{out}");
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    // 3 images of 28×28 at scale 2 in one row, 2-pixel borders.
    let (w, h) = (
        u32::from_be_bytes(bytes[16..20].try_into().unwrap()),
        u32::from_be_bytes(bytes[20..24].try_into().unwrap()),
    );
    assert_eq!((w, h), (2 + 3 * 58, 2 + 58));
}

#[test]
fn same_seed_same_digests_and_batch_seeds_are_consecutive() {
    let art = artifact().to_str().unwrap();
    let args = ["sample", art, "--steps", "4", "--seed", "11", "-n", "2", "--quiet"];
    let a = digests(&run(&args));
    let b = digests(&run(&args));
    assert_eq!(a, b);
    assert_ne!(a[0], a[1]);
    let c = digests(&run(&["sample", art, "--steps", "4", "--seed", "12", "--quiet"]));
    assert_eq!(c[0], a[1], "sample i of a batch must use seed S+i");
    // DDPM with noise and the clipped-x̂₀ form run too.
    let d = digests(&run(&[
        "sample",
        art,
        "--mode",
        "ddim",
        "--steps",
        "3",
        "--eta",
        "1",
        "--clip-x0",
        "--quiet",
    ]));
    assert_eq!(d.len(), 1);
}

#[test]
fn int8_and_tract_engines_both_run() {
    let art = artifact().to_str().unwrap();
    let m = onnx();
    let m = m.to_str().unwrap();
    let common = ["--steps", "4", "--seed", "5", "-n", "2", "--quiet"];
    let i8d = digests(&run(&[&["sample", art, "--engine", "int8"][..], &common].concat()));
    let f32d =
        digests(&run(&[&["sample", art, "--engine", "tract", "--model", m][..], &common].concat()));
    let f16d = digests(&run(&[
        &["sample", art, "--engine", "tract", "--model", m, "--precision", "f16"][..],
        &common,
    ]
    .concat()));
    let onnx_d = digests(&run(&[&["sample", m][..], &common].concat()));
    assert_eq!((i8d.len(), f32d.len(), f16d.len(), onnx_d.len()), (2, 2, 2, 2));
    // Same seeds, same noise: tract twice is deterministic.
    let again =
        digests(&run(&[&["sample", art, "--engine", "tract", "--model", m][..], &common].concat()));
    assert_eq!(f32d, again);
}

#[test]
fn sample_rejects_bad_flags() {
    let art = artifact().to_str().unwrap();
    for bad in [
        &["sample", art, "--engine", "gpu"][..],
        &["sample", art, "--eta", "2"],
        &["sample", art, "--bogus"],
        &["sample"],
    ] {
        let o = Command::new(BIN).args(bad).output().unwrap();
        assert!(!o.status.success(), "{bad:?} should fail");
        assert!(!o.stderr.is_empty());
    }
}

#[test]
fn bench_json_has_the_keys() {
    let art = artifact().to_str().unwrap();
    let out = run(&["bench", art, "--model", onnx().to_str().unwrap(), "--json", "--steps", "10"]);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    for k in ["int8_step_ms", "tract_step_ms", "ratio", "int8_peak_bytes", "tract_memory_method"] {
        assert!(j.get(k).is_some(), "missing {k} in {out}");
    }
    assert!(j["int8_step_ms"].as_f64().unwrap() > 0.0);
    assert!(j["tract_step_ms"].as_f64().unwrap() > 0.0);
}

#[test]
fn compare_json_has_the_keys() {
    let art = artifact().to_str().unwrap();
    let plot = tmp_dir().join("sqnr.png");
    let clf = std::env::var("DDPM_CLASSIFIER")
        .unwrap_or_else(|_| models().join("mnist_classifier.onnx").to_string_lossy().into_owned());
    let out = run(&[
        "compare",
        onnx().to_str().unwrap(),
        art,
        "--json",
        "-n",
        "6",
        "--steps",
        "3",
        "--sqnr-steps",
        "5",
        "--sqnr-trajectories",
        "1",
        "--classifier",
        &clf,
        "--plot",
        plot.to_str().unwrap(),
        "--quiet",
    ]);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    for k in [
        "eps_sqnr_db_median",
        "eps_sqnr_db_min",
        "psnr_db",
        "fid_int8",
        "fid_float",
        "fid_real_split",
        "recognisable_int8",
        "recognisable_float",
        "recognisable_real",
    ] {
        assert!(j.get(k).is_some(), "missing {k} in {out}");
    }
    assert_eq!(j["eps_sqnr_db"].as_array().unwrap().len(), 5);
    assert!(j["fid_real_split"].as_f64().unwrap() >= 0.0);
    assert!(std::fs::read(&plot).unwrap().starts_with(b"\x89PNG"));
}
