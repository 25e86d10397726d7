//! Evaluate: running an artifact and its float model side by side. The float
//! sampler and `sample` ([`sample`]), ε and per-tensor SQNR ([`compare`]), the
//! quality report ([`quality`]), precision sensitivity ([`sensitivity`]), speed
//! and memory ([`bench`]) and PNG output ([`png_out`]). Each command takes a typed
//! options struct; argument parsing lives in the CLI.
//! Depends on [`crate::artifact`], [`crate::quantize`] and [`crate::ingest`].

pub mod bench;
pub mod compare;
pub mod png_out;
pub mod quality;
pub mod sample;
pub mod sensitivity;
