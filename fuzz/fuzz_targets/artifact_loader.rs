//! Any byte string given to `Model::load` yields `Ok` or a typed `Error`; a loaded
//! model survives its accessors and one sampler step (DDPM and DDIM) in a bounded
//! arena. Each input is tried as given and with `file_size`/CRC patched, so
//! mutations get past the integrity checks into the structural validation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ddpm_edge_fuzz::check_artifact(data);
});
