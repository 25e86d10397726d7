#![doc = include_str!("../README.md")]
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs)]

pub mod format;

pub use format::{crc32, multiply_by_quantized_multiplier, quantize_multiplier, scratch_bytes};
