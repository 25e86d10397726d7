//! UPSAMPLE_NEAREST: `y[i][j] = x[i / fh][j / fw]`, same quantization.

/// Upsamples `x` (`[h, w, c]`) by `(fh, fw)` into `y`.
pub fn upsample(x: &[i8], [h, w, c]: [usize; 3], y: &mut [i8], fh: usize, fw: usize) {
    let (fh, fw) = (fh.max(1), fw.max(1));
    let ow = w * fw;
    if c == 0 || ow == 0 {
        return;
    }
    for (i, yrow) in y.chunks_exact_mut(ow * c).enumerate().take(h * fh) {
        let xrow = x.get((i / fh) * w * c..(i / fh + 1) * w * c).unwrap_or(&[]);
        for (j, ypx) in yrow.chunks_exact_mut(c).enumerate() {
            if let Some(src) = xrow.get((j / fw) * c..(j / fw + 1) * c) {
                ypx.copy_from_slice(src);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testutil::Rng;

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
}
