//! Quantize: the float IR interpreter ([`interp`]), calibration on float reverse
//! trajectories ([`calib`]), the int16/int8 precision choice ([`precision`]),
//! quantization and op encoding ([`quant`]), the memory plan ([`plan`]), the
//! schedule tables ([`schedule`]) and the board fit ([`board`]).
//! Depends on [`crate::ingest`] only.

pub mod board;
pub mod calib;
pub mod interp;
pub mod plan;
pub mod precision;
pub mod quant;
pub mod schedule;
