//! The CONV2D column engine of 64-bit hosts (`cfg(ddpm_wide)`: x86_64, aarch64),
//! shared by the int8-input ([`super::host::conv2d_im2col_wide`]) and int16-input
//! ([`super::host::conv_i16`]) convolutions, whatever their output type.
//!
//! Per [`WPIX`] output pixels the caller's `fill` writes each pixel's window chunk
//! (`x − in_zp`, padding 0) as a contiguous i16 column; every output channel's
//! int8 weight row is then one widening i16 dot product against the four
//! columns, two channels at a time. The dot products are exact in i32 (the loader
//! bounds `|x|·|w|·kh·kw·ic` so that no partial sum overflows), so any summation
//! order gives the reference kernel's sums, and the requantization is [`OutRq`],
//! bit-identical to MBQM.
//!
//! Column kernels: AVX2 `VPMADDWD` (x86_64 with the `std` feature, chosen at run
//! time; the whole engine, the caller's gather included, is then compiled for
//! AVX2), NEON `SMLAL` (aarch64), else plain widening products that LLVM
//! vectorizes (SSE2 `PMADDWD`). With AVX2, short windows and 8–16-channel
//! layers of one chunk take an outer-product panel kernel (`panel_avx2`): the
//! sums come out channel-contiguous, without the pair kernels' reductions.
//!
//! Stack: `2·WPIX·KC` bytes of columns, `8·WPIX·BLOCK` of sums, `8·BLOCK` of
//! per-channel constants, and `BLOCK·KC` bytes of repacked weights (about
//! 25 KiB).

use crate::ops::numerics::{le_i32, OutRq};

#[cfg(target_arch = "aarch64")]
#[path = "aarch64_neon.rs"]
mod aarch64_neon;
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[path = "x86_avx2.rs"]
mod x86_avx2;

#[cfg(all(feature = "std", target_arch = "aarch64"))]
pub use aarch64_neon::run_i8;

/// Output pixels per column group.
pub const WPIX: usize = 4;
/// Window elements per chunk.
pub const KC: usize = 288;
/// Output channels whose sums are held at once.
pub const BLOCK: usize = 64;

/// The columns of one pixel group.
pub type Cols = [[i16; KC]; WPIX];

/// Sums of one pixel group for a pair of channels.
type Pair = [[i32; WPIX]; 2];

/// Runs the convolution over `npix` output pixels, `oc` channels and windows of
/// `ksz` elements: `fill(q, k0, len, col)` writes `col[..len]` for pixel `q`
/// (`q ≥ npix` only pads a group: any values), `w` holds `oc` rows of `ksz`
/// weights, and `store(q, c0, v)` receives, for pixel `q` and channels
/// `c0 .. c0 + v.len()` (at most [`BLOCK`]), `v[j] = mbqm(bias[o] + Σ, mult[o],
/// shift[o])` with `o = c0 + j` (wrapping bias add).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn run(
    npix: usize,
    ksz: usize,
    oc: usize,
    w: &[i8],
    bias: &[u8],
    mult: &[u8],
    shift: &[u8],
    fill: impl FnMut(usize, usize, usize, &mut [i16; KC]),
    store: impl FnMut(usize, usize, &[i32]),
) {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { x86_avx2::run_avx2(npix, ksz, oc, w, bias, mult, shift, fill, store) };
    }
    #[cfg(target_arch = "aarch64")]
    return engine(
        npix,
        ksz,
        oc,
        w,
        bias,
        mult,
        shift,
        0,
        fill,
        store,
        aarch64_neon::dot2_neon,
        NO_PANEL,
    );
    #[cfg(not(target_arch = "aarch64"))]
    engine(npix, ksz, oc, w, bias, mult, shift, 0, fill, store, dot2_plain, NO_PANEL)
}

/// A panel kernel: `(panel, columns, pairs, sums)`, see `panel_avx2` in `x86_avx2.rs`.
type PanelFn<T> = fn(&[i8], &[[T; KC]; WPIX], usize, &mut [[i32; BLOCK]; WPIX], usize);

/// No panel kernel: the engine runs the pair kernel only.
const NO_PANEL: Option<PanelFn<i16>> = None;

/// `(bias, kpos, m, e1)` slices of [`BlockRq::fast_consts`].
#[cfg(all(feature = "std", target_arch = "x86_64"))]
pub(crate) type FastConsts<'a> = (&'a [i32], &'a [i64], &'a [i32], &'a [u32]);

/// Requantization constants of a block of up to [`BLOCK`] output channels
/// ([`OutRq`] per channel, and its fast arm's constants as arrays for the
/// branch-free, vectorized form) with their biases.
pub(crate) struct BlockRq {
    rqs: [OutRq; BLOCK],
    kb: [i32; BLOCK],
    kp: [i64; BLOCK],
    km: [i32; BLOCK],
    ke: [u32; BLOCK],
    all_fast: bool,
}

impl BlockRq {
    /// Channels `c0 .. c0 + cn` (at most [`BLOCK`]); `adj[j]`, when given, is
    /// taken off channel `c0 + j`'s bias (wrapping).
    #[inline(always)]
    pub(crate) fn new(
        bias: &[u8],
        mult: &[u8],
        shift: &[u8],
        c0: usize,
        cn: usize,
        adj: &[i32],
    ) -> Self {
        let mut k = BlockRq {
            rqs: [OutRq::default(); BLOCK],
            kb: [0; BLOCK],
            kp: [0; BLOCK],
            km: [0; BLOCK],
            ke: [0; BLOCK],
            all_fast: true,
        };
        let consts = k.kp.iter_mut().zip(k.km.iter_mut()).zip(k.ke.iter_mut());
        for (j, ((rq, b), ((p, m), e))) in
            k.rqs.iter_mut().zip(k.kb.iter_mut()).zip(consts).enumerate().take(cn)
        {
            let o = c0 + j;
            *rq = OutRq::new(le_i32(mult, o), le_i32(shift, o));
            *b = le_i32(bias, o).wrapping_sub(adj.get(j).copied().unwrap_or(0));
            match rq.fast_parts() {
                Some(f) => (*p, *m, *e) = f,
                None => k.all_fast = false,
            }
        }
        k
    }

    /// The fast arm's constants of channels `j0 .. j0 + n`: `(bias, kpos, m, e1)`
    /// (`mbqm(bias + s) = ((a·m + kpos + (a & i32::MIN)) >> 32) >> e1` for
    /// `a = bias + s`), or `None` when a channel of the block needs the general
    /// arm or the range is out of the block.
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    #[inline(always)]
    pub(crate) fn fast_consts(&self, j0: usize, n: usize) -> Option<FastConsts<'_>> {
        let r = j0..j0 + n;
        if !self.all_fast {
            return None;
        }
        Some((
            self.kb.get(r.clone())?,
            self.kp.get(r.clone())?,
            self.km.get(r.clone())?,
            self.ke.get(r)?,
        ))
    }

    /// `vals[i] = mbqm(bias + sums[i])` for the block's channels `j0 + i`, over
    /// `vals.len()` channels (the fast arm vectorizes: exact-length slices).
    #[inline(always)]
    pub(crate) fn apply(&self, j0: usize, sums: &[i32], vals: &mut [i32]) {
        let n = vals.len();
        let r = j0..j0 + n;
        let (ss, bs) = (sums.get(..n).unwrap_or(&[]), self.kb.get(r.clone()).unwrap_or(&[]));
        if self.all_fast {
            let (ps, ms) =
                (self.kp.get(r.clone()).unwrap_or(&[]), self.km.get(r.clone()).unwrap_or(&[]));
            let es = self.ke.get(r).unwrap_or(&[]);
            let consts = bs.iter().zip(ps).zip(ms.iter().zip(es));
            for ((v, &s), ((&b, &p), (&m, &e))) in vals.iter_mut().zip(ss).zip(consts) {
                // OutRq::apply's fast arm.
                let a = b.wrapping_add(s);
                let k = p + (a & i32::MIN) as i64;
                *v = (((a as i64 * m as i64 + k) >> 32) as i32) >> e;
            }
        } else {
            let rqs = self.rqs.get(r).unwrap_or(&[]);
            for ((v, &s), (rq, &b)) in vals.iter_mut().zip(ss).zip(rqs.iter().zip(bs)) {
                *v = rq.apply(b.wrapping_add(s));
            }
        }
    }
}

/// The engine over columns of `T` (i16 `x − in_zp` with `zp = 0`, or raw int8
/// with padding `in_zp` and `zp = in_zp`: then `zp·Σw` is taken off each
/// channel's bias, so the sums are the same). `dot2` is the pair kernel;
/// `panel`, when given, the outer-product kernel taken for short windows and
/// 8–16-channel layers of one chunk (see [`PANEL_KSZ`]).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn engine<T: Copy + Default>(
    npix: usize,
    ksz: usize,
    oc: usize,
    w: &[i8],
    bias: &[u8],
    mult: &[u8],
    shift: &[u8],
    zp: i32,
    mut fill: impl FnMut(usize, usize, usize, &mut [T; KC]),
    mut store: impl FnMut(usize, usize, &[i32]),
    dot2: impl Fn(&[[T; KC]; WPIX], &[i8], &[i8], &mut Pair),
    panel: Option<impl Fn(&[i8], &[[T; KC]; WPIX], usize, &mut [[i32; BLOCK]; WPIX], usize)>,
) {
    if oc == 0 || ksz == 0 || npix == 0 {
        return;
    }
    let chunks = ksz.div_ceil(KC);
    let panel = panel.filter(|_| ksz <= PANEL_KSZ || (ksz <= KC && (8..=PANEL).contains(&oc)));
    let pairs = ksz.div_ceil(2);
    let mut wbuf = [0i8; BLOCK * KC];
    let mut col = [[T::default(); KC]; WPIX];
    let row = |o: usize, k0: usize, len: usize| w.get(o * ksz + k0..o * ksz + k0 + len);
    let mut c0 = 0;
    while c0 < oc {
        let cn = BLOCK.min(oc - c0);
        // zp·Σw per channel (raw int8 columns with padding zp).
        let mut adj = [0i32; BLOCK];
        if zp != 0 {
            for (j, a) in adj.iter_mut().enumerate().take(cn) {
                let sw = row(c0 + j, 0, ksz).unwrap_or(&[]).iter().fold(0i32, |a, &v| a + v as i32);
                *a = zp.wrapping_mul(sw);
            }
        }
        let brq = BlockRq::new(bias, mult, shift, c0, cn, &adj);
        let (mut sums, mut vals) = ([0i32; BLOCK], [0i32; BLOCK]);
        if panel.is_some() {
            repack(&mut wbuf, w, ksz, c0, cn);
        }
        // Panel kernels' sums, pixel-major (no transposition needed); every
        // group overwrites channels ..cn of each pixel.
        let mut pacc = [[0i32; BLOCK]; WPIX];
        let mut acc = [[0i32; WPIX]; BLOCK];
        let mut q0 = 0;
        while q0 < npix {
            if panel.is_none() {
                // The pair kernels accumulate.
                acc = [[0i32; WPIX]; BLOCK];
            }
            // One call site of `fill`, so that it is inlined.
            for ch in 0..chunks {
                let k0 = ch * KC;
                let len = KC.min(ksz - k0);
                for (i, c) in col.iter_mut().enumerate() {
                    fill(q0 + i, k0, len, c);
                }
                if let Some(kernel) = &panel {
                    // One chunk (ksz ≤ KC): the whole window.
                    let per = pairs * 2 * PANEL;
                    for (j, pan) in wbuf.chunks_exact(per).take(cn.div_ceil(PANEL)).enumerate() {
                        kernel(pan, &col, pairs, &mut pacc, j * PANEL);
                    }
                    continue;
                }
                for (j, pair) in acc.chunks_exact_mut(2).enumerate().take(cn.div_ceil(2)) {
                    let o = c0 + 2 * j;
                    let w0 = row(o, k0, len).unwrap_or(&[]);
                    // An odd last channel pairs with an empty row (sums unused).
                    let w1 = if 2 * j + 1 < cn { row(o + 1, k0, len).unwrap_or(&[]) } else { &[] };
                    if let Ok(pair) = <&mut Pair>::try_from(pair) {
                        dot2(&col, w0, w1, pair);
                    }
                }
            }
            for (i, q) in (q0..npix.min(q0 + WPIX)).enumerate() {
                let sums: &[i32] = match pacc.get(i) {
                    Some(p) if panel.is_some() => p,
                    _ => {
                        for (s, aj) in sums.iter_mut().zip(&acc).take(cn) {
                            *s = aj.get(i).copied().unwrap_or(0);
                        }
                        &sums
                    }
                };
                let vs = vals.get_mut(..cn).unwrap_or(&mut []);
                brq.apply(0, sums, vs);
                store(q, c0, vals.get(..cn).unwrap_or(&[]));
            }
            q0 += WPIX;
        }
        c0 += cn;
    }
}

/// Output channels per panel of the outer-product kernels.
const PANEL: usize = 16;

/// Windows up to this length run on a panel kernel whatever the channel count:
/// short windows, where the pair kernels' per-call reductions and tails weigh
/// most. Longer windows of one chunk do too when there are 8 to 16 output
/// channels (measured on AVX2: faster there, slower for 1 or 32+ channels).
const PANEL_KSZ: usize = 64;

/// Weights of channels `c0 .. c0 + cn` (windows of `ksz ≤ KC`) into panels of
/// [`PANEL`] channels: panel `j`, pair `k`, lane `l`, half `t` at
/// `(j·pairs + k)·2·PANEL + 2l + t` for window element `2k + t` (zero past the
/// window and past the channels).
#[inline(always)]
fn repack(wbuf: &mut [i8], w: &[i8], ksz: usize, c0: usize, cn: usize) {
    let pairs = ksz.div_ceil(2);
    for (j, pan) in wbuf.chunks_exact_mut(pairs * 2 * PANEL).take(cn.div_ceil(PANEL)).enumerate() {
        for (k, row) in pan.chunks_exact_mut(2 * PANEL).enumerate() {
            for (l, d) in row.chunks_exact_mut(2).enumerate() {
                let o = j * PANEL + l;
                for (t, v) in d.iter_mut().enumerate() {
                    let i = 2 * k + t;
                    *v = if o < cn && i < ksz {
                        w.get((c0 + o) * ksz + i).copied().unwrap_or(0)
                    } else {
                        0
                    };
                }
            }
        }
    }
}

/// `Σ_k col[p][k]·w[k]` over `w.len()` (≤ [`KC`]) elements.
#[inline(always)]
#[cfg_attr(
    not(any(all(feature = "std", target_arch = "x86_64"), target_arch = "aarch64", test)),
    allow(dead_code)
)]
fn dot_scalar(c: &[i16], w: &[i8]) -> i32 {
    c.iter().zip(w).map(|(&x, &v)| x as i32 * v as i32).fold(0i32, |s, v| s.wrapping_add(v))
}

/// Portable pair kernel: weights widened once per row, then four widening i16 dot
/// products per channel (vectorized by LLVM).
#[inline(always)]
#[cfg_attr(target_arch = "aarch64", allow(dead_code))]
fn dot2_plain(col: &Cols, w0: &[i8], w1: &[i8], acc: &mut Pair) {
    for (a, wr) in acc.iter_mut().zip([w0, w1]) {
        let mut wbuf = [0i16; KC];
        for (d, &v) in wbuf.iter_mut().zip(wr) {
            *d = v as i16;
        }
        let wq = wbuf.get(..wr.len()).unwrap_or(&[]);
        for (ap, c) in a.iter_mut().zip(col) {
            let d = c
                .iter()
                .zip(wq)
                .map(|(&x, &v)| x as i32 * v as i32)
                .fold(0i32, |s, v| s.wrapping_add(v));
            *ap = ap.wrapping_add(d);
        }
    }
}

/// `Σ_k col[k]·w[k]` over `w.len()` (≤ [`KC`]) int8 elements.
#[inline(always)]
#[cfg_attr(not(all(feature = "std", target_arch = "aarch64")), allow(dead_code))]
fn dot_scalar8(c: &[i8], w: &[i8]) -> i32 {
    c.iter().zip(w).map(|(&x, &v)| x as i32 * v as i32).fold(0i32, |s, v| s.wrapping_add(v))
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "aarch64")]
    use super::aarch64_neon::dot2_neon;
    #[cfg(all(feature = "std", target_arch = "aarch64"))]
    use super::aarch64_neon::dot2_sdot;
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    use super::x86_avx2::dot2_avx2;
    use super::*;
    use crate::ops::numerics::testutil::Rng;

    /// Under a harness that knows the CPU (`tests/tests/aarch64.rs` runs these
    /// tests in `qemu-aarch64` as a Cortex-A76 and as a Cortex-A72 and sets
    /// `DDPM_EXPECT_SDOT` to 1 or 0), the dot-product extension is detected
    /// exactly when the CPU has it, so each run covers the kernel it names.
    #[cfg(all(feature = "std", target_arch = "aarch64"))]
    #[test]
    fn sdot_detected_as_the_harness_expects() {
        if let Ok(want) = std::env::var("DDPM_EXPECT_SDOT") {
            assert_eq!(std::arch::is_aarch64_feature_detected!("dotprod"), want == "1");
        }
    }

    /// Every pair kernel this host has gives the plain sums, for all lengths up to
    /// [`KC`], odd last channels included.
    #[test]
    fn pair_kernels_match_plain_sums() {
        let mut r = Rng(41);
        for case in 0..400 {
            let n = if case < KC { case + 1 } else { r.range(1, KC as i64) as usize };
            let mut col: Cols = [[0i16; KC]; WPIX];
            for c in col.iter_mut() {
                for v in c.iter_mut() {
                    *v = r.range(-32768, 32767) as i16;
                }
            }
            let w0: Vec<i8> = (0..n).map(|_| r.range(-128, 127) as i8).collect();
            let w1: Vec<i8> = (0..n).map(|_| r.range(-128, 127) as i8).collect();
            let single = case % 3 == 0;
            let w1s: &[i8] = if single { &[] } else { &w1 };
            let start: Pair = [[r.range(-1000, 1000) as i32; WPIX]; 2];
            let mut want = start;
            for (p, c) in col.iter().enumerate() {
                want[0][p] = want[0][p].wrapping_add(dot_scalar(&c[..n], &w0));
                if !single {
                    want[1][p] = want[1][p].wrapping_add(dot_scalar(&c[..n], &w1));
                }
            }
            let mut got = start;
            dot2_plain(&col, &w0, w1s, &mut got);
            assert_eq!(got, want, "plain, case {case}, n {n}");
            #[cfg(target_arch = "aarch64")]
            {
                let mut got = start;
                dot2_neon(&col, &w0, w1s, &mut got);
                assert_eq!(got, want, "neon, case {case}, n {n}");
            }
            #[cfg(all(feature = "std", target_arch = "aarch64"))]
            if std::arch::is_aarch64_feature_detected!("dotprod") {
                // The same sums on int8 columns (each column's values halved
                // into int8 range).
                let col8: [[i8; KC]; WPIX] =
                    core::array::from_fn(|p| core::array::from_fn(|k| (col[p][k] >> 8) as i8));
                let mut want8 = start;
                for (p, c) in col8.iter().enumerate() {
                    want8[0][p] = want8[0][p].wrapping_add(dot_scalar8(&c[..n], &w0));
                    if !single {
                        want8[1][p] = want8[1][p].wrapping_add(dot_scalar8(&c[..n], &w1));
                    }
                }
                let mut got = start;
                // SAFETY: the CPU has the dot-product extension (checked).
                unsafe { dot2_sdot(&col8, &w0, w1s, &mut got) };
                assert_eq!(got, want8, "sdot, case {case}, n {n}");
            }
            #[cfg(all(feature = "std", target_arch = "x86_64"))]
            if std::is_x86_feature_detected!("avx2") {
                let mut got = start;
                // SAFETY: AVX2 is present (checked).
                unsafe { dot2_avx2(&col, &w0, w1s, &mut got) };
                assert_eq!(got, want, "avx2, case {case}, n {n}");
            }
        }
    }
}
