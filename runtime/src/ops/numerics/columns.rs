//! The im2col column layout of five output pixels and its dot products, shared
//! by CONV2D's Armv7E-M kernels (`conv2d::armv7em`, `conv2d::armv7em_i16`) and
//! MATMUL ([`RowColumns`]): `SXTB16`/`SMLAD`/`USADA8` assembly on Armv7E-M
//! (`cfg(ddpm_dsp)`), the same sums in plain Rust elsewhere (hosts run and test
//! the layout with it).
//!
//! Column layout (one chunk): per group of 4 window elements `k0..k3`, [`GW`]
//! words: for each pixel `p`, the halfword pairs `(x[k0], x[k2])` and
//! `(x[k1], x[k3])` — what `SXTB16` and `SXTB16 ROR #8` make of a weight word.
//! A chunk is zero-padded to a multiple of [`KB`] elements (zero columns against
//! zero-padded weights add nothing); after its last block of [`KB`] elements comes
//! a group whose first word is [`SENTINEL`], which no in-range pair can equal; the
//! DSP loop stops on it.

/// Output pixels per column group (DSP kernel).
pub const PIX: usize = 5;
/// Window elements per chunk (a multiple of [`KB`]).
pub const KC: usize = 288;
/// Window elements per iteration of the DSP loop; chunks are padded to it.
pub const KB: usize = 16;
/// Column words per group of 4 window elements: two per pixel.
pub const GW: usize = 2 * PIX;
/// Marks the end of the columns: `(−32768, −32768)`.
pub const SENTINEL: u32 = 0x8000_8000;
/// Words of the column buffer: `KC/4` groups plus the sentinel group.
pub const COL_WORDS: usize = KC / 4 * GW + GW;

/// Columns of up to [`PIX`] int8 rows of at most [`KC`] elements, for other ops
/// (MATMUL) to run the column kernel: rows of `a`, each against contiguous
/// vectors of `b`.
pub struct RowColumns {
    col: [u32; COL_WORDS],
    nb: usize,
}

impl RowColumns {
    /// Empty columns.
    pub fn new() -> Self {
        RowColumns { col: [0; COL_WORDS], nb: 0 }
    }

    /// Sets the columns to `len ≤ KC` elements per row, zero-padded to
    /// `⌈len/KB⌉·KB`: row `px` (for `px < PIX`) is `row(px, k)` for `k < len`.
    pub fn set(&mut self, len: usize, row: impl Fn(usize, usize) -> i8) {
        let len = len.min(KC);
        let lenp = len.div_ceil(KB) * KB;
        for px in 0..PIX {
            let words = self.col.get_mut(..lenp / 4 * GW).unwrap_or(&mut []);
            for (g, d) in pixel_words(words, px).enumerate() {
                let mut b = [0u8; 4];
                for (i, v) in b.iter_mut().enumerate() {
                    let k = 4 * g + i;
                    if k < len {
                        *v = row(px, k) as u8;
                    }
                }
                if let [d0, d1, ..] = d {
                    (*d0, *d1) = kern::ext(u32::from_le_bytes(b));
                }
            }
        }
        self.nb = lenp / KB;
        if let Some(s) = self.col.get_mut(self.nb * KB / 4 * GW) {
            *s = SENTINEL;
        }
    }

    /// Elements per row after padding; vectors given to [`dot`](Self::dot) must
    /// have at least this many (zero beyond the rows' length).
    pub fn padded_len(&self) -> usize {
        self.nb * KB
    }

    /// `acc[p] = Σ_k row_p[k]·w[k]`.
    #[inline(always)]
    pub fn dot(&self, w: &[i8], acc: &mut [i32; PIX]) {
        *acc = [0; PIX];
        kern::dot5(&self.col, w, self.nb, acc);
    }
}

impl Default for RowColumns {
    fn default() -> Self {
        Self::new()
    }
}

/// `Σ w` (Armv7E-M: `USADA8`, four weights per instruction).
#[inline]
pub fn sum_weights(w: &[i8]) -> i32 {
    kern::sum_i8(w)
}

/// Pixel `px`'s words of the groups in `col` (the pixel's pair in each group of
/// [`GW`] words).
#[inline(always)]
pub fn pixel_words(col: &mut [u32], px: usize) -> impl Iterator<Item = &mut [u32]> {
    col.get_mut(2 * px..).unwrap_or(&mut []).chunks_mut(GW)
}

/// Converts pixel `px`'s raw chunk (a multiple of 4 elements) into its column words.
#[inline]
pub fn columns(raw: &[i8], px: usize, col: &mut [u32]) {
    for (d, q) in pixel_words(col, px).zip(raw.chunks_exact(4)) {
        if let ([d0, d1, ..], &[q0, q1, q2, q3]) = (d, q) {
            let word = u32::from_le_bytes([q0 as u8, q1 as u8, q2 as u8, q3 as u8]);
            (*d0, *d1) = kern::ext(word);
        }
    }
}

/// Portable column kernel (hosts, and the reference for the DSP one).
#[allow(dead_code)]
pub(crate) mod generic {
    use super::{GW, KB, PIX, SENTINEL};

    /// `(x0, x2)` and `(x1, x3)` of a little-endian word of int8, as halfword pairs.
    #[inline]
    pub fn ext(word: u32) -> (u32, u32) {
        let [b0, b1, b2, b3] = word.to_le_bytes();
        let h = |b: u8| (b as i8 as i16 as u16) as u32;
        (h(b0) | h(b2) << 16, h(b1) | h(b3) << 16)
    }

    /// For `g < n`: words `g·GW` and `g·GW + 1` of `dst` are [`ext`] of word `g`
    /// of `src`.
    #[inline]
    pub fn ext_run(src: &[i8], dst: &mut [u32], n: usize) {
        for (d, q) in dst.chunks_mut(GW).zip(src.chunks_exact(4)).take(n) {
            if let ([d0, d1, ..], &[q0, q1, q2, q3]) = (d, q) {
                let word = u32::from_le_bytes([q0 as u8, q1 as u8, q2 as u8, q3 as u8]);
                (*d0, *d1) = ext(word);
            }
        }
    }

    /// `Σ w`.
    #[inline]
    pub fn sum_i8(w: &[i8]) -> i32 {
        w.iter().map(|&v| v as i32).sum()
    }

    /// Adds `Σ_k col[p][k]·w[k]` over `nb` blocks of [`KB`] elements to `acc[p]`,
    /// stopping early at a block whose first word is the sentinel, as the DSP loop
    /// does.
    #[inline]
    pub fn dot5(col: &[u32], w: &[i8], nb: usize, acc: &mut [i32; PIX]) {
        let lo = |v: u32| v as u16 as i16 as i32;
        let hi = |v: u32| (v >> 16) as u16 as i16 as i32;
        for (cb, wb) in col.chunks_exact(KB / 4 * GW).zip(w.chunks_exact(KB)).take(nb) {
            if cb.first() == Some(&SENTINEL) {
                return;
            }
            for (c, wq) in cb.chunks_exact(GW).zip(wb.chunks_exact(4)) {
                let &[w0, w1, w2, w3] = wq else { return };
                let (w0, w1, w2, w3) = (w0 as i32, w1 as i32, w2 as i32, w3 as i32);
                for (a, uv) in acc.iter_mut().zip(c.chunks_exact(2)) {
                    let &[u, v] = uv else { return };
                    *a += lo(u) * w0 + hi(u) * w2 + lo(v) * w1 + hi(v) * w3;
                }
            }
        }
    }

    /// [`dot5`] for pixel 0's column alone (a last group of one pixel), over
    /// `nb` blocks (no sentinel needed).
    pub fn dot1(col: &[u32], w: &[i8], nb: usize, acc: &mut i32) {
        let lo = |v: u32| v as u16 as i16 as i32;
        let hi = |v: u32| (v >> 16) as u16 as i16 as i32;
        for (c, wq) in col.chunks(GW).zip(w.chunks_exact(4)).take(nb * KB / 4) {
            let (&[u, v, ..], &[w0, w1, w2, w3]) = (c, wq) else { return };
            let (w0, w1, w2, w3) = (w0 as i32, w1 as i32, w2 as i32, w3 as i32);
            *acc = acc.wrapping_add(lo(u) * w0 + hi(u) * w2 + lo(v) * w1 + hi(v) * w3);
        }
    }
}

#[cfg(not(ddpm_dsp))]
pub(crate) use generic as kern;

#[cfg(ddpm_dsp)]
pub(crate) use dsp as kern;

#[cfg(ddpm_dsp)]
pub(crate) mod dsp {
    use super::{GW, KB, PIX, SENTINEL};
    use core::arch::asm;

    /// `(x0, x2)` and `(x1, x3)` as halfword pairs (`SXTB16`, `SXTB16 ROR #8`).
    #[inline(always)]
    pub fn ext(word: u32) -> (u32, u32) {
        let (a, b): (u32, u32);
        // SAFETY: register-only Armv7E-M arithmetic; no memory, stack or flags.
        unsafe {
            asm!(
                "sxtb16 {a}, {v}",
                "sxtb16 {b}, {v}, ror #8",
                v = in(reg) word,
                a = out(reg) a,
                b = lateout(reg) b,
                options(pure, nomem, nostack, preserves_flags),
            )
        };
        (a, b)
    }

    /// As `generic::ext_run`: `LDR`, two `SXTB16`, `STRD` per word, two words
    /// per iteration (an odd first word on its own).
    #[inline(always)]
    pub fn ext_run(src: &[i8], dst: &mut [u32], n: usize) {
        const _: () = assert!(GW * 4 == 40);
        if n == 0 || src.len() < 4 * n || dst.len() < (n - 1) * GW + 2 {
            return super::generic::ext_run(src, dst, n);
        }
        if src.as_ptr() as usize % 4 == 0 && n >= 4 {
            // SAFETY: as below; `src` is 4-aligned (checked), as LDM needs: the
            // n % 4 single words first, then four words per LDM.
            unsafe {
                asm!(
                    "ands {r}, {n}, #3",
                    "beq 3f",
                    "2:",
                    "ldr r2, [{s}], #4",
                    "sxtb16 {a}, r2",
                    "sxtb16 r2, r2, ror #8",
                    "strd {a}, r2, [{d}], #40",
                    "subs {r}, {r}, #1",
                    "bne 2b",
                    "3:",
                    "lsr {n}, {n}, #2",
                    "4:",
                    "ldm {s}!, {{r2, r3, r4, r5}}",
                    "sxtb16 {a}, r2",
                    "sxtb16 r2, r2, ror #8",
                    "strd {a}, r2, [{d}], #40",
                    "sxtb16 {a}, r3",
                    "sxtb16 r3, r3, ror #8",
                    "strd {a}, r3, [{d}], #40",
                    "sxtb16 {a}, r4",
                    "sxtb16 r4, r4, ror #8",
                    "strd {a}, r4, [{d}], #40",
                    "sxtb16 {a}, r5",
                    "sxtb16 r5, r5, ror #8",
                    "strd {a}, r5, [{d}], #40",
                    "subs {n}, {n}, #1",
                    "bne 4b",
                    s = inout(reg) src.as_ptr() => _,
                    d = inout(reg) dst.as_mut_ptr() => _,
                    n = inout(reg) n => _,
                    r = out(reg) _,
                    a = out(reg) _,
                    out("r2") _,
                    out("r3") _,
                    out("r4") _,
                    out("r5") _,
                    options(nostack),
                )
            };
            return;
        }
        // SAFETY: reads 4·n bytes of `src` and writes words g·GW, g·GW + 1 for
        // g < n of `dst`, all in bounds (checked above; n ≥ 1, and the loop
        // counts n down to exactly 0); STRD needs 4-byte alignment, which `u32`
        // has; LDR may be unaligned on Armv7E-M.
        unsafe {
            asm!(
                "tst {n}, #1",
                "beq 3f",
                "ldr {t}, [{s}], #4",
                "sxtb16 {a}, {t}",
                "sxtb16 {t}, {t}, ror #8",
                "strd {a}, {t}, [{d}], #40",
                "subs {n}, {n}, #1",
                "beq 4f",
                "3:",
                "ldr {t}, [{s}], #4",
                "ldr {u}, [{s}], #4",
                "sxtb16 {a}, {t}",
                "sxtb16 {t}, {t}, ror #8",
                "strd {a}, {t}, [{d}], #40",
                "sxtb16 {a}, {u}",
                "sxtb16 {u}, {u}, ror #8",
                "strd {a}, {u}, [{d}], #40",
                "subs {n}, {n}, #2",
                "bne 3b",
                "4:",
                s = inout(reg) src.as_ptr() => _,
                d = inout(reg) dst.as_mut_ptr() => _,
                n = inout(reg) n => _,
                t = out(reg) _,
                u = out(reg) _,
                a = out(reg) _,
                options(nostack),
            )
        };
    }

    /// `Σ w`: per word, `USADA8` of the bytes flipped to unsigned (`b ^ 0x80 = b + 128`).
    #[inline(always)]
    pub fn sum_i8(w: &[i8]) -> i32 {
        if w.as_ptr() as usize % 4 == 0 && w.len() >= 16 {
            let n16 = w.len() / 16;
            let mut s: u32 = 0;
            // SAFETY: reads 16·n16 ≤ w.len() bytes from the 4-aligned `w` (both
            // checked), four words per LDM; r2-r5 are clobbered; flags are not
            // relied on outside the block.
            unsafe {
                asm!(
                    "2:",
                    "ldm {p}!, {{r2, r3, r4, r5}}",
                    "eor r2, r2, {m}",
                    "eor r3, r3, {m}",
                    "usada8 {s}, r2, {z}, {s}",
                    "eor r4, r4, {m}",
                    "usada8 {s}, r3, {z}, {s}",
                    "eor r5, r5, {m}",
                    "usada8 {s}, r4, {z}, {s}",
                    "subs {n}, {n}, #1",
                    "usada8 {s}, r5, {z}, {s}",
                    "bne 2b",
                    p = inout(reg) w.as_ptr() => _,
                    n = inout(reg) n16 => _,
                    s = inout(reg) s,
                    m = in(reg) 0x8080_8080u32,
                    z = in(reg) 0u32,
                    out("r2") _,
                    out("r3") _,
                    out("r4") _,
                    out("r5") _,
                    options(nostack, readonly),
                )
            };
            let rest = w.get(16 * n16..).unwrap_or(&[]);
            return (s.wrapping_sub(128 * 16 * n16 as u32) as i32).wrapping_add(sum_i8_words(rest));
        }
        sum_i8_words(w)
    }

    /// [`sum_i8`] one word at a time (any alignment).
    #[inline]
    fn sum_i8_words(w: &[i8]) -> i32 {
        let mut q = w.chunks_exact(4);
        let mut s: u32 = 0;
        let mut n: u32 = 0;
        for c in &mut q {
            let &[b0, b1, b2, b3] = c else { continue };
            let v = u32::from_le_bytes([b0 as u8, b1 as u8, b2 as u8, b3 as u8]) ^ 0x8080_8080;
            // SAFETY: register-only Armv7E-M arithmetic; no memory, stack or flags.
            unsafe {
                asm!(
                    "usada8 {s}, {v}, {z}, {s}",
                    s = inout(reg) s,
                    v = in(reg) v,
                    z = in(reg) 0u32,
                    options(pure, nomem, nostack, preserves_flags),
                )
            };
            n += 4;
        }
        (s.wrapping_sub(128 * n) as i32) + super::generic::sum_i8(q.remainder())
    }

    /// One group of 4 window elements × 5 pixels: a weight word split into its
    /// even and odd bytes, 10 column words in two `LDM`s, 10 `SMLAD`s; ends with
    /// the `LDM` of the next group's first 5 words.
    macro_rules! group {
        () => {
            concat!(
                "ldr r5, [r7], #4\n",
                "sxtb16 r6, r5\n",
                "sxtb16 r5, r5, ror #8\n",
                "smlad r8, r0, r6, r8\n",
                "smlad r8, r1, r5, r8\n",
                "smlad r9, r2, r6, r9\n",
                "smlad r9, r3, r5, r9\n",
                "smlad r10, r4, r6, r10\n",
                "ldm lr!, {{r0-r4}}\n",
                "smlad r10, r0, r5, r10\n",
                "smlad r11, r1, r6, r11\n",
                "smlad r11, r2, r5, r11\n",
                "smlad r12, r3, r6, r12\n",
                "smlad r12, r4, r5, r12\n",
                "ldm lr!, {{r0-r4}}\n",
            )
        };
    }

    /// As `generic::dot1`: per group of 4 elements one weight word, two
    /// `SXTB16`, one `LDRD` of the pixel's two column words and two `SMLAD`s.
    #[inline(always)]
    pub fn dot1(col: &[u32], w: &[i8], nb: usize, acc: &mut i32) {
        let ng = nb * KB / 4;
        if ng == 0 || col.len() < (ng - 1) * GW + 2 || w.len() < 4 * ng {
            return super::generic::dot1(col, w, nb, acc);
        }
        let mut a = *acc;
        // SAFETY: ng ≥ 1 iterations, reading 4 weight bytes (unaligned LDR) and
        // column words g·GW, g·GW + 1 (LDRD: `col` is word-aligned) for g < ng,
        // all in bounds (checked above); flags are not relied on outside.
        unsafe {
            asm!(
                "2:",
                "ldr {t}, [{w}], #4",
                "ldrd {x0}, {x1}, [{c}], #40",
                "sxtb16 {u}, {t}",
                "sxtb16 {t}, {t}, ror #8",
                "smlad {a}, {x0}, {u}, {a}",
                "smlad {a}, {x1}, {t}, {a}",
                "subs {n}, {n}, #1",
                "bne 2b",
                w = inout(reg) w.as_ptr() => _,
                c = inout(reg) col.as_ptr() => _,
                n = inout(reg) ng => _,
                a = inout(reg) a,
                t = out(reg) _,
                u = out(reg) _,
                x0 = out(reg) _,
                x1 = out(reg) _,
                options(nostack, readonly),
            )
        };
        *acc = a;
    }

    /// As `generic::dot5`: 16 elements × 5 pixels per iteration (4 groups), the
    /// loop ending at the sentinel block.
    #[inline(always)]
    pub fn dot5(col: &[u32], w: &[i8], nb: usize, acc: &mut [i32; PIX]) {
        // The loop reads nb·4·GW + 5 column words (through the sentinel group's
        // first LDM) and nb·KB weight bytes; it stops at the first sentinel, which
        // the caller wrote at word nb·4·GW (and which no earlier block can hold).
        let stop = nb * (KB / 4) * GW;
        if nb == 0 || col.len() < stop + GW || w.len() < nb * KB || col.get(stop) != Some(&SENTINEL)
        {
            return super::generic::dot5(col, w, nb, acc);
        }
        let [mut a0, mut a1, mut a2, mut a3, mut a4] = *acc;
        // SAFETY: reads stay inside `col` and `w` (checked above: the loop runs at
        // most nb times because word nb·4·GW is the sentinel). Every operand is an
        // explicit register, so r6 and r7 (which cannot be operands) hold no
        // operand; they are saved on the stack and restored. SMLAD's Q flag and
        // CMP's flags are not relied on outside the block.
        unsafe {
            asm!(
                "push {{r6, r7}}",
                "mov r7, r0",
                "ldm lr!, {{r0-r4}}",
                "2:",
                group!(),
                group!(),
                group!(),
                group!(),
                "cmp r0, #0x80008000",
                "bne 2b",
                "pop {{r6, r7}}",
                inout("lr") col.as_ptr() => _,
                inout("r0") w.as_ptr() => _,
                inout("r8") a0,
                inout("r9") a1,
                inout("r10") a2,
                inout("r11") a3,
                inout("r12") a4,
                out("r1") _,
                out("r2") _,
                out("r3") _,
                out("r4") _,
                out("r5") _,
                options(readonly),
            )
        };
        *acc = [a0, a1, a2, a3, a4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::numerics::testutil::Rng;

    #[test]
    fn ext_and_dot5_match_plain_sums() {
        let mut r = Rng(17);
        for nb in 1..6 {
            let raw: Vec<Vec<i8>> = (0..PIX).map(|_| r.vec_i8(nb * KB)).collect();
            let w = r.vec_i8(nb * KB);
            let mut col = vec![0u32; nb * KB / 4 * GW + GW];
            for (p, rp) in raw.iter().enumerate() {
                columns(rp, p, &mut col);
            }
            col[nb * KB / 4 * GW] = SENTINEL;
            let mut acc = [1, 2, 3, 4, 5];
            kern::dot5(&col, &w, nb, &mut acc);
            for p in 0..PIX {
                let want: i32 = raw[p].iter().zip(&w).map(|(&x, &v)| x as i32 * v as i32).sum();
                assert_eq!(acc[p], want + p as i32 + 1);
            }
            let sw: i32 = w.iter().map(|&v| v as i32).sum();
            assert_eq!(kern::sum_i8(&w), sw);
            assert_eq!(kern::sum_i8(&w[1..]), sw - w[0] as i32);
        }
    }
}
