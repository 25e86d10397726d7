//! The host sampler's prepared-weights cache (`Sampler::arena_bytes_with_cache`:
//! on x86_64 with AVX2 the Winograd layers' transformed weights, filled by the
//! first step and read by the rest) changes no pixel.
//!
//! Environment: `DDPM_ARTIFACT`, as `shipped_budget.rs`.

mod common;

use ddpm_runtime::{Mode, Model, NoHooks, Sampler, SamplerConfig, Sigma};

#[test]
fn weight_cache_gives_the_same_samples() {
    let bytes = common::artifact_bytes();
    let m = Model::load(&bytes).unwrap();
    let cfg = SamplerConfig {
        seed: 5,
        mode: Mode::Ddim { steps: 6, eta_q16: 1 << 15 },
        sigma: Sigma::Beta,
        clip_x0: false,
    };
    let run = |len: usize| {
        let mut arena = vec![0u8; len];
        let mut px = vec![0u8; m.image_len()];
        {
            let mut s = Sampler::new(&m, &mut arena, cfg).unwrap();
            s.run(&mut NoHooks).unwrap();
            s.pixels(&mut px).unwrap();
        }
        (px, arena)
    };
    let base = Sampler::arena_bytes(&m);
    let (plain, _) = run(base);
    let (cached, arena) = run(Sampler::arena_bytes_with_cache(&m));
    assert_eq!(plain, cached, "the cache changed pixels");
    let cache = m.weight_cache_bytes();
    assert_eq!(Sampler::arena_bytes_with_cache(&m), base + cache);
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // Twelve int8-input 3×3 stride-1 convolutions: 304,128 weights, 16/9 of
        // them per weight as i16 (about 1.08 MB).
        assert!(cache > 1_000_000, "cache {cache} B");
        assert!(arena[base..].iter().any(|&b| b != 0), "the cache was never filled");
        return;
    }
    assert_eq!(cache, 0, "no cache off x86_64 AVX2 hosts");
}
