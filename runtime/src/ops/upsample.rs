//! UPSAMPLE_NEAREST: `y[i][j] = x[i / fh][j / fw]`, same quantization.

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
