//! Enables the Armv7E-M DSP kernels (`cfg(ddpm_dsp)`) on thumbv7em targets and on
//! thumbv8m.main targets built with the DSP extension (e.g. `-C target-cpu=cortex-m33`),
//! and the vectorizable im2col conv (`cfg(ddpm_wide)`) on x86_64 and aarch64, unless
//! the `reference-kernels` feature asks for the portable reference kernels only.

use std::env;

/// Cores with the Armv8-M DSP extension (`-C target-cpu=...`). The M33/M35P make it
/// optional in silicon, but LLVM's CPU models (and every shipping part we know of,
/// e.g. the RP2350 and the QEMU mps2-an505) include it.
const V8M_DSP_CPUS: &[&str] = &["cortex-m33", "cortex-m35p", "cortex-m55", "cortex-m85"];

/// Whether a thumbv8m.main build enables the DSP extension.
///
/// Stable rustc does not report Arm's `dsp` target feature in
/// `CARGO_CFG_TARGET_FEATURE` (the feature is unstable, the variable is empty even
/// with `-C target-cpu=cortex-m33`), so the rustflags are read as well: the last
/// `target-cpu` and the last `+dsp`/`-dsp` in `target-feature` decide.
fn v8m_has_dsp() -> bool {
    let reported = env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    if reported.split(',').any(|f| f == "dsp") {
        return true;
    }
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let mut args = flags.split('\x1f').filter(|a| !a.is_empty());
    let mut dsp = false;
    while let Some(arg) = args.next() {
        // `-C key=value`, `-Ckey=value` or `--codegen key=value`.
        let kv = match arg {
            "-C" | "--codegen" => args.next().unwrap_or_default(),
            a => a.strip_prefix("-C").or_else(|| a.strip_prefix("--codegen=")).unwrap_or(""),
        };
        if let Some(cpu) = kv.strip_prefix("target-cpu=") {
            dsp = V8M_DSP_CPUS.contains(&cpu);
        } else if let Some(features) = kv.strip_prefix("target-feature=") {
            for f in features.split(',') {
                match f {
                    "+dsp" => dsp = true,
                    "-dsp" => dsp = false,
                    _ => {}
                }
            }
        }
    }
    dsp
}

fn main() {
    println!("cargo::rustc-check-cfg=cfg(ddpm_dsp)");
    println!("cargo::rustc-check-cfg=cfg(ddpm_wide)");
    println!("cargo::rerun-if-changed=build.rs");
    let target = env::var("TARGET").unwrap_or_default();
    let reference_only = env::var_os("CARGO_FEATURE_REFERENCE_KERNELS").is_some();
    let dsp =
        target.starts_with("thumbv7em") || (target.starts_with("thumbv8m.main") && v8m_has_dsp());
    if dsp && !reference_only {
        println!("cargo::rustc-cfg=ddpm_dsp");
    }
    // 64-bit hosts: im2col with vectorizable i16 columns.
    if (target.starts_with("x86_64") || target.starts_with("aarch64")) && !reference_only {
        println!("cargo::rustc-cfg=ddpm_wide");
    }
}
