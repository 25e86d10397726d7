//! Helpers shared by the end-to-end tests.

use std::path::{Path, PathBuf};

/// The shipped model's artifact: `DDPM_ARTIFACT` when set, else
/// `models/mnist_unet.onnx` quantized here with the default settings.
pub fn artifact_bytes() -> Vec<u8> {
    if let Ok(p) = std::env::var("DDPM_ARTIFACT") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "DDPM_ARTIFACT={} does not exist", p.display());
        return std::fs::read(p).unwrap();
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let opts = ddpm_converter::artifact::convert::Options::default();
    ddpm_converter::artifact::convert::convert(&root.join("models/mnist_unet.onnx"), &opts)
        .expect("quantizing models/mnist_unet.onnx")
        .bytes
}
