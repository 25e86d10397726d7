//! LUT: `y = table[q + 128]` (SiLU, sigmoid, … built by the converter).
//! LUT16 (int16): [`lut16`], a 513-entry table with linear interpolation
//! (compiled for AVX2 on x86_64 hosts with the `std` feature).

use crate::ops::numerics::{Elem, E16};

/// Applies a 256-entry table.
pub fn lut(x: &[i8], y: &mut [i8], table: &[i8]) {
    // With the table as an array, `q + 128` (= `q as u8 ^ 0x80`) needs no bounds
    // check per element.
    if let Some(t) = table.get(..256).and_then(|t| <&[i8; 256]>::try_from(t).ok()) {
        for (yv, &q) in y.iter_mut().zip(x) {
            *yv = t.get((q as u8 ^ 0x80) as usize).copied().unwrap_or(0);
        }
        return;
    }
    for (yv, &q) in y.iter_mut().zip(x) {
        *yv = table.get((q as i32 + 128) as usize).copied().unwrap_or(0);
    }
}

/// LUT16: `u = q + 32768`, `i = u >> 7`, `f = u & 127`,
/// `y = t[i] + (((t[i+1] − t[i])·f + 64) >> 7)` over a 513-entry i16 table.
///
/// The table is decoded once (entries past its end read 0, as
/// [`Elem::get`] does); on x86_64 hosts with AVX2 the loop is compiled for it.
pub fn lut16(x: &[u8], y: &mut [u8], table: &[u8]) {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { lut16_avx2(x, y, table) };
    }
    lut16_body(x, y, table)
}

/// [`lut16`] compiled for AVX2.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2")]
unsafe fn lut16_avx2(x: &[u8], y: &mut [u8], table: &[u8]) {
    lut16_body(x, y, table)
}

#[inline(always)]
fn lut16_body(x: &[u8], y: &mut [u8], table: &[u8]) {
    let mut t = [0i16; 514];
    for (d, v) in t.iter_mut().zip(E16::iter(table)) {
        *d = v as i16;
    }
    for (yv, xv) in y.chunks_exact_mut(2).zip(x.chunks_exact(2)) {
        let q =
            i16::from_le_bytes([xv.first().copied().unwrap_or(0), xv.last().copied().unwrap_or(0)]);
        let u = (q as i32 + 32768) as usize;
        let (j, f) = (u >> 7, (u & 127) as i32);
        let (a, b) = (t.get(j).map_or(0, |&v| v as i32), t.get(j + 1).map_or(0, |&v| v as i32));
        let v = (a + (((b - a) * f + 64) >> 7)).clamp(E16::MIN, E16::MAX);
        yv.copy_from_slice(&(v as i16).to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::numerics::testutil::Rng;
    use crate::ops::numerics::testutil::{from_i16_bytes, i16_bytes};

    #[test]
    fn lut_indexes_by_q_plus_128() {
        let mut r = Rng(5);
        let table = r.vec_i8(256);
        let x: Vec<i8> = (-128..=127).map(|v| v as i8).collect();
        let mut y = vec![0i8; 256];
        lut(&x, &mut y, &table);
        assert_eq!(y, table);
    }

    #[test]
    fn lut16_interpolates_exactly() {
        let mut r = Rng(0x17);
        let t: Vec<i16> = (0..513).map(|_| r.next() as i16).collect();
        let x: Vec<i16> = (i16::MIN..=i16::MAX).step_by(7).chain([i16::MAX]).collect();
        let mut yb = vec![0u8; x.len() * 2];
        lut16(&i16_bytes(&x), &mut yb, &i16_bytes(&t));
        for (&q, y) in x.iter().zip(from_i16_bytes(&yb)) {
            let u = q as i32 + 32768;
            let (j, f) = ((u >> 7) as usize, (u & 127) as i64);
            let (a, b) = (t[j] as i64, t[j + 1] as i64);
            let want = a + ((b - a) * f + 64).div_euclid(128);
            assert_eq!(y as i64, want);
            assert!(y as i64 >= a.min(b) && y as i64 <= a.max(b));
        }
    }
}
