//! UPSAMPLE_NEAREST: `y[i][j] = x[i / fh][j / fw]`, same quantization: [`upsample`]
//! (int8) and [`upsample_bytes`] (elements of any size). Portable; every target.

/// Upsamples `x` (`[h, w, c]`) by `(fh, fw)` into `y`.
pub fn upsample(x: &[i8], [h, w, c]: [usize; 3], y: &mut [i8], fh: usize, fw: usize) {
    let (fh, fw) = (fh.max(1), fw.max(1));
    let ow = w * fw;
    for i in 0..h * fh {
        for j in 0..ow {
            let s = ((i / fh) * w + j / fw) * c;
            let d = (i * ow + j) * c;
            if let (Some(src), Some(dst)) = (x.get(s..s + c), y.get_mut(d..d + c)) {
                dst.iter_mut().zip(src).for_each(|(o, &v)| *o = v);
            }
        }
    }
}

/// UPSAMPLE_NEAREST of `e`-byte elements.
pub fn upsample_bytes(
    x: &[u8],
    [h, w, c]: [usize; 3],
    y: &mut [u8],
    fh: usize,
    fw: usize,
    e: usize,
) {
    let row = c * e;
    let (oh, ow) = (h * fh, w * fw);
    for oy in 0..oh {
        for ox in 0..ow {
            let src = ((oy / fh.max(1)) * w + ox / fw.max(1)) * row;
            let dst = (oy * ow + ox) * row;
            if let (Some(s), Some(d)) = (x.get(src..src + row), y.get_mut(dst..dst + row)) {
                d.copy_from_slice(s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::numerics::testutil::Rng;
    use crate::ops::numerics::testutil::{from_i16_bytes, i16_bytes};

    #[test]
    fn upsample_nearest() {
        let mut r = Rng(51);
        for _ in 0..30 {
            let (h, w, c) =
                (r.range(1, 5) as usize, r.range(1, 5) as usize, r.range(1, 4) as usize);
            let (fh, fw) = (r.range(1, 3) as usize, r.range(1, 3) as usize);
            let x = r.vec_i8(h * w * c);
            let mut y = vec![0i8; h * fh * w * fw * c];
            upsample(&x, [h, w, c], &mut y, fh, fw);
            for i in 0..h * fh {
                for j in 0..w * fw {
                    for k in 0..c {
                        assert_eq!(y[(i * w * fw + j) * c + k], x[((i / fh) * w + j / fw) * c + k]);
                    }
                }
            }
        }
    }

    #[test]
    fn upsample_i16_copies_elements() {
        let x: Vec<i16> = (0..2 * 3 * 2).map(|v| v * 1000 - 5000).collect();
        let mut yb = vec![0u8; 4 * 6 * 2 * 2];
        upsample_bytes(&i16_bytes(&x), [2, 3, 2], &mut yb, 2, 2, 2);
        let y = from_i16_bytes(&yb);
        for oy in 0..4 {
            for ox in 0..6 {
                for k in 0..2 {
                    assert_eq!(y[(oy * 6 + ox) * 2 + k], x[((oy / 2) * 3 + ox / 2) * 2 + k] as i32);
                }
            }
        }
    }
}
