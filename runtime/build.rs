//! Enables the Armv7E-M DSP kernels (`cfg(ddpm_dsp)`) on thumbv7em targets and the
//! vectorizable im2col conv (`cfg(ddpm_wide)`) on x86_64 and aarch64, unless
//! the `reference-kernels` feature asks for the portable reference kernels only.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(ddpm_dsp)");
    println!("cargo::rustc-check-cfg=cfg(ddpm_wide)");
    println!("cargo::rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    let reference_only = std::env::var_os("CARGO_FEATURE_REFERENCE_KERNELS").is_some();
    if target.starts_with("thumbv7em") && !reference_only {
        println!("cargo::rustc-cfg=ddpm_dsp");
    }
    // 64-bit hosts: im2col with vectorizable i16 columns.
    if (target.starts_with("x86_64") || target.starts_with("aarch64")) && !reference_only {
        println!("cargo::rustc-cfg=ddpm_wide");
    }
}
