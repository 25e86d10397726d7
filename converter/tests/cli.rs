//! The `converter` binary end to end: success paths and every documented error.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ddpm-converter-cli-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn converter(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_converter")).args(args).output().unwrap()
}

const FAST: &[&str] =
    &["--quiet", "--timesteps", "100", "--calib-trajectories", "2", "--calib-timesteps", "8"];

fn quantize(model: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut a = vec!["quantize", model.to_str().unwrap(), "-o", out.to_str().unwrap()];
    a.extend_from_slice(FAST);
    a.extend_from_slice(extra);
    converter(&a)
}

/// Fails with exit code ≠ 0 and exactly one `error:` line containing every `needle`.
fn assert_error(o: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "expected failure, stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line expected: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "{n:?} missing from: {err}");
    }
}

/// A usage error from the parser: exit code 2, `error: ` first, every `needle`
/// (the flag and the value it rejected) named.
fn assert_usage_error(o: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "expected a usage error, stderr: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "{n:?} missing from: {err}");
    }
}

#[test]
fn quantize_then_inspect_json() {
    let out = tmp("tiny.ddq");
    let o = quantize(&data("tiny_unet.onnx"), &out, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = converter(&["inspect", out.to_str().unwrap(), "--json"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for k in
        ["params", "flash_bytes", "arena_bytes", "arena_lower_bound_bytes", "macs_per_step", "ops"]
    {
        assert!(v.get(k).is_some(), "missing key {k}");
    }
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(v["flash_bytes"].as_u64().unwrap() as usize, bytes.len());
    assert!(v["arena_bytes"].as_u64().unwrap() >= v["arena_lower_bound_bytes"].as_u64().unwrap());
    assert!(v["macs_per_step"].as_u64().unwrap() > 300_000);
    // 8 conv-like layers of the tiny UNet alone hold more than 20k parameters
    assert!(v["params"].as_u64().unwrap() > 20_000);
    let ops = v["ops"].as_array().unwrap();
    for name in [
        "TIMESTEP_EMBED",
        "CONV2D",
        "GROUP_NORM",
        "LUT",
        "ADD",
        "CONCAT",
        "UPSAMPLE_NEAREST",
        "MATMUL",
        "SOFTMAX",
    ] {
        assert!(ops.iter().any(|o| o["op"] == name), "no {name} op");
    }
    use sha2::Digest;
    let sha: String = sha2::Sha256::digest(std::fs::read(data("tiny_unet.onnx")).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(v["provenance"]["source_sha256"], sha.as_str());
    assert_eq!(v["provenance"]["calibration"]["trajectories"], 2);
    assert_eq!(v["schedule"]["timesteps"], 100);
    // the text form names the same figures
    let o = converter(&["inspect", out.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("arena bytes") && text.contains("MACs per step"), "{text}");
}

#[test]
fn activations_mixed_by_default_int8_on_request() {
    let m = data("tiny_unet.onnx");
    let inspect = |out: &Path| -> serde_json::Value {
        let o = converter(&["inspect", out.to_str().unwrap(), "--json"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let mixed = tmp("tiny_mixed.ddq");
    let o = quantize(&m, &mixed, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = inspect(&mixed);
    assert_eq!(v["provenance"]["calibration"]["activations"], "mixed");
    let n16 = v["int16_tensors"].as_u64().unwrap();
    assert!(n16 > 0);
    assert_eq!(v["provenance"]["calibration"]["int16_tensors"].as_u64().unwrap(), n16);
    let image = v["image"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap());
    let image_hw: u64 = image.take(2).product();
    let list = v["tensor_list"].as_array().unwrap();
    for t in list.iter().filter(|t| t["type"] == "i16") {
        let sh: Vec<u64> =
            t["shape"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
        assert!(sh[0] * sh[1] >= image_hw, "int16 below image resolution: {t}");
        assert_eq!(t["bytes"].as_u64().unwrap(), 2 * sh[0] * sh[1] * sh[2], "{t}");
        assert_eq!(t["zero_point"], 0, "{t}");
        assert_eq!(t["arena_offset"].as_u64().unwrap() % 2, 0, "{t}");
    }
    let ops = v["ops"].as_array().unwrap();
    assert!(ops.iter().any(|o| o["op"] == "LUT16"));
    // ε is at the image's resolution, so it is int16 too (the sampler reads either).
    let last = ops.last().unwrap();
    assert_eq!(last["output_type"], "i16");
    assert!(v["arena_bytes"].as_u64().unwrap() >= v["arena_lower_bound_bytes"].as_u64().unwrap());
    let text = String::from_utf8_lossy(&converter(&["inspect", mixed.to_str().unwrap()]).stdout)
        .to_string();
    assert!(text.contains(":i16") && text.contains("int16"), "{text}");

    let int8 = tmp("tiny_int8.ddq");
    let o = quantize(&m, &int8, &["--activations", "int8"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let w = inspect(&int8);
    assert_eq!(w["provenance"]["calibration"]["activations"], "int8");
    assert_eq!(w["int16_tensors"], 0);
    assert!(w["ops"].as_array().unwrap().iter().all(|o| o["op"] != "LUT16"));
    assert!(w["arena_bytes"].as_u64().unwrap() < v["arena_bytes"].as_u64().unwrap());

    // Both run on the runtime.
    for a in [&mixed, &int8] {
        let o = converter(&["sample", a.to_str().unwrap(), "--steps", "5", "--quiet"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(String::from_utf8_lossy(&o.stdout).starts_with("digest: "));
    }
    assert_usage_error(
        &quantize(&m, &tmp("x.ddq"), &["--activations", "int4"]),
        &["--activations", "int4", "mixed", "int8"],
    );
}

#[test]
fn default_output_replaces_the_extension() {
    let model = tmp("copy.onnx");
    std::fs::copy(data("tiny_unet.onnx"), &model).unwrap();
    let mut a = vec!["quantize", model.to_str().unwrap()];
    a.extend_from_slice(FAST);
    let o = converter(&a);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(tmp("copy.ddq").exists());
}

#[test]
fn dynamic_shape_needs_input_shape() {
    let out = tmp("dyn.ddq");
    let o = quantize(&data("dynamic_hw.onnx"), &out, &[]);
    assert_error(&o, &["dynamic shape", "--input-shape"]);
    let o = quantize(&data("dynamic_hw.onnx"), &out, &["--input-shape", "1,8,8"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = quantize(&data("dynamic_hw.onnx"), &out, &["--input-shape", "1,8"]);
    assert_usage_error(&o, &["--input-shape", "1,8", "C,H,W"]);
}

#[test]
fn not_an_onnx_file() {
    let p = tmp("text.onnx");
    std::fs::write(&p, b"this is plain text, not a protobuf\n").unwrap();
    assert_error(&quantize(&p, &tmp("x.ddq"), &[]), &["text.onnx"]);
    let p = tmp("empty.onnx");
    std::fs::write(&p, b"").unwrap();
    assert_error(&quantize(&p, &tmp("x.ddq"), &[]), &["empty"]);
}

#[test]
fn truncated_file() {
    let full = std::fs::read(data("tiny_unet.onnx")).unwrap();
    let p = tmp("truncated.onnx");
    std::fs::write(&p, &full[..full.len() / 2]).unwrap();
    assert_error(
        &quantize(&p, &tmp("x.ddq"), &[]),
        &["truncated.onnx", "not a readable ONNX model"],
    );
}

#[test]
fn missing_file() {
    assert_error(
        &quantize(&tmp("does-not-exist.onnx"), &tmp("x.ddq"), &[]),
        &["cannot read", "does-not-exist.onnx"],
    );
}

#[test]
fn wrong_number_of_inputs() {
    assert_error(
        &quantize(&data("one_input.onnx"), &tmp("x.ddq"), &[]),
        &["1 inputs", "exactly 2"],
    );
}

#[test]
fn unsupported_op_names_node_op_and_shapes() {
    let o = quantize(&data("unsupported.onnx"), &tmp("x.ddq"), &[]);
    assert_error(&o, &["/act/Tanh", "op Tanh", "1,1,8,8", "no lowering"]);
}

#[test]
fn nan_weights_are_rejected() {
    let o = quantize(&data("nan_weights.onnx"), &tmp("x.ddq"), &[]);
    assert_error(&o, &["/conv/Conv", "non-finite", "NaN"]);
}

#[test]
fn bad_options() {
    let m = data("tiny_unet.onnx");
    assert_usage_error(
        &quantize(&m, &tmp("x.ddq"), &["--schedule", "sigmoid"]),
        &["--schedule", "sigmoid", "linear, cosine, quadratic"],
    );
    assert_usage_error(
        &quantize(&m, &tmp("x.ddq"), &["--calib-method", "kl"]),
        &["--calib-method", "kl", "minmax, percentile, mse"],
    );
    assert_usage_error(
        &quantize(&m, &tmp("x.ddq"), &["--calib-trajectories", "0"]),
        &["--calib-trajectories", "0"],
    );
    assert_usage_error(&quantize(&m, &tmp("x.ddq"), &["--frobnicate"]), &["--frobnicate"]);
    assert_error(
        &quantize(&m, &tmp("x.ddq"), &["--beta-start", "0.5", "--beta-end", "0.1"]),
        &["beta"],
    );
    assert_usage_error(&converter(&["frobnicate"]), &["frobnicate"]);
    assert_usage_error(&converter(&["quantize"]), &["MODEL.onnx"]);
    assert_usage_error(&converter(&["inspect", "a.ddq", "--per-tensor"]), &["--per-tensor"]);
    assert_usage_error(
        &converter(&["compare", "m.onnx", "a.ddq", "--per-tensor", "--json"]),
        &["--per-tensor", "--json"],
    );
}

#[test]
fn inspect_rejects_a_corrupt_artifact() {
    let out = tmp("corrupt.ddq");
    let o = quantize(&data("tiny_unet.onnx"), &out, &[]);
    assert!(o.status.success());
    let mut b = std::fs::read(&out).unwrap();
    let n = b.len();
    b[n / 2] ^= 0x55;
    std::fs::write(&out, &b).unwrap();
    assert_error(&converter(&["inspect", out.to_str().unwrap()]), &["not a valid artifact"]);
}

#[test]
fn sensitivity_reports_every_configuration_and_int16_beats_int8() {
    let m = data("tiny_unet.onnx");
    let o = converter(&[
        "sensitivity",
        m.to_str().unwrap(),
        "--calib-trajectories",
        "2",
        "--eval-trajectories",
        "1",
        "--eval-timesteps",
        "12",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = v["configs"].as_array().unwrap();
    assert_eq!(rows.len(), 6);
    let med = |name: &str| {
        let r = rows.iter().find(|r| r["config"].as_str().unwrap().starts_with(name)).unwrap();
        let m = r["eps_sqnr_db_median"].as_f64().unwrap();
        assert!(m.is_finite() && r["eps_sqnr_db_min"].as_f64().unwrap() <= m, "{r}");
        m
    };
    // 16-bit activations have 256× finer steps on the same range: on any model the
    // simulated ε must be clearly closer to float than with 8-bit ones.
    assert!(med("w8 a16 everywhere") > med("w8 a8") + 6.0);
    assert!(med("w8 (activations float)") > med("w8 a8"));
    // The converter's mixed policy (int16 where the ops allow, at image resolution).
    assert!(med("w8 a16 where --activations mixed") > med("w8 a8"));
    let bad = converter(&["sensitivity"]);
    assert_usage_error(&bad, &["MODEL.onnx"]);
}

#[test]
fn help_prints_usage_and_succeeds_for_every_command() {
    for cmd in ["quantize", "inspect", "sample", "compare", "bench", "sensitivity", "dump-graph"] {
        let o = converter(&[cmd, "--help"]);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{cmd} --help failed: {}", String::from_utf8_lossy(&o.stderr));
        assert!(
            out.to_lowercase().contains("usage:") && out.contains(cmd),
            "{cmd} --help printed: {out}"
        );
    }
    for top in [&["--help"][..], &["help"], &["--version"], &["quantize", "--version"]] {
        let o = converter(top);
        assert!(o.status.success(), "{top:?}: {}", String::from_utf8_lossy(&o.stderr));
        assert!(!o.stdout.is_empty(), "{top:?} printed nothing");
    }
    let o = converter(&["--version"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn board_profiles_reject_models_that_do_not_fit_naming_the_sizes() {
    let m = data("tiny_unet.onnx");
    let out = tmp("board.ddq");
    // Fits the Pico: the artifact is written.
    let o = quantize(&m, &out, &["--board", "pico"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.is_file());
    let len = std::fs::metadata(&out).unwrap().len();
    // 100 KiB of flash cannot hold the artifact plus 128 KiB of code, nor 10 KiB of
    // RAM its arena plus a 16 KiB stack: one line names both, nothing is written.
    let small = tmp("board-small.ddq");
    let o = quantize(&m, &small, &["--board", "custom:100K,10K"]);
    assert_error(
        &o,
        &[
            "does not fit board custom:100K,10K",
            &format!("artifact {len} B"),
            "102400 B",
            "RAM: arena",
            "10240 B",
        ],
    );
    assert!(!small.exists(), "nothing is written for a model that does not fit");
    let o = quantize(&m, &small, &["--board", "esp32"]);
    assert_usage_error(&o, &["--board", "unknown board \"esp32\"", "pico", "custom:FLASH,RAM"]);
}
