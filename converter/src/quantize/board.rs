//! Board profiles: the flash and RAM a converted model must fit (`quantize --board`).
//!
//! The capacities and reserves are the firmware's (`firmware/build.rs`), so a model
//! the converter accepts for a board also passes the firmware build for it.

use anyhow::{anyhow, bail, Result};
use ddpm_runtime::{Model, Sampler};

/// Flash kept for code, defmt strings and vectors besides the artifact.
pub const CODE_RESERVE: usize = 128 << 10;
/// RAM kept for the stack and the firmware's statics besides the arena.
pub const STACK_RESERVE: usize = 16 << 10;

/// Memory of one board.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Board {
    /// Profile name.
    pub name: String,
    /// Flash bytes for code and artifact.
    pub flash: usize,
    /// RAM bytes for arena, stack and statics.
    pub ram: usize,
}

/// Named profiles: `(name, flash, ram, what it is)`.
pub const PROFILES: &[(&str, usize, usize, &str)] = &[
    ("qemu-m4", 4 << 20, 4 << 20, "QEMU mps2-an386 (Cortex-M4)"),
    ("qemu-m7", 4 << 20, 4 << 20, "QEMU mps2-an500 (Cortex-M7)"),
    ("pico", (2 << 20) - 256, 264 << 10, "Raspberry Pi Pico (RP2040, Cortex-M0+)"),
    ("stm32h743", 2 << 20, 512 << 10, "STM32H743 (Cortex-M7), AXI SRAM"),
    ("nrf52840", 1 << 20, 256 << 10, "nRF52840 (Cortex-M4F)"),
    ("stm32f411", 512 << 10, 128 << 10, "STM32F411 (Cortex-M4F)"),
];

fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let (num, mul) = if let Some(n) = s.strip_suffix(['K', 'k']) {
        (n, 1 << 10)
    } else if let Some(n) = s.strip_suffix(['M', 'm']) {
        (n, 1 << 20)
    } else {
        (s, 1)
    };
    num.parse::<usize>().ok()?.checked_mul(mul).filter(|&v| v > 0)
}

impl Board {
    /// A named profile, or `custom:FLASH,RAM` (bytes, or with a K / M suffix).
    ///
    /// # Errors
    /// An unknown name or a malformed custom size, listing the valid forms.
    pub fn parse(s: &str) -> Result<Board> {
        if let Some(spec) = s.strip_prefix("custom:") {
            let (f, r) = spec
                .split_once(',')
                .and_then(|(f, r)| Some((parse_size(f)?, parse_size(r)?)))
                .ok_or_else(|| {
                    anyhow!("--board {s:?}: expected custom:FLASH,RAM such as custom:1M,256K")
                })?;
            return Ok(Board { name: s.to_string(), flash: f, ram: r });
        }
        match PROFILES.iter().find(|p| p.0 == s) {
            Some(&(name, flash, ram, _)) => Ok(Board { name: name.to_string(), flash, ram }),
            None => {
                let names: Vec<&str> = PROFILES.iter().map(|p| p.0).collect();
                bail!(
                    "unknown board {s:?}; expected one of {} or custom:FLASH,RAM",
                    names.join(", ")
                )
            }
        }
    }

    /// Checks that `artifact` (already validated by the runtime) fits: artifact plus
    /// code reserve in flash, sampler arena plus stack reserve in RAM.
    ///
    /// # Errors
    /// One line naming every size that does not fit, and what to do about it.
    pub fn check(&self, artifact: &[u8]) -> Result<()> {
        let m = Model::load(artifact).map_err(|e| anyhow!("artifact rejected: {e}"))?;
        let arena = Sampler::arena_bytes(&m);
        let mut over = Vec::new();
        if artifact.len() + CODE_RESERVE > self.flash {
            over.push(format!(
                "flash: artifact {} B + {} KiB for code = {} B > {} B",
                artifact.len(),
                CODE_RESERVE >> 10,
                artifact.len() + CODE_RESERVE,
                self.flash
            ));
        }
        if arena + STACK_RESERVE > self.ram {
            over.push(format!(
                "RAM: arena {arena} B ({} network + {} sampler state) + {} KiB stack = {} B > {} B",
                m.arena_bytes(),
                arena - m.arena_bytes() as usize,
                STACK_RESERVE >> 10,
                arena + STACK_RESERVE,
                self.ram
            ));
        }
        if over.is_empty() {
            return Ok(());
        }
        bail!(
            "the model does not fit board {}: {}; choose a board with more memory, quantize with --activations int8 (int8 activations everywhere: about half the arena, lower fidelity), or convert a smaller model (fewer channels or resolution levels)",
            self.name,
            over.join("; ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_profiles_and_custom_sizes() {
        assert_eq!(Board::parse("pico").unwrap().ram, 264 << 10);
        let b = Board::parse("custom:1M,256K").unwrap();
        assert_eq!((b.flash, b.ram), (1 << 20, 256 << 10));
        assert_eq!(Board::parse("custom:1000,2000").unwrap().ram, 2000);
        for bad in ["custom:1M", "custom:0,1", "custom:x,1K", "esp32"] {
            let e = Board::parse(bad).unwrap_err().to_string();
            assert!(e.contains("custom:FLASH,RAM"), "{bad}: {e}");
        }
    }
}
