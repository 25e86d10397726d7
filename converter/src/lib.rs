//! ddpm-edge converter: ONNX DDPM UNet → int8 `.ddq` artifact.
//!
//! Modules by stage, each depending only on the ones before it:
//! [`ingest`] (tract load, lowering to the float IR) → [`quantize`] (calibration,
//! precision, quantization, plan, schedule tables) → [`artifact`] (write, the
//! [`convert`](artifact::convert::convert) pipeline, inspect) → [`evaluate`]
//! (sampling, comparison against float, sensitivity, bench) → [`cli`] (the clap
//! parser and the command runners).

pub mod artifact;
pub mod cli;
pub mod evaluate;
pub mod ingest;
pub mod quantize;
