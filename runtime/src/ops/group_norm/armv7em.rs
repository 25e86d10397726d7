//! GROUP_NORM's channel loops on Armv7E-M (`cfg(ddpm_dsp)`, Cortex-M4/M7), in
//! assembly: the group sums of int16 inputs and the per-channel output loop of
//! the channel-major kernel of `fast.rs` (whose child module this is, `dsp`
//! there), bit-identical to the portable loops.

use super::{exact_z, Chan, Elem};
use crate::ops::numerics::OutRq;

/// Pass 1 for int16 input: each group's `Σ(x − in_zp)` and `Σ(x − in_zp)²`
/// over its `cg` channels of `pixels` pixels go to `s1[g·cg]` and `s2[g·cg]`
/// (the other slots 0: the caller adds a group's slots). Two channels per
/// `SMLALD` (against `0x0001_0001` for `Σx`, against itself for `Σx²`), from
/// the raw sums, corrected for the zero point exactly. `false` (nothing
/// written) unless `cg` is even, the tensor 4-byte aligned and long enough.
pub fn group_sums(
    x: &[u8],
    c: usize,
    cg: usize,
    pixels: usize,
    in_zp: i32,
    s1: &mut [i64],
    s2: &mut [i64],
) -> bool {
    let (words, st) = (cg / 2, 2 * c);
    if cg == 0 || cg % 2 != 0 || c % cg != 0 || pixels == 0 || pixels * st > x.len() {
        return false;
    }
    if x.as_ptr() as usize % 4 != 0 || s1.len() < c || s2.len() < c {
        return false;
    }
    let n = (pixels * cg) as i64;
    let zp = in_zp as i64;
    for (g, (a, b)) in s1.chunks_exact_mut(cg).zip(s2.chunks_exact_mut(cg)).enumerate() {
        let (mut a0, mut a1, mut b0, mut b1) = (0u32, 0i32, 0u32, 0i32);
        // SAFETY: reads `words` words of each of the `pixels` pixels from byte
        // 2·g·cg of the pixel (4-aligned: x is, st = 2c and 2·g·cg are even
        // multiples of 2·2), all below pixels·st ≤ x.len() (checked above);
        // the loops run words ≥ 1 and pixels ≥ 1 times. r8-r12 and lr are
        // clobbered; the flags are not relied on outside the block.
        unsafe {
            core::arch::asm!(
                "2:",
                "mov {i}, {words}",
                "3:",
                "ldr lr, [{x}], #4",
                "smlald r8, r9, lr, r12",
                "smlald r10, r11, lr, lr",
                "subs {i}, {i}, #1",
                "bne 3b",
                "add {x}, {x}, {skip}",
                "subs {n}, {n}, #1",
                "bne 2b",
                x = inout(reg) x.as_ptr().add(2 * g * cg) => _,
                n = inout(reg) pixels => _,
                i = out(reg) _,
                words = in(reg) words,
                skip = in(reg) st - 4 * words,
                inout("r8") a0,
                inout("r9") a1,
                inout("r10") b0,
                inout("r11") b1,
                in("r12") 0x0001_0001u32,
                out("lr") _,
                options(nostack, readonly),
            )
        };
        let sx = ((a1 as i64) << 32) | a0 as i64;
        let sxx = ((b1 as i64) << 32) | b0 as i64;
        a.fill(0);
        b.fill(0);
        if let (Some(a), Some(b)) = (a.first_mut(), b.first_mut()) {
            // Σ(x − zp) = Σx − n·zp; Σ(x − zp)² = Σx² − 2·zp·Σx + n·zp².
            *a = sx - n * zp;
            *b = sxx - 2 * zp * sx + n * zp * zp;
        }
    }
    true
}

/// The loop's constants of channel `e`: the FixZ line with the zero point
/// folded in (`Y = P − in_zp·S + x·S`), then OutRq's fast form with
/// `out_zp + bias` folded into its high word (`(h + c·2^e1) >> e1 =
/// (h >> e1) + c`). `None` unless the requantization has the fast form and
/// `|out_zp + bias|·2^e1 < 2^30`: then, with `|z| < 2^30` (FixZ's bound),
/// `|MBQM(z)| ≤ 2^30` and no sum saturates, so the saturating adds of the
/// portable loop give the same values.
pub fn consts(e: &Chan, in_zp: i32, out_zp: i32) -> Option<[i32; 8]> {
    let (m, sh, _) = e.rq.parts();
    if m < 0 || sh < 1 {
        return None;
    }
    let (kpos, m, e1) = OutRq::new(m, -(sh as i32)).fast_parts()?;
    let zpb = out_zp as i64 + e.bias as i64;
    if zpb.unsigned_abs() << e1 >= 1 << 30 {
        return None;
    }
    let k = kpos + (zpb << (32 + e1));
    let f = e.fz;
    let s = ((f.shi as i64) << 32) + f.slo as i64;
    let p = f.p.wrapping_sub(in_zp as i64 * s);
    Some([p as i32, (p >> 32) as i32, f.slo, f.shi, k as i32, (k >> 32) as i32, m, e1 as i32])
}

/// Runs up to `n ≥ 1` elements `st` bytes apart from `x` into `y`, stopping at
/// the first one whose z is not certain: returns the pointers past it (x) and
/// at it (y), the count left including it (0 when done) and its value.
///
/// Per element: load, one `LDM` of the line, `SMLAL` and `MLA` for `Y`, the
/// certainty check on its low word (`lo + 2^16 ≥ 2^17`: lo ∈ [2^16, 2^32 −
/// 2^16), well beyond FixZ's error bound), two `LDRD`s of the requantization,
/// `SMLAL` of `z·m` into `kpos` with the sign fix of OutRq's fast form
/// (`AND`, `ADDS`, `ADC`), `ASR`, `SSAT`, store: 20 instructions.
///
/// # Safety
/// `x` and `y` must be valid for `n` elements of `X`/`Y` (`X::BYTES ==
/// Y::BYTES`) `st` bytes apart; `k` 4-aligned (it is an `[i32; 8]`).
#[inline(always)]
unsafe fn run<X: Elem>(
    x: *const u8,
    y: *mut u8,
    st: usize,
    n: usize,
    k: &[i32; 8],
) -> (*const u8, *mut u8, usize, i32) {
    let (mut x, mut y, mut n, mut v): (*const u8, *mut u8, usize, i32) = (x, y, n, 0);
    macro_rules! body {
        ($ld:literal, $sat:literal, $st:literal) => {
            // SAFETY: each iteration reads one element at x and writes one at
            // y, n ≥ 1 times at most (the caller's contract), and reads the 8
            // words of k. r8-r12 and lr are clobbered; the flags are not relied
            // on outside the block.
            unsafe {
                core::arch::asm!(
                    "2:",
                    $ld,
                    "add {x}, {x}, {st}",
                    "ldm {k}, {{r8, r9, r10, r11}}",
                    "smlal r8, r9, {v}, r10",
                    "mla r9, {v}, r11, r9",
                    "add r12, r8, #0x10000",
                    "cmp r12, #0x20000",
                    "blo 5f",
                    "ldrd r10, r11, [{k}, #16]",
                    "ldrd r12, lr, [{k}, #24]",
                    "smlal r10, r11, r9, r12",
                    "and r8, r9, #0x80000000",
                    "adds r10, r10, r8",
                    "adc r11, r11, r8, asr #31",
                    "asr r11, r11, lr",
                    $sat,
                    $st,
                    "add {y}, {y}, {st}",
                    "subs {n}, {n}, #1",
                    "bne 2b",
                    "5:",
                    x = inout(reg) x,
                    y = inout(reg) y,
                    n = inout(reg) n,
                    v = inout(reg) v,
                    st = in(reg) st,
                    k = in(reg) k.as_ptr(),
                    out("r8") _,
                    out("r9") _,
                    out("r10") _,
                    out("r11") _,
                    out("r12") _,
                    out("lr") _,
                    options(nostack),
                )
            }
        };
    }
    if X::BYTES == 2 {
        body!("ldrsh {v}, [{x}]", "ssat r11, #16, r11", "strh r11, [{y}]");
    } else {
        body!("ldrsb {v}, [{x}]", "ssat r11, #8, r11", "strb r11, [{y}]");
    }
    (x, y, n, v)
}

/// Channel `e`'s `n` elements `st` bytes apart from `x` into `y`, through
/// [`run`], the uncertain ones with the exact z and the portable loop's
/// requantization.
///
/// # Safety
/// As [`run`], with `n ≥ 1`, `X::BYTES == Y::BYTES` and `k` from [`consts`].
#[allow(clippy::too_many_arguments)]
pub unsafe fn channel<X: Elem, Y: Elem>(
    x: *const u8,
    y: *mut u8,
    st: usize,
    n: usize,
    k: &[i32; 8],
    e: &Chan,
    in_zp: i32,
    out_zp: i32,
) {
    let (mut x, mut y, mut n) = (x, y, n);
    while n > 0 {
        // SAFETY: the caller's contract for the n elements left.
        let (x2, y2, left, v) = unsafe { run::<X>(x, y, st, n, k) };
        if left == 0 {
            return;
        }
        let o = out_zp
            .saturating_add(e.rq.apply(exact_z(e, v - in_zp)))
            .saturating_add(e.bias)
            .clamp(Y::MIN, Y::MAX);
        // SAFETY: y2 is the element `run` stopped at, one of the n (left ≥ 1).
        unsafe {
            if Y::BYTES == 2 {
                y2.cast::<u16>().write_unaligned((o as u16).to_le());
            } else {
                y2.write(o as u8);
            }
        }
        (x, y, n) = (x2, y2.wrapping_add(st), left - 1);
    }
}
