//! The interpreter: runs every op of a validated model over one arena.

use crate::error::Error;
use crate::format::opcode;
use crate::model::{Model, Op};
use crate::ops;
use crate::ops::numerics::{as_i8, as_i8_mut, E16, E8};

/// Progress and timing callbacks; every method defaults to doing nothing.
///
/// Firmware implements it to time steps and ops (e.g. read a cycle counter or
/// toggle a GPIO).
pub trait Hooks {
    /// A sampler step begins (`step` counts down to 0; `t` is the network timestep).
    fn step_start(&mut self, step: u32, t: u32) {
        let _ = (step, t);
    }
    /// A sampler step ended.
    fn step_end(&mut self, step: u32, t: u32) {
        let _ = (step, t);
    }
    /// Op `index` begins.
    fn op_start(&mut self, index: u16, opcode: u16) {
        let _ = (index, opcode);
    }
    /// Op `index` ended.
    fn op_end(&mut self, index: u16, opcode: u16) {
        let _ = (index, opcode);
    }
}

/// Hooks that do nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHooks;

impl Hooks for NoHooks {}

/// Up to three read-only pieces of the arena left after carving out the output
/// and the scratch, each with its arena base offset.
struct Rest<'b> {
    parts: [(usize, &'b [u8]); 3],
}

impl<'b> Rest<'b> {
    fn get(&self, off: usize, len: usize) -> Option<&'b [u8]> {
        for &(base, s) in &self.parts {
            if off >= base {
                let rel = off - base;
                if let Some(r) = s.get(rel..rel.checked_add(len)?) {
                    return Some(r);
                }
            }
        }
        None
    }
}

/// Splits `arena` into the mutable ranges `a` and `b` (disjoint) and the rest.
#[allow(clippy::type_complexity)]
/// CONV2D's parameters from its op fields (FORMAT.md).
fn conv_params(op: &Op<'_>) -> ops::conv2d::Conv2dParams {
    let (p, u) = (|i: usize| op.p(i), |i: usize| op.p(i).max(0) as usize);
    ops::conv2d::Conv2dParams {
        kh: u(0),
        kw: u(1),
        sh: u(2),
        sw: u(3),
        pt: u(4),
        pl: u(5),
        in_zp: p(8),
        out_zp: p(9),
        act_min: p(10),
        act_max: p(11),
    }
}

/// ADD's parameters from its op fields (FORMAT.md).
fn add_params(op: &Op<'_>) -> ops::add::AddParams {
    let p = |i: usize| op.p(i);
    ops::add::AddParams {
        a_zp: p(1),
        b_zp: p(2),
        out_zp: p(3),
        left_shift: p(4),
        a_mult: p(5),
        a_shift: p(6),
        b_mult: p(7),
        b_shift: p(8),
        out_mult: p(9),
        out_shift: p(10),
        act_min: p(11),
        act_max: p(12),
    }
}

fn carve(
    arena: &mut [u8],
    a: (usize, usize),
    b: (usize, usize),
) -> Option<(&mut [u8], &mut [u8], Rest<'_>)> {
    let swap = b.0 < a.0;
    let (r1, r2) = if swap { (b, a) } else { (a, b) };
    if r1.1 > r2.0 || r1.0 > r1.1 || r2.0 > r2.1 || r2.1 > arena.len() {
        return None;
    }
    let (p0, tail) = arena.split_at_mut_checked(r1.0)?;
    let (m1, tail) = tail.split_at_mut_checked(r1.1 - r1.0)?;
    let (p1, tail) = tail.split_at_mut_checked(r2.0 - r1.1)?;
    let (m2, p2) = tail.split_at_mut_checked(r2.1 - r2.0)?;
    let rest = Rest { parts: [(0, &*p0), (r1.1, &*p1), (r2.1, &*p2)] };
    if swap {
        Some((m2, m1, rest))
    } else {
        Some((m1, m2, rest))
    }
}

/// Prepared weights kept across passes ([`Model::weight_cache_bytes`]): each
/// Winograd layer's transformed weights, at consecutive offsets in op order,
/// written on a pass with `primed` false and read when it is true.
#[cfg(all(ddpm_wide, feature = "std", target_arch = "x86_64"))]
pub(crate) struct WeightCache<'c> {
    pub(crate) words: &'c mut [i16],
    pub(crate) primed: bool,
    off: usize,
}

#[cfg(all(ddpm_wide, feature = "std", target_arch = "x86_64"))]
impl<'c> WeightCache<'c> {
    /// A cache over `bytes` (2-byte aligned part), not yet filled.
    pub(crate) fn new(bytes: &'c mut [u8], primed: bool) -> Self {
        // SAFETY: every bit pattern is a valid i16; align_to_mut keeps the
        // middle part inside `bytes` and correctly aligned.
        let (_, words, _) = unsafe { bytes.align_to_mut::<i16>() };
        WeightCache { words, primed, off: 0 }
    }
}

impl<'a> Model<'a> {
    /// Runs the network once at network timestep `t` (0-based): reads the input
    /// tensor, writes every intermediate and the output tensor in `arena`.
    ///
    /// # Errors
    /// [`Error::ArenaTooSmall`] if `arena` is shorter than [`Model::arena_bytes`],
    /// [`Error::BadTimestep`] if `t ≥ T`.
    pub fn forward(&self, arena: &mut [u8], t: u32, hooks: &mut impl Hooks) -> Result<(), Error> {
        self.check_forward(arena, t)?;
        for op in self.ops() {
            hooks.op_start(op.index, op.opcode);
            self.run_op(&op, arena, t)?;
            hooks.op_end(op.index, op.opcode);
        }
        Ok(())
    }

    /// The arena and timestep checks of [`Model::forward`].
    fn check_forward(&self, arena: &[u8], t: u32) -> Result<(), Error> {
        if arena.len() < self.arena_bytes() as usize {
            return Err(Error::ArenaTooSmall {
                needed: self.arena_bytes(),
                got: arena.len() as u32,
            });
        }
        if t >= self.timesteps() {
            return Err(Error::BadTimestep { t, timesteps: self.timesteps() });
        }
        Ok(())
    }

    /// [`Model::forward`] with a cache of prepared weights (x86_64 hosts with
    /// AVX2: the Winograd layers' transformed weights, see
    /// [`Model::weight_cache_bytes`]); the same outputs.
    #[cfg(all(ddpm_wide, feature = "std", target_arch = "x86_64"))]
    pub(crate) fn forward_cached(
        &self,
        arena: &mut [u8],
        t: u32,
        hooks: &mut impl Hooks,
        cache: &mut WeightCache<'_>,
    ) -> Result<(), Error> {
        self.check_forward(arena, t)?;
        cache.off = 0;
        for op in self.ops() {
            hooks.op_start(op.index, op.opcode);
            if !self.run_winograd_cached(&op, arena, cache)? {
                self.run_op(&op, arena, t)?;
            }
            hooks.op_end(op.index, op.opcode);
        }
        Ok(())
    }

    /// Runs `op` through the Winograd kernel with its slot of `cache` when it is
    /// a layer the kernel takes (the slot's offset advances either way, so every
    /// pass gives each layer the same slot); `false` otherwise (nothing done).
    #[cfg(all(ddpm_wide, feature = "std", target_arch = "x86_64"))]
    fn run_winograd_cached(
        &self,
        op: &Op<'_>,
        arena: &mut [u8],
        cache: &mut WeightCache<'_>,
    ) -> Result<bool, Error> {
        let Some(words) = self.winograd_words(op) else { return Ok(false) };
        let (at, end) = (cache.off, cache.off.saturating_add(words));
        cache.off = end;
        let Some(pre) = cache.words.get_mut(at..end) else { return Ok(false) };
        let bad = Error::BadOp { index: op.index, opcode: op.opcode, what: "invalid at run time" };
        let info = |id: Option<u16>| self.tensor_info(id.ok_or(bad)?);
        let (y, xi) = (info(op.output(0))?, info(op.input(0))?);
        let yr = (y.arena_offset as usize, y.arena_offset as usize + y.size as usize);
        let sr =
            (op.scratch_offset as usize, op.scratch_offset.saturating_add(op.scratch_len) as usize);
        let (yb, _, rest) = carve(arena, yr, sr).ok_or(bad)?;
        let x = rest.get(xi.arena_offset as usize, xi.size as usize).ok_or(bad)?;
        let w = |pi: usize, align: u32| self.weight_ref(op, pi, align).ok_or(bad);
        let cp = conv_params(op);
        let bias = if op.p(15) == 0 { &[][..] } else { w(14, 4)? };
        let (wt, mult, shift) = (as_i8(w(12, 1)?), w(16, 4)?, w(18, 4)?);
        let shape = |t: &crate::model::TensorInfo| [t.h as usize, t.w as usize, t.c as usize];
        let (xs, ys, pre) = (shape(&xi), shape(&y), Some((pre, cache.primed)));
        use ops::conv2d::winograd_avx2::run_avx2;
        // SAFETY: `winograd_words` is Some only when the CPU has AVX2.
        unsafe {
            if y.int16 {
                run_avx2::<E16>(as_i8(x), xs, ys, &cp, wt, bias, mult, shift, yb, pre)
            } else {
                run_avx2::<E8>(as_i8(x), xs, ys, &cp, wt, bias, mult, shift, yb, pre)
            }
        };
        Ok(true)
    }

    /// Bytes of the prepared-weights cache [`crate::Sampler`] can keep for this
    /// model on this CPU: the Winograd-transformed weights of every int8-input
    /// 3×3 stride-1 CONV2D on x86_64 with AVX2 (`std`), i16 each; 0 elsewhere.
    pub fn weight_cache_bytes(&self) -> usize {
        #[cfg(all(ddpm_wide, feature = "std", target_arch = "x86_64"))]
        {
            let mut words = 0usize;
            for op in self.ops() {
                words = words.saturating_add(self.winograd_words(&op).unwrap_or(0));
            }
            return words.saturating_mul(2);
        }
        #[cfg_attr(
            all(ddpm_wide, feature = "std", target_arch = "x86_64"),
            allow(unreachable_code)
        )]
        0
    }

    /// Cache words of a CONV2D the Winograd kernel takes (int8 input).
    #[cfg(all(ddpm_wide, feature = "std", target_arch = "x86_64"))]
    fn winograd_words(&self, op: &Op<'_>) -> Option<usize> {
        if op.opcode != opcode::CONV2D {
            return None;
        }
        let (xi, y) = (self.tensor_info(op.input(0)?).ok()?, self.tensor_info(op.output(0)?).ok()?);
        if xi.int16 {
            return None;
        }
        let shape = |t: &crate::model::TensorInfo| [t.h as usize, t.w as usize, t.c as usize];
        ops::conv2d::winograd_avx2::cache_words(shape(&xi), shape(&y), &conv_params(op))
    }

    fn run_op(&self, op: &Op<'_>, arena: &mut [u8], t: u32) -> Result<(), Error> {
        let bad = Error::BadOp { index: op.index, opcode: op.opcode, what: "invalid at run time" };
        let info = |id: Option<u16>| self.tensor_info(id.ok_or(bad)?);
        let y = info(op.output(0))?;
        let yr = (y.arena_offset as usize, y.arena_offset as usize + y.size as usize);
        let sr =
            (op.scratch_offset as usize, op.scratch_offset.saturating_add(op.scratch_len) as usize);
        let (yb, scratch, rest) = carve(arena, yr, sr).ok_or(bad)?;
        let in_bytes = |i: usize| -> Result<(&[u8], crate::model::TensorInfo), Error> {
            let x = info(op.input(i))?;
            Ok((rest.get(x.arena_offset as usize, x.size as usize).ok_or(bad)?, x))
        };
        let mut any16 = y.int16;
        for i in 0..op.n_inputs() {
            any16 |= info(op.input(i))?.int16;
        }
        if any16 {
            return self.run_wide(op, yb, &y, in_bytes, scratch);
        }
        let yv = as_i8_mut(yb);
        let input = |i: usize| -> Result<(&[i8], crate::model::TensorInfo), Error> {
            let x = info(op.input(i))?;
            let s = rest.get(x.arena_offset as usize, x.size as usize).ok_or(bad)?;
            Ok((as_i8(s), x))
        };
        let w = |pi: usize, align: u32| self.weight_ref(op, pi, align).ok_or(bad);
        let p = |i: usize| op.p(i);
        let u = |i: usize| op.p(i).max(0) as usize;
        let shape = |t: &crate::model::TensorInfo| [t.h as usize, t.w as usize, t.c as usize];
        match op.opcode {
            opcode::CONV2D => {
                let (x, xi) = input(0)?;
                let cp = conv_params(op);
                let bias = if p(15) == 0 { &[][..] } else { w(14, 4)? };
                ops::conv2d::conv2d(
                    x,
                    shape(&xi),
                    yv,
                    shape(&y),
                    &cp,
                    as_i8(w(12, 1)?),
                    bias,
                    w(16, 4)?,
                    w(18, 4)?,
                    scratch,
                );
            }
            opcode::GROUP_NORM => {
                let (x, xi) = input(0)?;
                let eps = (p(3) as u32 as u64) | ((p(4) as u32 as u64) << 32);
                ops::group_norm::group_norm(
                    x,
                    xi.c as usize,
                    yv,
                    u(0),
                    p(1),
                    p(2),
                    eps,
                    w(5, 4)?,
                    w(7, 4)?,
                    w(9, 4)?,
                );
            }
            opcode::LUT => {
                let (x, _) = input(0)?;
                ops::lut::lut(x, yv, as_i8(w(0, 1)?));
            }
            opcode::ADD => {
                let (a, _) = input(0)?;
                let (b, _) = input(1)?;
                let ap = add_params(op);
                ops::add::add(a, b, yv, y.c as usize, p(0) == 1, &ap);
            }
            opcode::MUL => {
                let (a, _) = input(0)?;
                let (b, _) = input(1)?;
                let mp = ops::mul::MulParams {
                    a_zp: p(1),
                    b_zp: p(2),
                    out_zp: p(3),
                    mult: p(4),
                    shift: p(5),
                    act_min: p(6),
                    act_max: p(7),
                };
                ops::mul::mul(a, b, yv, y.c as usize, p(0) == 1, &mp);
            }
            opcode::CONCAT => {
                let mut c_off = 0usize;
                for i in 0..op.n_inputs() {
                    let (x, xi) = input(i)?;
                    let b = 1 + 3 * i;
                    ops::concat::concat_one(
                        x,
                        xi.c as usize,
                        yv,
                        y.c as usize,
                        c_off,
                        p(b),
                        p(0),
                        p(b + 1),
                        p(b + 2),
                    );
                    c_off += xi.c as usize;
                }
            }
            opcode::UPSAMPLE_NEAREST => {
                let (x, xi) = input(0)?;
                ops::upsample::upsample(x, shape(&xi), yv, u(0), u(1));
            }
            opcode::MATMUL => {
                let (a, _) = input(0)?;
                let (b, _) = input(1)?;
                let mp = ops::matmul::MatmulParams {
                    batch: u(0),
                    m: u(1),
                    k: u(2),
                    n: u(3),
                    a_zp: p(4),
                    b_zp: p(5),
                    out_zp: p(6),
                    mult: p(7),
                    shift: p(8),
                    act_min: p(9),
                    act_max: p(10),
                    a_s: [u(11), u(12), u(13)],
                    b_s: [u(14), u(15), u(16)],
                    y_s: [u(17), u(18), u(19)],
                };
                ops::matmul::matmul(a, b, yv, &mp);
            }
            opcode::SOFTMAX => {
                let (x, _) = input(0)?;
                ops::softmax::softmax(x, yv, u(1), w(2, 4)?);
            }
            opcode::TIMESTEP_EMBED => {
                if !ops::timestep_embed::timestep_embed(as_i8(w(2, 1)?), t as usize, yv) {
                    return Err(Error::BadTimestep { t, timesteps: self.timesteps() });
                }
            }
            opcode::REQUANT => {
                let (x, _) = input(0)?;
                ops::requant::requant(x, yv, p(0), p(1), p(2), p(3));
            }
            _ => return Err(Error::UnknownOpcode { index: op.index, opcode: op.opcode }),
        }
        Ok(())
    }

    /// Runs an op that reads or writes an int16 tensor (the `_mixed` kernels; the
    /// loader has checked that the op accepts the types it has).
    fn run_wide<'b>(
        &self,
        op: &Op<'_>,
        yb: &mut [u8],
        y: &crate::model::TensorInfo,
        input: impl Fn(usize) -> Result<(&'b [u8], crate::model::TensorInfo), Error>,
        scratch: &mut [u8],
    ) -> Result<(), Error> {
        use ops::{add, concat, conv2d, group_norm, lut, requant, upsample};
        let bad = Error::BadOp { index: op.index, opcode: op.opcode, what: "invalid at run time" };
        let w = |pi: usize, align: u32| self.weight_ref(op, pi, align).ok_or(bad);
        let p = |i: usize| op.p(i);
        let u = |i: usize| op.p(i).max(0) as usize;
        let shape = |t: &crate::model::TensorInfo| [t.h as usize, t.w as usize, t.c as usize];
        // `$f::<X, Y>(args)` with X, Y the element types of the flags.
        macro_rules! by_type {
            ($x16:expr, $y16:expr, $m:ident :: $f:ident, $($a:expr),* $(,)?) => {
                match ($x16, $y16) {
                    (false, false) => $m::$f::<E8, E8>($($a),*),
                    (false, true) => $m::$f::<E8, E16>($($a),*),
                    (true, false) => $m::$f::<E16, E8>($($a),*),
                    (true, true) => $m::$f::<E16, E16>($($a),*),
                }
            };
        }
        match op.opcode {
            opcode::CONV2D => {
                let (x, xi) = input(0)?;
                let cp = conv_params(op);
                let bias = if p(15) == 0 { &[][..] } else { w(14, 4)? };
                let (wt, mult, shift) = (as_i8(w(12, 1)?), w(16, 4)?, w(18, 4)?);
                if xi.int16 {
                    ops::conv2d::conv2d_i16(
                        x,
                        shape(&xi),
                        yb,
                        y.int16,
                        shape(y),
                        &cp,
                        wt,
                        bias,
                        mult,
                        shift,
                        scratch,
                    );
                } else if cfg!(ddpm_wide)
                    && ops::conv2d::host::applicable_wide(
                        xi.c as usize,
                        y.h as usize * y.w as usize,
                        &cp,
                    )
                {
                    // int8 input, int16 output: the host engine.
                    #[cfg(ddpm_wide)]
                    {
                        use ops::conv2d::host::conv2d_im2col_wide_to as to;
                        let (xs, xsh, ysh) = (as_i8(x), shape(&xi), shape(y));
                        if y.int16 {
                            to::<E16>(xs, xsh, yb, ysh, &cp, wt, bias, mult, shift);
                        } else {
                            to::<E8>(xs, xsh, yb, ysh, &cp, wt, bias, mult, shift);
                        }
                    }
                } else if cfg!(ddpm_dsp)
                    && ops::conv2d::armv7em::applicable(
                        xi.c as usize,
                        y.h as usize * y.w as usize,
                        &cp,
                    )
                {
                    // int8 input, int16 output: the SMLAD column kernel.
                    use ops::conv2d::armv7em::conv2d_im2col_to as to;
                    let (xs, xsh, ysh) = (as_i8(x), shape(&xi), shape(y));
                    if y.int16 {
                        to::<E16>(xs, xsh, yb, ysh, &cp, wt, bias, mult, shift);
                    } else {
                        to::<E8>(xs, xsh, yb, ysh, &cp, wt, bias, mult, shift);
                    }
                } else {
                    by_type!(
                        xi.int16,
                        y.int16,
                        conv2d::conv2d_mixed,
                        x,
                        shape(&xi),
                        yb,
                        shape(y),
                        &cp,
                        wt,
                        bias,
                        mult,
                        shift
                    );
                }
            }
            opcode::GROUP_NORM => {
                let (x, xi) = input(0)?;
                let eps = (p(3) as u32 as u64) | ((p(4) as u32 as u64) << 32);
                by_type!(
                    xi.int16,
                    y.int16,
                    group_norm::group_norm_mixed,
                    x,
                    xi.c as usize,
                    yb,
                    u(0),
                    p(1),
                    p(2),
                    eps,
                    w(5, 4)?,
                    w(7, 4)?,
                    w(9, 4)?
                );
            }
            opcode::LUT16 => {
                let (x, _) = input(0)?;
                lut::lut16(x, yb, w(0, 2)?);
            }
            opcode::ADD => {
                let (a, ai) = input(0)?;
                let (b, bi) = input(1)?;
                let ap = add_params(op);
                let (c, bc) = (y.c as usize, p(0) == 1);
                match (ai.int16, bi.int16, y.int16) {
                    (false, false, false) => add::add_mixed::<E8, E8, E8>(a, b, yb, c, bc, &ap),
                    (false, false, true) => add::add_mixed::<E8, E8, E16>(a, b, yb, c, bc, &ap),
                    (false, true, false) => add::add_mixed::<E8, E16, E8>(a, b, yb, c, bc, &ap),
                    (false, true, true) => add::add_mixed::<E8, E16, E16>(a, b, yb, c, bc, &ap),
                    (true, false, false) => add::add_mixed::<E16, E8, E8>(a, b, yb, c, bc, &ap),
                    (true, false, true) => add::add_mixed::<E16, E8, E16>(a, b, yb, c, bc, &ap),
                    (true, true, false) => add::add_mixed::<E16, E16, E8>(a, b, yb, c, bc, &ap),
                    (true, true, true) => add::add_mixed::<E16, E16, E16>(a, b, yb, c, bc, &ap),
                }
            }
            opcode::CONCAT => {
                let mut c_off = 0usize;
                for i in 0..op.n_inputs() {
                    let (x, xi) = input(i)?;
                    let b = 1 + 3 * i;
                    by_type!(
                        xi.int16,
                        y.int16,
                        concat::concat_one_mixed,
                        x,
                        xi.c as usize,
                        yb,
                        y.c as usize,
                        c_off,
                        p(b),
                        p(0),
                        p(b + 1),
                        p(b + 2)
                    );
                    c_off += xi.c as usize;
                }
            }
            opcode::UPSAMPLE_NEAREST => {
                let (x, xi) = input(0)?;
                let e = if y.int16 { 2 } else { 1 };
                upsample::upsample_bytes(x, shape(&xi), yb, u(0), u(1), e);
            }
            opcode::REQUANT => {
                let (x, xi) = input(0)?;
                by_type!(xi.int16, y.int16, requant::requant_mixed, x, yb, p(0), p(1), p(2), p(3));
            }
            _ => return Err(bad),
        }
        Ok(())
    }
}
