//! Kernel-window gathers shared by the im2col kernels of Armv7E-M
//! ([`super::armv7em`], [`super::armv7em_i16`]) and the host entry
//! ([`super::host`]): an output pixel's window chunk in the weights'
//! `[kh][kw][ic]` order, int8 ([`gather8`], padding `in_zp`) or int16
//! ([`gather16`], padding 0). Portable; every target.

use super::params::Conv2dParams;

/// One pixel's raw window chunk: `[k0, k0 + len)` of its `[kh][kw][ic]` window,
/// padding filled with `in_zp`.
#[cfg_attr(ddpm_wide, inline(always))]
#[allow(clippy::too_many_arguments)]
pub fn gather8(
    x: &[i8],
    [h, wd, ic]: [usize; 3],
    p: &Conv2dParams,
    pos: Option<(isize, isize)>,
    k0: usize,
    len: usize,
    raw: &mut [i8],
) {
    let zp = p.in_zp as i8;
    let Some((iy0, ix0)) = pos else {
        raw.iter_mut().take(len).for_each(|v| *v = zp);
        return;
    };
    let row = p.kw * ic;
    let k1 = k0 + len;
    if iy0 >= 0 && iy0 as usize + p.kh <= h && ix0 >= 0 && ix0 as usize + p.kw <= wd {
        // The whole window is inside the input: one copy per kernel row.
        let base = (iy0 as usize * wd + ix0 as usize) * ic;
        let mut k = k0;
        let mut r = if k0 == 0 { 0 } else { k0 / row.max(1) };
        while k < k1 {
            let end = ((r + 1) * row).min(k1);
            if end <= k {
                break;
            }
            let off = base + r * wd * ic + (k - r * row);
            let dst = raw.get_mut(k - k0..end - k0).unwrap_or(&mut []);
            dst.iter_mut().zip(x.get(off..).unwrap_or(&[])).for_each(|(d, &v)| *d = v);
            (k, r) = (end, r + 1);
        }
        return;
    }
    let mut k = k0;
    // (kernel row, tap, channel) of k: divided once, then advanced run by run.
    let (mut ky, mut kx, mut i) = match k0 {
        0 => (0, 0, 0),
        _ => (k0 / row.max(1), (k0 % row.max(1)) / ic.max(1), k0 % ic.max(1)),
    };
    while k < k1 {
        let iy = iy0 + ky as isize;
        let ix = ix0 + kx as isize;
        let row_in = iy >= 0 && (iy as usize) < h;
        // Contiguous source run: the rest of this kernel row if all its taps are
        // inside the input, else the rest of this tap.
        let whole_row = row_in && ix0 >= 0 && ix0 as usize + p.kw <= wd;
        let end = if whole_row { (ky + 1) * row } else { k - i + ic }.min(k1);
        if end <= k {
            break;
        }
        let n = end - k;
        let dst = raw.get_mut(k - k0..k - k0 + n).unwrap_or(&mut []);
        let inside = row_in && ix >= 0 && (ix as usize) < wd;
        let src = if inside {
            let off = (iy as usize * wd + ix as usize) * ic + i;
            x.get(off..off + n)
        } else {
            None
        };
        match src {
            Some(s) => dst.copy_from_slice(s),
            None => dst.iter_mut().for_each(|v| *v = zp),
        }
        (kx, i) = if whole_row { (p.kw, 0) } else { (kx + 1, 0) };
        if kx >= p.kw {
            (ky, kx) = (ky + 1, 0);
        }
        k = end;
    }
}

/// Input window origin `(iy0, ix0)` of output pixel `q` (`None` past the end).
#[inline(always)]
pub fn origin(q: usize, npix: usize, ow: usize, p: &Conv2dParams) -> Option<(isize, isize)> {
    (q < npix).then(|| {
        let (oy, ox) = (q / ow.max(1), q % ow.max(1));
        ((oy * p.sh) as isize - p.pt as isize, (ox * p.sw) as isize - p.pl as isize)
    })
}

/// Whether the whole kernel window at `(iy0, ix0)` lies inside the input.
#[inline(always)]
pub fn inside(pos: (isize, isize), [h, wd, _]: [usize; 3], p: &Conv2dParams) -> bool {
    let (iy0, ix0) = pos;
    iy0 >= 0 && iy0 as usize + p.kh <= h && ix0 >= 0 && ix0 as usize + p.kw <= wd
}

/// Copies `n = dst.len()` int16 elements from element `off` of `x` (0 when out of
/// bounds).
#[inline(always)]
pub fn copy16(x: &[u8], off: usize, dst: &mut [i16]) {
    match x.get(2 * off..2 * (off + dst.len())) {
        Some(s) => {
            for (d, c) in dst.iter_mut().zip(s.chunks_exact(2)) {
                if let &[lo, hi] = c {
                    *d = i16::from_le_bytes([lo, hi]);
                }
            }
        }
        None => dst.iter_mut().for_each(|v| *v = 0),
    }
}

/// One pixel's window chunk `[k0, k0 + len)` of its `[kh][kw][ic]` window into
/// `raw[..len]`, padding taps 0 (all 0 for `pos = None`).
#[cfg_attr(ddpm_wide, inline(always))]
#[allow(clippy::too_many_arguments)]
pub fn gather16(
    x: &[u8],
    in_shape: [usize; 3],
    p: &Conv2dParams,
    pos: Option<(isize, isize)>,
    k0: usize,
    len: usize,
    raw: &mut [i16],
) {
    let [h, wd, ic] = in_shape;
    let Some((iy0, ix0)) = pos else {
        raw.iter_mut().take(len).for_each(|v| *v = 0);
        return;
    };
    let row = p.kw * ic;
    let k1 = k0 + len;
    let whole = inside((iy0, ix0), in_shape, p);
    if whole && k0 == 0 && len == p.kh * row {
        // The whole window inside the input: one run per kernel row.
        let base = (iy0 as usize * wd + ix0 as usize) * ic;
        for (r, d) in raw.chunks_exact_mut(row.max(1)).take(p.kh).enumerate() {
            copy16(x, base + r * wd * ic, d);
        }
        return;
    }
    let mut k = k0;
    // (kernel row, tap, channel) of k: divided once, then advanced run by run.
    let (mut ky, mut kx, mut i) = match k0 {
        0 => (0, 0, 0),
        _ => (k0 / row.max(1), (k0 % row.max(1)) / ic.max(1), k0 % ic.max(1)),
    };
    while k < k1 {
        let iy = iy0 + ky as isize;
        let ix = ix0 + kx as isize;
        let row_in = iy >= 0 && (iy as usize) < h;
        // Contiguous source run: the rest of this kernel row if all its taps are
        // inside the input, else the rest of this tap.
        let whole_row = whole || (row_in && ix0 >= 0 && ix0 as usize + p.kw <= wd);
        let end = if whole_row { (ky + 1) * row } else { k - i + ic }.min(k1);
        if end <= k {
            break;
        }
        let dst = raw.get_mut(k - k0..end - k0).unwrap_or(&mut []);
        if row_in && ix >= 0 && (ix as usize) < wd {
            copy16(x, (iy as usize * wd + ix as usize) * ic + i, dst);
        } else {
            dst.iter_mut().for_each(|v| *v = 0);
        }
        (kx, i) = if whole_row { (p.kw, 0) } else { (kx + 1, 0) };
        if kx >= p.kw {
            (ky, kx) = (ky + 1, 0);
        }
        k = end;
    }
}
