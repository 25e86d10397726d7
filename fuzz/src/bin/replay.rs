//! Runs files through the fuzz targets' checks without libFuzzer, printing what each
//! reached; a bug shows up as a panic (non-zero exit) naming the file.
//!
//! ```sh
//! cargo run --no-default-features --bin replay -- loader regressions/*.ddq
//! cargo run --no-default-features --features onnx --bin replay -- onnx seeds/onnx_ingest/*
//! ```

fn main() {
    let mut args = std::env::args().skip(1);
    let target = args.next().unwrap_or_default();
    let files: Vec<String> = args.collect();
    if files.is_empty() || !matches!(target.as_str(), "loader" | "onnx" | "ddpm-step") {
        eprintln!("usage: replay loader|onnx|ddpm-step FILE...");
        std::process::exit(2);
    }
    if target == "ddpm-step" {
        // One DDPM step with a fixed configuration (seed 0, σ² = β, no clipping), the
        // shortest way to show a sampler bug to the runtime's owner.
        use ddpm_runtime::{Mode, Model, NoHooks, Sampler, SamplerConfig, Sigma};
        for f in files {
            let data = std::fs::read(&f).unwrap_or_else(|e| panic!("cannot read {f}: {e}"));
            let m = Model::load(&data).unwrap_or_else(|e| panic!("{f}: load: {e:?}"));
            let mut arena = vec![0u8; Sampler::arena_bytes(&m)];
            let cfg = SamplerConfig { seed: 0, mode: Mode::Ddpm, sigma: Sigma::Beta, clip_x0: false };
            let mut s = Sampler::new(&m, &mut arena, cfg).unwrap_or_else(|e| panic!("{f}: {e:?}"));
            println!("{f}: step -> {:?}", s.step(&mut NoHooks));
        }
        return;
    }
    for f in files {
        let data = std::fs::read(&f).unwrap_or_else(|e| panic!("cannot read {f}: {e}"));
        eprintln!("{f}: {} bytes ...", data.len());
        if target == "loader" {
            let o = ddpm_edge_fuzz::check_artifact(&data);
            if let Ok(m) = ddpm_runtime::Model::load(&data) {
                let (macs, written) = ddpm_edge_fuzz::forward_cost(&m);
                println!("{f}: {o:?}, forward MACs {macs}, bytes written {written}");
            } else {
                println!("{f}: {o:?} (raw load: {:?})", ddpm_runtime::Model::load(&data).err());
            }
        } else {
            #[cfg(feature = "onnx")]
            println!("{f}: {:?}", ddpm_edge_fuzz::onnx::check_onnx(&data));
            #[cfg(not(feature = "onnx"))]
            panic!("build with --features onnx to replay ONNX files");
        }
    }
}
