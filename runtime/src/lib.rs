#![doc = include_str!("../README.md")]
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

pub mod error;
pub mod format;
mod interp;
pub mod model;
pub mod ops;

pub use error::Error;
pub use format::{crc32, multiply_by_quantized_multiplier, quantize_multiplier, scratch_bytes};
pub use interp::{Hooks, NoHooks};
pub use model::{Model, Op, Ops, TensorInfo};
pub mod digest;
pub mod sampler;

pub use digest::{digest, Digest};
pub use sampler::{Mode, Sampler, SamplerConfig, Sigma};
