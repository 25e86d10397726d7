//! ADD with an int16 first input on Armv7E-M (`cfg(ddpm_dsp)`, Cortex-M4/M7):
//! element-wise and broadcast assembly loops (`SMLAL`) over
//! [`add_stage`](crate::ops::numerics::stage::add_stage) constants, bit-identical to
//! [`super::add_mixed_portable`]. Used by [`super::add_mixed`].

use super::{add_stage, AddParams, Elem, Rq};

/// One stage: `LDM` of its six constants, the pre-shift, `SMLAL`, the sign
/// term (`AND` with the sign, `SUBS`, `SBC`) and the shift (7 instructions).
macro_rules! stage {
    ($v:literal) => {
        concat!(
            "ldm r10!, {{r2, r3, r4, r5, r6, r7}}\n",
            "lsl ",
            $v,
            ", ",
            $v,
            ", r7\n",
            "smlal r3, r4, ",
            $v,
            ", r2\n",
            "and r7, r6, ",
            $v,
            ", asr #31\n",
            "subs r3, r3, r7\n",
            "sbc r4, r4, #0\n",
            "asr ",
            $v,
            ", r4, r5\n",
        )
    };
}

/// `sat(out_zp + mbqm(mbqm(a << ls, ma, sa) + b', mo, so))` for int16 `a`
/// (zero point 0), where `b'` is `mbqm(b << ls, mb, sb)` of int16 `b` (zero
/// point 0) element by element, or, broadcast, a per-channel value computed
/// once from `b` of any type; the activation range must cover `Y`'s (a
/// saturation). Per element 29 instructions (22 broadcast). False (nothing
/// written) for other parameters.
pub fn add16<A: Elem, B: Elem, Y: Elem>(
    a: &[u8],
    b: &[u8],
    y: &mut [u8],
    c: usize,
    broadcast: bool,
    p: &AddParams,
) -> bool {
    if A::BYTES != 2 || p.a_zp != 0 || p.act_min > Y::MIN || p.act_max < Y::MAX {
        return false;
    }
    let n = a.len() / 2;
    if n == 0 || y.len() / Y::BYTES != n {
        return false;
    }
    let ls = p.left_shift;
    let (Some(ka), Some(ko)) = (
        add_stage(p.a_mult, p.a_shift, 0, ls, true),
        add_stage(p.out_mult, p.out_shift, p.out_zp, 0, false),
    ) else {
        return false;
    };
    // One loop over n elements: a from r0, b' from the `bpart` instructions
    // (r1 their pointer, r12 the value), y to r8; k (r10) rewound by
    // `rewind` bytes per element.
    macro_rules! run {
        (@y $sat:literal, $st:literal, $a:expr, $b:expr, $y:expr, $n:expr, $k:expr, $rewind:literal, $($bpart:expr),+) => {
            // SAFETY: n ≥ 1 iterations, each reading one element of `a`, one
            // of b' (int16 `b` or the i32 table, at least n of either) and
            // writing one of `y` (n elements of Y), all checked by the
            // caller; `k` is read `rewind` bytes per iteration and rewound.
            // Every operand is an explicit register, so r6 and r7 hold none;
            // they are saved and restored. r2-r5 are clobbered; the flags are
            // not relied on outside the block.
            unsafe {
                core::arch::asm!(
                    "push {{r6, r7}}",
                    "2:",
                    "ldrsh r11, [r0], #2",
                    stage!("r11"),
                    $($bpart,)+
                    "add r11, r11, r12",
                    stage!("r11"),
                    concat!("sub r10, r10, #", $rewind),
                    $sat,
                    $st,
                    "subs r9, r9, #1",
                    "bne 2b",
                    "pop {{r6, r7}}",
                    inout("r0") $a => _,
                    inout("r1") $b => _,
                    inout("r8") $y => _,
                    inout("r9") $n => _,
                    inout("r10") $k => _,
                    out("r11") _,
                    out("r12") _,
                    out("r2") _,
                    out("r3") _,
                    out("r4") _,
                    out("r5") _,
                )
            }
        };
        ($($args:tt)*) => {
            if Y::BYTES == 2 {
                run!(@y "ssat r11, #16, r11", "strh r11, [r8], #2", $($args)*)
            } else {
                run!(@y "ssat r11, #8, r11", "strb r11, [r8], #1", $($args)*)
            }
        };
    }
    if !broadcast {
        let kb = add_stage(p.b_mult, p.b_shift, 0, ls, true);
        let Some(kb) = kb.filter(|_| B::BYTES == 2 && p.b_zp == 0 && b.len() / 2 == n) else {
            return false;
        };
        let k: [[i32; 6]; 3] = [ka, kb, ko];
        let (ap, bp, yp, kp) = (a.as_ptr(), b.as_ptr(), y.as_mut_ptr(), k.as_ptr());
        run!(ap, bp, yp, n, kp, "72", "ldrsh r12, [r1], #2", stage!("r12"));
        return true;
    }
    // Broadcast: b' per channel once (the portable formula), then per pixel
    // one loop over its c channels.
    const CMAX: usize = 128;
    if c == 0 || c > CMAX || n % c != 0 || B::count(b) != c {
        return false;
    }
    let rb = Rq::new(p.b_mult, p.b_shift);
    let mut tb = [0i32; CMAX];
    for (t, vb) in tb.iter_mut().zip(B::iter(b)) {
        *t = rb.apply((vb - p.b_zp).wrapping_shl(ls.clamp(0, 23) as u32));
    }
    let k: [[i32; 6]; 2] = [ka, ko];
    for (apx, ypx) in a.chunks_exact(2 * c).zip(y.chunks_exact_mut(c * Y::BYTES)) {
        let (ap, tp, yp, kp) = (apx.as_ptr(), tb.as_ptr(), ypx.as_mut_ptr(), k.as_ptr());
        run!(ap, tp, yp, c, kp, "48", "ldr r12, [r1], #4");
    }
    true
}
