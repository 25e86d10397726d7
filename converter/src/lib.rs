//! ddpm-edge converter: ONNX DDPM UNet → int8 `.ddq` artifact.
//!
//! Pipeline ([`convert::convert`]): [`load`] (tract: typed, decluttered) → [`lower`]
//! (runtime op set, float IR in [`ir`], checked by [`interp`] against [`float`]) →
//! [`calib`] (float reverse trajectories) → [`quant`] → [`plan`] → [`write`].
//! [`inspect`] reads an artifact back; [`compare`] measures int8 against float.

pub mod bench;
pub mod board;
pub mod calib;
pub mod cli_extra;
pub mod compare;
pub mod convert;
pub mod float;
pub mod inspect;
pub mod interp;
pub mod ir;
pub mod load;
pub mod lower;
pub mod plan;
pub mod png_out;
pub mod precision;
pub mod quality;
pub mod quant;
pub mod sample;
pub mod schedule;
pub mod sensitivity;
pub mod write;
