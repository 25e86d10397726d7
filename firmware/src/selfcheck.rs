//! Kernel self-check (feature `selfcheck`): on the target itself, the kernels the
//! runtime picks for it (on thumbv7em the `SMLAD` conv columns, the block
//! requantization loop, the group-norm and int16 ADD assembly loops) against the
//! portable kernels (`conv2d_mixed`, `group_norm_mixed_reference`,
//! `add_mixed_portable`), bit for bit, on random shapes, values and
//! requantization parameters. The buffers are one static block (no allocation).

use ddpm_runtime::ops::add::{add_mixed, add_mixed_portable, AddParams};
use ddpm_runtime::ops::conv2d::{self, armv7em, conv2d_i16, conv2d_mixed, Conv2dParams};
use ddpm_runtime::ops::group_norm::{group_norm_mixed, group_norm_mixed_reference};
use ddpm_runtime::ops::numerics::{as_i8, as_i8_mut, E16, E8};
use ddpm_runtime::quantize_multiplier;

/// Bytes of each of the four work buffers (input, weights, two outputs).
const BUF: usize = 16 * 1024;

/// Buffer bytes [`run`] needs.
pub const NEED: usize = 4 * BUF + 3 * 4 * 64;

/// The first disagreement: which kernel, which case.
pub struct Mismatch {
    /// Kernel under test.
    pub kernel: &'static str,
    /// Case number.
    pub case: u32,
}

/// A fixed LCG: the same cases on every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i32, hi: i32) -> i32 {
        lo + (self.next() % (hi - lo + 1) as u32) as i32
    }

    fn fill(&mut self, b: &mut [u8]) {
        b.iter_mut().for_each(|v| *v = self.next() as u8);
    }
}

/// Writes `v` as little-endian i32 at element `i` of `b`.
fn put_i32(b: &mut [u8], i: usize, v: i32) {
    if let Some(d) = b.get_mut(4 * i..4 * i + 4) {
        d.copy_from_slice(&v.to_le_bytes());
    }
}

/// Per-channel bias, multiplier and shift for `n` channels; multipliers are
/// drawn around `scale` (sometimes far above 1 or negative: the general paths).
fn params(r: &mut Lcg, n: usize, scale: f64, bias: &mut [u8], mult: &mut [u8], shift: &mut [u8]) {
    for o in 0..n {
        let f = 0.5 + (r.next() % 1000) as f64 / 1000.0;
        let real = match r.next() % 16 {
            0 => -scale * f,
            1 => 1.0 + f,
            _ => scale * f,
        };
        let (m, s) = quantize_multiplier(real);
        put_i32(mult, o, m);
        put_i32(shift, o, s);
        put_i32(bias, o, r.range(-40_000, 40_000));
    }
}

/// Draws `cases` random cases; returns how many were checked (shapes that do not
/// fit are skipped), or the first mismatch.
pub fn run(buf: &mut [u8; NEED], cases: u32, seed: u64) -> Result<u32, Mismatch> {
    let (x, rest) = buf.split_at_mut(BUF);
    let (w, rest) = rest.split_at_mut(BUF);
    let (y1, rest) = rest.split_at_mut(BUF);
    let (y2, rest) = rest.split_at_mut(BUF);
    let (bias, rest) = rest.split_at_mut(4 * 64);
    let (mult, shift) = rest.split_at_mut(4 * 64);
    let mut r = Lcg(seed);
    let mut checked = 0;
    for case in 0..cases {
        let kind = case % 4;
        let x16 = kind >= 2;
        let xb = if x16 { 2 } else { 1 };
        let (h, wd) = (r.range(1, 10) as usize, r.range(1, 10) as usize);
        if kind == 3 && case % 8 == 7 {
            // ADD of two int16 tensors, int16 or int8 output (the Armv7E-M loops);
            // every other one broadcasts an int8 per-channel vector.
            let c = r.range(1, 16) as usize;
            let n = h * wd * c;
            let bc = case % 16 == 15;
            r.fill(&mut x[..4 * n]);
            let (a, b) = x[..4 * n].split_at(2 * n);
            let b = if bc { &b[..c] } else { b };
            let real = |r: &mut Lcg, lo: f64| lo * (1.0 + (r.next() % 1000) as f64 / 250.0);
            // Sometimes the first input at scale 0.5 (multiplier 2^30, shift 0).
            let (am, ash) =
                if case % 3 == 0 { (1 << 30, 0) } else { quantize_multiplier(real(&mut r, 0.01)) };
            let (bm, bsh) = quantize_multiplier(real(&mut r, 0.01));
            let (om, osh) = quantize_multiplier(real(&mut r, 0.05));
            let y16 = r.next() % 2 == 0;
            let p = AddParams {
                a_zp: 0,
                b_zp: if bc { r.range(-128, 127) } else { 0 },
                out_zp: if y16 { 0 } else { r.range(-128, 127) },
                left_shift: r.range(0, 15),
                a_mult: am,
                a_shift: ash,
                b_mult: bm,
                b_shift: bsh,
                out_mult: om,
                out_shift: osh,
                act_min: -32768,
                act_max: 32767,
            };
            let ob = if y16 { 2 * n } else { n };
            let (ya, yb) = (&mut y1[..ob], &mut y2[..ob]);
            match (bc, y16) {
                (false, true) => {
                    add_mixed::<E16, E16, E16>(a, b, ya, c, false, &p);
                    add_mixed_portable::<E16, E16, E16>(a, b, yb, c, false, &p);
                }
                (false, false) => {
                    add_mixed::<E16, E16, E8>(a, b, ya, c, false, &p);
                    add_mixed_portable::<E16, E16, E8>(a, b, yb, c, false, &p);
                }
                (true, true) => {
                    add_mixed::<E16, E8, E16>(a, b, ya, c, true, &p);
                    add_mixed_portable::<E16, E8, E16>(a, b, yb, c, true, &p);
                }
                (true, false) => {
                    add_mixed::<E16, E8, E8>(a, b, ya, c, true, &p);
                    add_mixed_portable::<E16, E8, E8>(a, b, yb, c, true, &p);
                }
            }
            if ya != yb {
                return Err(Mismatch { kernel: "add (int16 inputs)", case });
            }
            checked += 1;
            continue;
        }
        if kind == 3 {
            // GROUP_NORM, int16 input, int16 or int8 output.
            let groups = r.range(1, 8) as usize;
            let c = groups * r.range(1, 4) as usize;
            let n = h * wd * c;
            let spread = [1, 3, 300, 32767][(case / 4 % 4) as usize];
            let base = r.range(-32768 + spread, 32767 - spread);
            let xs = x.get_mut(..2 * n).unwrap_or(&mut []);
            for e in xs.chunks_exact_mut(2) {
                e.copy_from_slice(&(r.range(base - spread, base + spread) as i16).to_le_bytes());
            }
            params(&mut r, c, 0.01, bias, mult, shift);
            let in_zp = if case % 8 == 3 { 0 } else { r.range(-128, 127) };
            let eps = [0u64, 1, 1 << 20, 1 << 40][(r.next() % 4) as usize];
            let (m, s, b) = (&mult[..4 * c], &shift[..4 * c], &bias[..4 * c]);
            let xs = &x[..2 * n];
            let y16 = r.next() % 2 == 0;
            let (out_zp, ob) = if y16 { (0, 2 * n) } else { (r.range(-128, 127), n) };
            let (a, bb) = (&mut y1[..ob], &mut y2[..ob]);
            if y16 {
                group_norm_mixed::<E16, E16>(xs, c, a, groups, in_zp, out_zp, eps, m, s, b);
                group_norm_mixed_reference::<E16, E16>(
                    xs, c, bb, groups, in_zp, out_zp, eps, m, s, b,
                );
            } else {
                group_norm_mixed::<E16, E8>(xs, c, a, groups, in_zp, out_zp, eps, m, s, b);
                group_norm_mixed_reference::<E16, E8>(
                    xs, c, bb, groups, in_zp, out_zp, eps, m, s, b,
                );
            }
            if a != bb {
                return Err(Mismatch { kernel: "group_norm (int16 input)", case });
            }
            checked += 1;
            continue;
        }
        // CONV2D: 1×1 or 3×3 windows, stride 1 or 2, some padding.
        let k = if r.next() % 3 == 0 { 1 } else { 3 };
        let ic = [1, 2, 3, 4, 8, 12, 16, 32, 48, 64][(r.next() % 10) as usize];
        let ic = if x16 { ic.min(48) } else { ic };
        let ksz = k * k * ic;
        // Every ninth draw a single output channel (the int16 one-channel kernel).
        let oc = if case % 9 == 2 { 1 } else { r.range(1, 40) as usize };
        let oc = oc.min(BUF / ksz).min(64);
        let (sh, sw) = (r.range(1, 2) as usize, r.range(1, 2) as usize);
        let (pt, pl) = (r.range(0, k as i32 - 1) as usize, r.range(0, k as i32 - 1) as usize);
        let (pb, pr) = (r.range(0, k as i32 - 1) as usize, r.range(0, k as i32 - 1) as usize);
        if h + pt + pb < k || wd + pl + pr < k {
            continue;
        }
        let (oh, ow) = ((h + pt + pb - k) / sh + 1, (wd + pl + pr - k) / sw + 1);
        let y16 = kind == 1 || (kind == 2 && r.next() % 2 == 0);
        let yb = if y16 { 2 } else { 1 };
        let (nx, ny) = (h * wd * ic, oh * ow * oc);
        if nx * xb > BUF || ny * yb > BUF {
            continue;
        }
        r.fill(&mut x[..nx * xb]);
        r.fill(&mut w[..oc * ksz]);
        let scale = if x16 { 1e-6 } else { 0.004 };
        params(&mut r, oc, scale, bias, mult, shift);
        let (lo, hi) = match (y16, r.next() % 3) {
            (true, 0) => (-700, 900),
            (true, _) => (-32768, 32767),
            (false, 0) => (0, 127),
            (false, _) => (-128, 127),
        };
        let p = Conv2dParams {
            kh: k,
            kw: k,
            sh,
            sw,
            pt,
            pl,
            in_zp: if x16 { 0 } else { r.range(-128, 127) },
            out_zp: if y16 { 0 } else { r.range(-20, 20) },
            act_min: lo,
            act_max: hi,
        };
        let (xs, ws) = (&x[..nx * xb], as_i8(&w[..oc * ksz]));
        let (b, m, s) = (&bias[..4 * oc], &mult[..4 * oc], &shift[..4 * oc]);
        let (a, bb) = (&mut y1[..ny * yb], &mut y2[..ny * yb]);
        let (ish, osh) = ([h, wd, ic], [oh, ow, oc]);
        let kernel = match (kind, y16) {
            (0, _) => {
                conv2d::conv2d(as_i8(xs), ish, as_i8_mut(a), osh, &p, ws, b, m, s, &mut []);
                conv2d_mixed::<E8, E8>(xs, ish, bb, osh, &p, ws, b, m, s);
                "conv2d int8 -> int8"
            }
            (1, _) => {
                if !armv7em::applicable(ic, oh * ow, &p) {
                    continue;
                }
                armv7em::conv2d_im2col_to::<E16>(as_i8(xs), ish, a, osh, &p, ws, b, m, s);
                conv2d_mixed::<E8, E16>(xs, ish, bb, osh, &p, ws, b, m, s);
                "conv2d int8 -> int16"
            }
            (_, true) => {
                conv2d_i16(xs, ish, a, true, osh, &p, ws, b, m, s, &mut []);
                conv2d_mixed::<E16, E16>(xs, ish, bb, osh, &p, ws, b, m, s);
                "conv2d int16 -> int16"
            }
            (_, false) => {
                conv2d_i16(xs, ish, a, false, osh, &p, ws, b, m, s, &mut []);
                conv2d_mixed::<E16, E8>(xs, ish, bb, osh, &p, ws, b, m, s);
                "conv2d int16 -> int8"
            }
        };
        if a != bb {
            return Err(Mismatch { kernel, case });
        }
        checked += 1;
    }
    Ok(checked)
}
