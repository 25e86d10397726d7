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
pub use format::writer::doc_artifact;
