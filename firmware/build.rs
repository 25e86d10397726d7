//! Build script: selects the board's memory map, embeds the artifact and checks
//! at build time that it fits the board.
//!
//! Inputs (environment, read at build time):
//! - `DDPM_ARTIFACT`: path of the `.ddq` artifact (relative to this crate),
//!   default `../models/mnist_unet.ddq`.
//! - `DDPM_SEED` (default 1), `DDPM_STEPS` (default 20, DDIM with η = 0).
//!
//! Output: `memory.x` in `OUT_DIR` (on the linker search path) and
//! `config.rs` with the artifact, its sizes and MAC counts as constants.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::process::exit;

/// A board profile: memory map and the capacities the build checks against.
struct Board {
    feature: &'static str,
    memory_x: &'static str,
    /// Bytes of flash usable for code + artifact.
    flash: usize,
    /// Bytes of RAM usable for arena + stack + statics.
    ram: usize,
    /// Targets the board can run.
    targets: &'static [&'static str],
}

const BOARDS: &[Board] = &[
    Board {
        feature: "qemu-m4",
        memory_x: "memory/qemu-mps2.x",
        flash: 4 << 20,
        ram: 4 << 20,
        // v6-M and v7-M code both run on the emulated M4.
        targets: &[
            "thumbv7em-none-eabihf",
            "thumbv7em-none-eabi",
            "thumbv6m-none-eabi",
            "thumbv7m-none-eabi",
        ],
    },
    Board {
        feature: "qemu-m7",
        memory_x: "memory/qemu-mps2.x",
        flash: 4 << 20,
        ram: 4 << 20,
        targets: &[
            "thumbv7em-none-eabihf",
            "thumbv7em-none-eabi",
            "thumbv6m-none-eabi",
            "thumbv7m-none-eabi",
        ],
    },
    Board {
        feature: "qemu-m33",
        memory_x: "memory/qemu-mps2-an505.x",
        // SSRAM1 (code) and SSRAM2 + SSRAM3 (data, contiguous), secure aliases.
        flash: 4 << 20,
        ram: 4 << 20,
        targets: &["thumbv8m.main-none-eabihf", "thumbv8m.main-none-eabi"],
    },
    Board {
        feature: "pico",
        memory_x: "memory/pico.x",
        flash: (2 << 20) - 256,
        ram: 264 << 10,
        targets: &["thumbv6m-none-eabi"],
    },
    Board {
        feature: "stm32h743",
        memory_x: "memory/stm32h743.x",
        flash: 2 << 20,
        ram: 512 << 10,
        targets: &["thumbv7em-none-eabihf", "thumbv7em-none-eabi"],
    },
];

/// Flash kept for code, defmt strings and vectors besides the artifact.
const CODE_RESERVE: usize = 128 << 10;
/// RAM kept for the stack and the firmware's own statics besides the arena.
const STACK_RESERVE: usize = 16 << 10;

fn fail(msg: &str) -> ! {
    // `cargo:warning` lines are shown even when the script fails; the panic-free
    // exit keeps the message free of a backtrace.
    for line in msg.lines() {
        println!("cargo:warning={line}");
    }
    eprintln!("error: {msg}");
    exit(1);
}

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let target = env::var("TARGET").unwrap();

    // ---- board profile ----
    let selected: Vec<&Board> = BOARDS
        .iter()
        .filter(|b| {
            env::var_os(format!("CARGO_FEATURE_{}", b.feature.to_uppercase().replace('-', "_")))
                .is_some()
        })
        .collect();
    let board = match selected.as_slice() {
        [b] => *b,
        [] => fail("no board profile selected: enable one of the features qemu-m4, qemu-m7, pico, stm32h743"),
        many => fail(&format!(
            "more than one board profile selected ({}); use --no-default-features --features <board>",
            many.iter().map(|b| b.feature).collect::<Vec<_>>().join(", ")
        )),
    };
    if !board.targets.contains(&target.as_str()) {
        fail(&format!(
            "board profile `{}` does not run {target}; build it with --target {}",
            board.feature, board.targets[0]
        ));
    }
    fs::copy(manifest.join(board.memory_x), out.join("memory.x")).unwrap();
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed={}", board.memory_x);
    println!("cargo:rerun-if-changed=build.rs");

    // ---- artifact ----
    println!("cargo:rerun-if-env-changed=DDPM_ARTIFACT");
    println!("cargo:rerun-if-env-changed=DDPM_SEED");
    println!("cargo:rerun-if-env-changed=DDPM_STEPS");
    let rel = env::var("DDPM_ARTIFACT").unwrap_or_else(|_| "../models/mnist_unet.ddq".into());
    let path = manifest.join(&rel);
    println!("cargo:rerun-if-changed={}", path.display());
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) => fail(&format!(
            "artifact {} not readable ({e}).\nRun `converter quantize models/mnist_unet.onnx` first \
             (writes models/mnist_unet.ddq), or point DDPM_ARTIFACT at a .ddq file.",
            path.display()
        )),
    };
    let info = match parse(&bytes) {
        Ok(i) => i,
        Err(e) => fail(&format!("artifact {} is malformed: {e}", path.display())),
    };

    // The sampler keeps x_t as i32 per pixel plus a small header next to the network arena
    // (must match ddpm_runtime::Sampler::arena_bytes; checked again at run time).
    let hwc = info.h as usize * info.w as usize * info.c as usize;
    let arena = info.arena_bytes as usize + 4 * hwc + 64;

    let flash_need = bytes.len() + CODE_RESERVE;
    let ram_need = arena + STACK_RESERVE;
    let mut errors = Vec::new();
    if flash_need > board.flash {
        errors.push(format!(
            "artifact is {} bytes (+{} KiB reserved for code) but board `{}` has {} bytes of flash",
            bytes.len(),
            CODE_RESERVE >> 10,
            board.feature,
            board.flash
        ));
    }
    if ram_need > board.ram {
        errors.push(format!(
            "arena needs {arena} bytes ({} network + {} sampler state) (+{} KiB reserved for stack) but board `{}` has {} bytes of RAM",
            info.arena_bytes,
            arena - info.arena_bytes as usize,
            STACK_RESERVE >> 10,
            board.feature,
            board.ram
        ));
    }
    if !errors.is_empty() {
        fail(&format!(
            "model {} does not fit board `{}`:\n  {}",
            path.display(),
            board.feature,
            errors.join("\n  ")
        ));
    }

    let seed: u64 = parse_env("DDPM_SEED", 1);
    let steps: u32 = parse_env("DDPM_STEPS", 20);
    if steps == 0 || steps > info.timesteps {
        fail(&format!("DDPM_STEPS={steps} must be in 1..={}", info.timesteps));
    }

    let mut cfg = String::new();
    let abs = path.canonicalize().unwrap();
    writeln!(cfg, "/// Board profile this image was built for.").unwrap();
    writeln!(cfg, "pub const BOARD: &str = {:?};", board.feature).unwrap();
    writeln!(cfg, "/// Path the artifact was embedded from.").unwrap();
    writeln!(cfg, "pub const ARTIFACT_PATH: &str = {:?};", abs.display().to_string()).unwrap();
    writeln!(cfg, "#[repr(C, align(16))]\nstruct Aligned<T: ?Sized>(T);").unwrap();
    writeln!(
        cfg,
        "static ALIGNED: &Aligned<[u8; {}]> = &Aligned(*include_bytes!({:?}));",
        bytes.len(),
        abs.display().to_string()
    )
    .unwrap();
    writeln!(cfg, "/// The artifact, 16-byte aligned in flash.").unwrap();
    writeln!(cfg, "pub static ARTIFACT: &[u8] = &ALIGNED.0;").unwrap();
    writeln!(cfg, "/// Network arena from the artifact header.").unwrap();
    writeln!(cfg, "pub const NET_ARENA_BYTES: usize = {};", info.arena_bytes).unwrap();
    writeln!(cfg, "/// Network arena plus sampler state, as checked against the board.").unwrap();
    writeln!(cfg, "pub const ARENA_BYTES: usize = {arena};").unwrap();
    writeln!(cfg, "/// Board RAM and flash in bytes.").unwrap();
    writeln!(
        cfg,
        "pub const BOARD_RAM: usize = {};\npub const BOARD_FLASH: usize = {};",
        board.ram, board.flash
    )
    .unwrap();
    writeln!(cfg, "/// Image shape.").unwrap();
    writeln!(cfg, "pub const IMAGE_H: usize = {};\npub const IMAGE_W: usize = {};\npub const IMAGE_C: usize = {};", info.h, info.w, info.c).unwrap();
    writeln!(cfg, "/// Rust target triple.").unwrap();
    writeln!(cfg, "pub const TARGET: &str = {target:?};").unwrap();
    writeln!(cfg, "/// Sampling settings (DDPM_SEED, DDPM_STEPS).").unwrap();
    writeln!(cfg, "pub const SEED: u64 = {seed};\npub const STEPS: u32 = {steps};").unwrap();
    fs::write(out.join("config.rs"), cfg).unwrap();
}

fn parse_env<T: std::str::FromStr>(name: &str, default: T) -> T {
    match env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| fail(&format!("{name}={v:?} is not a valid number"))),
        Err(_) => default,
    }
}

/// What the build needs from the artifact (FORMAT.md, version 1).
struct Info {
    arena_bytes: u32,
    timesteps: u32,
    h: u32,
    w: u32,
    c: u32,
}

fn rd<const N: usize>(b: &[u8], off: usize) -> Result<[u8; N], String> {
    b.get(off..off + N)
        .map(|s| s.try_into().unwrap())
        .ok_or_else(|| format!("read of {N} bytes at {off} past the end ({} bytes)", b.len()))
}
fn u16_at(b: &[u8], off: usize) -> Result<u16, String> {
    Ok(u16::from_le_bytes(rd(b, off)?))
}
fn u32_at(b: &[u8], off: usize) -> Result<u32, String> {
    Ok(u32::from_le_bytes(rd(b, off)?))
}

fn parse(b: &[u8]) -> Result<Info, String> {
    if b.get(..8) != Some(b"DDPMEDGE".as_slice()) {
        return Err("bad magic (expected DDPMEDGE)".into());
    }
    let version = u16_at(b, 8)?;
    if version != 1 {
        return Err(format!("format version {version}, this firmware reads version 1"));
    }
    if u32_at(b, 16)? as usize != b.len() {
        return Err(format!("header file_size {} != file length {}", u32_at(b, 16)?, b.len()));
    }
    let arena_bytes = u32_at(b, 24)?;
    let nsec = u16_at(b, 12)? as usize;
    let mut sec = [None::<(usize, usize)>; 7];
    for i in 0..nsec {
        let e = 64 + 16 * i;
        let kind = u32_at(b, e)? as usize;
        let off = u32_at(b, e + 4)? as usize;
        let len = u32_at(b, e + 8)? as usize;
        if off.checked_add(len).is_none_or(|end| end > b.len()) {
            return Err(format!("section {kind} out of bounds"));
        }
        if let Some(s) = sec.get_mut(kind) {
            *s = Some((off, len));
        }
    }
    let get = |k: usize| sec[k].ok_or_else(|| format!("section kind {k} missing"));
    let (m, _) = get(1)?;
    let timesteps = u32_at(b, m + 16)?;
    let (h, w, c) = (u32_at(b, m + 40)?, u32_at(b, m + 44)?, u32_at(b, m + 48)?);

    Ok(Info { arena_bytes, timesteps, h, w, c })
}
