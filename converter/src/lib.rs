//! ddpm-edge converter: ONNX DDPM UNet → int8 `.ddq` artifact.
//!
//! Pipeline: [`load`] (tract: typed, decluttered) → [`lower`] (runtime op set, float
//! IR in [`ir`], checked by [`interp`] against [`float`]) → calibration → quantization →
//! memory [`plan`] → artifact.

pub mod float;
pub mod interp;
pub mod ir;
pub mod load;
pub mod lower;
pub mod plan;
pub mod schedule;
