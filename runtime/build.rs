//! Enables the Armv7E-M DSP kernels (`cfg(ddpm_dsp)`) on thumbv7em targets unless
//! the `reference-kernels` feature asks for the portable reference kernels only.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(ddpm_dsp)");
    println!("cargo::rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    let reference_only = std::env::var_os("CARGO_FEATURE_REFERENCE_KERNELS").is_some();
    if target.starts_with("thumbv7em") && !reference_only {
        println!("cargo::rustc-cfg=ddpm_dsp");
    }
}
