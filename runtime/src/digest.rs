//! Image digests: FNV-1a 64 over the u8 pixels, printed as 16 lowercase hex digits.

use core::fmt;

/// FNV-1a 64-bit hash of `pixels`.
pub fn digest(pixels: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in pixels {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A digest that formats as 16 lowercase hex digits (no allocation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Digest(pub u64);

impl Digest {
    /// Digest of `pixels`.
    pub fn of(pixels: &[u8]) -> Self {
        Digest(digest(pixels))
    }

    /// The 16 ASCII hex digits.
    pub fn hex(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        for (i, o) in out.iter_mut().enumerate() {
            let nib = (self.0 >> (60 - 4 * i)) & 0xF;
            *o = b"0123456789abcdef".get(nib as usize).copied().unwrap_or(b'0');
        }
        out
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_vectors() {
        assert_eq!(digest(b""), 0xcbf29ce484222325);
        assert_eq!(digest(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(digest(b"foobar"), 0x85944171f73967e8);
        let d = Digest::of(b"a");
        assert_eq!(&d.hex(), b"af63dc4c8601ec8c");
        assert_eq!(format!("{d}"), "af63dc4c8601ec8c");
        assert_eq!(format!("{}", Digest(1)), "0000000000000001");
    }
}
