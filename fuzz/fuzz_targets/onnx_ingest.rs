//! The converter's front end on arbitrary bytes: `ddpm_converter::ingest::load::load`
//! (tract: parse, fix input facts, type, declutter) and, on success,
//! `ddpm_converter::ingest::lower::lower`. Errors are fine; panics, aborts, OOM and hangs
//! are bugs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ddpm_edge_fuzz::onnx::check_onnx(data);
});
