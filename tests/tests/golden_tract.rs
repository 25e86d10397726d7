//! The shipped UNet, loaded by tract-onnx, reproduces the ε that PyTorch computed
//! for fixed inputs (`models/golden.json`, written by `models/train.py`).
//!
//! Tolerance: 1e-4 absolute per element. Both sides are f32; tract and PyTorch sum
//! convolutions in different orders, which moves results by a few ULP of values
//! of order 1 (≈1e-6); 1e-4 leaves room for that and nothing else.

use std::path::PathBuf;

use tract_onnx::prelude::*;

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

#[test]
fn tract_matches_pytorch_golden_eps() -> anyhow::Result<()> {
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(models_dir().join("golden.json"))?)?;
    let cases = golden.as_array().expect("golden.json is an array");
    assert!(cases.len() >= 3, "golden.json must hold at least 3 cases");

    let model = tract_onnx::onnx()
        .model_for_path(models_dir().join("mnist_unet.onnx"))?
        .with_input_fact(0, f32::fact([1, 1, 28, 28]).into())?
        .with_input_fact(1, i64::fact([1]).into())?
        .into_optimized()?
        .into_runnable()?;

    let mut worst = 0f32;
    for case in cases {
        let t = case["t"].as_i64().expect("t");
        let x: Vec<f32> =
            case["x"].as_array().expect("x").iter().map(|v| v.as_f64().unwrap() as f32).collect();
        let eps: Vec<f32> = case["eps"]
            .as_array()
            .expect("eps")
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(x.len(), 784);
        assert_eq!(eps.len(), 784);
        let xt = tract_ndarray::Array4::from_shape_vec((1, 1, 28, 28), x)?.into_tensor();
        let tt = tract_ndarray::Array1::from_vec(vec![t]).into_tensor();
        let out = model.run(tvec!(xt.into(), tt.into()))?;
        let got: Vec<f32> = out[0].to_plain_array_view::<f32>()?.iter().copied().collect();
        for (g, e) in got.iter().zip(&eps) {
            let d = (g - e).abs();
            worst = worst.max(d);
            assert!(d <= 1e-4, "t={t}: tract {g} vs pytorch {e} (|diff| {d} > 1e-4)");
        }
    }
    println!("worst |tract - pytorch| = {worst:e} over {} cases", cases.len());
    Ok(())
}
