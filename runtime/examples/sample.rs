//! Samples from an artifact on the host and prints the digest:
//! `cargo run --release -p ddpm-runtime --features std --example sample -- FILE [SEED] [DDIM_STEPS]`
//! (DDIM, η = 0, σ² = β, no clipping: the firmware's defaults).

use ddpm_runtime::{Digest, Mode, Model, NoHooks, Sampler, SamplerConfig, Sigma};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).ok_or("usage: sample FILE [SEED] [DDIM_STEPS]")?;
    let seed: u64 = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(1);
    let steps: u32 = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(20);
    let bytes = std::fs::read(path)?;
    let model = Model::load(&bytes)?;
    let mut arena = vec![0u8; Sampler::arena_bytes(&model)];
    let cfg = SamplerConfig {
        seed,
        mode: Mode::Ddim { steps, eta_q16: 0 },
        sigma: Sigma::Beta,
        clip_x0: false,
    };
    let t0 = std::time::Instant::now();
    let mut s = Sampler::new(&model, &mut arena, cfg)?;
    s.run(&mut NoHooks)?;
    let mut px = vec![0u8; model.image_len()];
    s.pixels(&mut px)?;
    println!("DIGEST {} ({:.3} s)", Digest::of(&px), t0.elapsed().as_secs_f64());
    Ok(())
}
