//! LUT: `y = table[q + 128]` (SiLU, sigmoid, … built by the converter).

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testutil::Rng;

    #[test]
    fn lut_indexes_by_q_plus_128() {
        let mut r = Rng(5);
        let table = r.vec_i8(256);
        let x: Vec<i8> = (-128..=127).map(|v| v as i8).collect();
        let mut y = vec![0i8; 256];
        lut(&x, &mut y, &table);
        assert_eq!(y, table);
    }
}
