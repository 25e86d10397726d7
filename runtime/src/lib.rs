#![doc = include_str!("../README.md")]
//!
//! # Example
//!
//! ```
//! # #[cfg(feature = "std")] {
//! # let artifact = ddpm_runtime::doc_artifact();
//! use ddpm_runtime::{Digest, Mode, Model, NoHooks, Sampler, SamplerConfig, Sigma};
//!
//! let model = Model::load(&artifact)?;
//! let mut arena = vec![0u8; Sampler::arena_bytes(&model)];
//! let cfg = SamplerConfig {
//!     seed: 42,
//!     mode: Mode::Ddim { steps: 2, eta_q16: 0 },
//!     sigma: Sigma::Beta,
//!     clip_x0: false,
//! };
//! let mut s = Sampler::new(&model, &mut arena, cfg)?;
//! while s.step(&mut NoHooks)?.is_some() {}
//! let mut px = vec![0u8; model.image_len()];
//! s.pixels(&mut px)?;
//! assert_eq!(Digest::of(&px).to_string().len(), 16);
//! # }
//! # Ok::<(), ddpm_runtime::Error>(())
//! ```
//!
//! # Panics
//!
//! None: every fallible path returns [`Error`]; indexing that could panic is
//! denied by lint in library code.
#![cfg_attr(not(any(feature = "std", test)), no_std)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

pub mod digest;
pub mod error;
pub mod format;
mod interp;
pub mod model;
pub mod ops;
pub mod sampler;

pub use digest::{digest, Digest};
pub use error::Error;
pub use format::{crc32, multiply_by_quantized_multiplier, quantize_multiplier, scratch_bytes};
pub use interp::{Hooks, NoHooks};
pub use model::{Model, Op, Ops, TensorInfo, TensorView};
pub use sampler::{Mode, Sampler, SamplerConfig, Sigma};

/// A minimal valid artifact (one 1×1 CONV2D, 2×2×1 image, T = 4) for examples.
#[cfg(feature = "std")]
#[doc(hidden)]
pub fn doc_artifact() -> Vec<u8> {
    use format::writer::*;
    let mut b = ArtifactBuilder::new();
    let t =
        |arena_offset| TensorDesc { h: 2, w: 2, c: 1, arena_offset, zero_point: 0, scale: 0.03 };
    let x = b.add_tensor(t(0));
    let y = b.add_tensor(t(16));
    let w = b.add_weights_i8(&[64]);
    let bias = b.add_weights_i32(&[0]);
    let (m, s) = quantize_multiplier(0.5 / 64.0);
    let mult = b.add_weights_i32(&[m]);
    let shift = b.add_weights_i32(&[s]);
    let mut params = vec![1, 1, 1, 1, 0, 0, 0, 0, 0, 0, -128, 127];
    for r in [w, bias, mult, shift] {
        params.extend(r.params());
    }
    let opcode = format::opcode::CONV2D;
    let (inputs, outputs) = (vec![x], vec![y]);
    b.add_op(OpDesc { opcode, inputs, outputs, params, scratch_offset: 32, scratch_len: 4 });
    let (im, is) = quantize_multiplier(2f64.powi(-24) / 0.03);
    b.set_model(ModelDesc {
        input_tensor: x as u32,
        output_tensor: y as u32,
        timesteps: 4,
        state_frac_bits: 24,
        input_multiplier: im,
        input_shift: is,
        eps_to_state_q16: (0.03 * 2f64.powi(40)) as i64,
        image_h: 2,
        image_w: 2,
        image_c: 1,
    });
    b.set_schedule(ScheduleDesc::linear(4, 0.1, 0.5));
    b.set_arena_bytes(48);
    b.finish()
}
