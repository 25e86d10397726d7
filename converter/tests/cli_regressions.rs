//! Inputs the fuzzers found: each must give a one-line error and exit 1, never a panic.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn regression(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions").join(name)
}

/// `converter quantize` on regression input `name`: asserts exit status 1 and a
/// one-line error without panic text; returns the error and the run time.
fn quantize_fails(name: &str) -> (String, Duration) {
    let path = regression(name);
    assert!(path.exists(), "missing regression input {}", path.display());
    let out_path = std::env::temp_dir().join(format!("ddpm-regression-{name}.ddq"));
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_converter"))
        .arg("quantize")
        .arg(&path)
        .arg("-o")
        .arg(&out_path)
        .output()
        .expect("run converter");
    let elapsed = start.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{name}: expected exit 1, stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{name}: panic text leaked: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{name}: one line expected: {stderr}");
    (stderr, elapsed)
}

#[test]
fn tract_panic_on_unsqueeze_axis_is_an_error() {
    for name in ["onnx_unsqueeze_axis_out_of_range.onnx", "onnx_unsqueeze_axis_fuzzer.onnx"] {
        let (stderr, _) = quantize_fails(name);
        assert!(stderr.contains("not a valid ONNX model"), "{name}: {stderr}");
    }
}

#[test]
fn huge_constant_of_shape_is_rejected_before_allocation() {
    // 937 bytes asking tract for a 792 741 888-element constant (3.2 GB of f32).
    let (stderr, took) = quantize_fails("onnx_constant_of_shape_huge.onnx");
    assert!(stderr.contains("would create a tensor of shape [1376288, 64, 3, 3]"), "{stderr}");
    assert!(took.as_secs() < 10, "took {took:?}");
}

#[test]
fn negative_constant_of_shape_dimension_is_rejected_before_allocation() {
    // The fuzzer's find: a ConstantOfShape target shape whose first dimension is a
    // negative i64. A clamp-to-0 size check let it through and tract read it as a
    // huge usize (2 GB RSS limit hit while typing).
    let (stderr, took) = quantize_fails("onnx_constant_of_shape_negative.onnx");
    assert!(stderr.contains("has a negative dimension"), "{stderr}");
    assert!(took.as_secs() < 10, "took {took:?}");
}
