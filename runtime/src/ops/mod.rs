//! The int8/int16 kernels, NHWC, batch 1, one directory per op.
//!
//! Semantics are those of `docs/FORMAT.md` (TFLite / CMSIS-NN requantization via
//! [`multiply_by_quantized_multiplier`](crate::format::multiply_by_quantized_multiplier)).
//! Kernels take slices the loader has already validated; they never index out of
//! bounds (slice access is through `get`, iterators and `chunks`), and a slice of
//! unexpected length only produces fewer outputs, never a panic.
//!
//! Each op's `mod.rs` holds its parameters, its entry points (which pick the
//! kernel for the target) and its portable reference kernels; fast kernels sit
//! beside them in files named by where they run (`armv7em` for Cortex-M4/M7
//! `SMLAD` paths, `*_avx2` for x86_64 with AVX2, `host*` for 64-bit hosts).
//! Arithmetic shared by several ops lives in [`numerics`], which imports no op;
//! ops import [`numerics`], [`crate::format`] and [`crate::error`], never each
//! other. The interpreter dispatches by opcode.

pub mod add;
pub mod concat;
pub mod conv2d;
pub mod group_norm;
pub mod lut;
pub mod matmul;
pub mod mul;
pub mod numerics;
pub mod requant;
pub mod softmax;
pub mod timestep_embed;
pub mod upsample;
