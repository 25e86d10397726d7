//! The fixed-point DDPM / DDIM sampler.
//!
//! State `x` is i32 with `F = MODEL.state_frac_bits` fractional bits (24), stored
//! after the network arena. Every product is i64 (i128 where a table product is
//! shifted further), rounded to nearest (half up); schedule coefficients come from
//! the SCHEDULE tables with their own fractional bits. See `docs/FORMAT.md`,
//! "Sampler", for the exact update of each mode.

mod gauss_table;
pub mod noise;

use crate::error::Error;
use crate::format::table;
use crate::interp::Hooks;
use crate::model::{Model, TensorView};
use crate::ops::group_norm::scale::isqrt_u128;
use crate::ops::numerics::sat8;
use noise::Xoshiro128;

/// Which reverse process to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Mode {
    /// Ancestral DDPM over all T timesteps.
    Ddpm,
    /// DDIM over `steps` evenly spaced timesteps `⌊j·T/steps⌋`, `j = steps−1 … 0`.
    Ddim {
        /// Number of denoising steps (1..=T).
        steps: u32,
        /// η in Q16 (0 = deterministic DDIM, 65536 = DDPM-like noise).
        eta_q16: u32,
    },
}

/// DDPM noise variance σ² (ignored by DDIM, which uses η).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Sigma {
    /// σ² = β_t (the upper bound).
    Beta,
    /// σ² = β̃_t, the posterior variance (lower bound).
    BetaTilde,
    /// σ = 0.
    Zero,
}

/// Sampler configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SamplerConfig {
    /// Noise seed: same artifact + seed = same pixels on every target.
    pub seed: u64,
    /// DDPM or DDIM.
    pub mode: Mode,
    /// DDPM σ choice.
    pub sigma: Sigma,
    /// Predict x̂₀, clip it to [−1, 1] and take the posterior mean (DDPM), or clip
    /// x̂₀ before the DDIM update.
    pub clip_x0: bool,
}

/// Round-to-nearest `a·b / 2^s` (half up), i64 in, i64 out.
#[inline]
fn mul_q(a: i64, b: i64, s: u32) -> i64 {
    let p = a as i128 * b as i128;
    if s == 0 {
        return p.clamp(i64::MIN as i128, i64::MAX as i128) as i64;
    }
    ((p + (1i128 << (s - 1))) >> s).clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// Round-to-nearest `n / d` (half away from zero), `d > 0`.
#[inline]
fn div_round(n: i128, d: i128) -> i128 {
    if d <= 0 {
        return 0;
    }
    if n >= 0 {
        (n + d / 2) / d
    } else {
        -((-n + d / 2) / d)
    }
}

/// `div_round` for i64 with `|n| < 2^62`, `d > 0` (0 for `d ≤ 0`).
///
/// `div_round(n·2^f, d·2^f) == div_round_i64(n, d)`: for `f ≥ 1` the i128 form
/// rounds `(2n ± d)/(2d)` exactly while this one rounds `(2n ± (d − d mod 2))/(2d)`;
/// they differ only if `2n + d ≡ 0 (mod 2d)` with `d` odd, which would make `2n` an
/// odd multiple of `d`, impossible. Tested against the i128 form.
#[inline]
fn div_round_i64(n: i64, d: i64) -> i64 {
    if d <= 0 {
        return 0;
    }
    if n >= 0 {
        (n + d / 2) / d
    } else {
        -((-n + d / 2) / d)
    }
}

#[inline]
fn sat32(v: i64) -> i32 {
    v.clamp(i32::MIN as i64, i32::MAX as i64) as i32
}

/// `v²` of a Q`fb` table value, as Q60.
fn sq_q60(v: i32, fb: u8) -> u128 {
    let sq = (v.max(0) as u128) * (v.max(0) as u128);
    let fb2 = 2 * fb as u32;
    if fb2 <= 60 {
        sq << (60 - fb2)
    } else {
        let s = fb2 - 60;
        (sq + (1u128 << (s - 1))) >> s
    }
}

/// Runs the reverse process step by step over a borrowed arena.
#[derive(Debug)]
pub struct Sampler<'m, 'a> {
    model: Model<'m>,
    arena: &'a mut [u8],
    cfg: SamplerConfig,
    rng: Xoshiro128,
    remaining: u32,
    n: usize,
    state_off: usize,
    /// Byte offset and length of the prepared-weights cache in the arena (0
    /// length: none), and whether a pass has filled it.
    cache: (usize, usize),
    #[cfg_attr(not(all(ddpm_wide, feature = "std", target_arch = "x86_64")), allow(dead_code))]
    primed: bool,
}

impl<'m, 'a> Sampler<'m, 'a> {
    /// Arena bytes a sampler needs: the network arena, padded to 4, then the state
    /// (4 bytes per image element).
    pub fn arena_bytes(model: &Model<'_>) -> usize {
        arena_bytes_for(model.arena_bytes(), model.image_len())
    }

    /// [`Sampler::arena_bytes`] plus [`Model::weight_cache_bytes`]: an arena
    /// this long lets the sampler keep prepared weights across steps (x86_64
    /// hosts with AVX2: the Winograd layers' transformed weights, filled by the
    /// first step; elsewhere the cache is empty and this is `arena_bytes`). The
    /// samples are the same bits either way.
    pub fn arena_bytes_with_cache(model: &Model<'_>) -> usize {
        Self::arena_bytes(model).saturating_add(model.weight_cache_bytes())
    }

    fn state_offset(model: &Model<'_>) -> usize {
        (model.arena_bytes() as usize).saturating_add(3) & !3
    }

    /// Number of denoising steps `cfg` runs on `model`.
    pub fn total_steps(model: &Model<'_>, cfg: &SamplerConfig) -> u32 {
        match cfg.mode {
            Mode::Ddpm => model.timesteps(),
            Mode::Ddim { steps, .. } => steps,
        }
    }

    /// Creates a sampler and draws the initial noise `x_T ~ N(0, I)`.
    ///
    /// # Errors
    /// [`Error::ArenaTooSmall`] (with the size needed) if `arena` is shorter than
    /// [`Sampler::arena_bytes`]; [`Error::BadConfig`] for DDIM steps outside
    /// `1..=T` or η above 1.
    pub fn new(model: &Model<'m>, arena: &'a mut [u8], cfg: SamplerConfig) -> Result<Self, Error> {
        let need = Self::arena_bytes(model);
        if arena.len() < need {
            return Err(Error::ArenaTooSmall { needed: need as u32, got: arena.len() as u32 });
        }
        if let Mode::Ddim { steps, eta_q16 } = cfg.mode {
            if steps == 0 || steps > model.timesteps() {
                return Err(Error::BadConfig { what: "DDIM steps not in 1..=T" });
            }
            if eta_q16 > 1 << 16 {
                return Err(Error::BadConfig { what: "eta_q16 above 65536 (η > 1)" });
            }
        }
        let cache_len = model.weight_cache_bytes();
        let cache = if cache_len > 0 && arena.len() >= need.saturating_add(cache_len) {
            (need, cache_len)
        } else {
            (need, 0)
        };
        let mut s = Sampler {
            model: *model,
            arena,
            cfg,
            rng: Xoshiro128::new(cfg.seed),
            remaining: Self::total_steps(model, &cfg),
            n: model.image_len(),
            state_off: Self::state_offset(model),
            cache,
            primed: false,
        };
        let f = model.state_frac_bits();
        for i in 0..s.n {
            let z = s.rng.gaussian(f);
            s.put(i, z);
        }
        Ok(s)
    }

    #[inline]
    fn get(&self, i: usize) -> i32 {
        crate::format::read_i32(self.arena, self.state_off + 4 * i).unwrap_or(0)
    }

    #[inline]
    fn put(&mut self, i: usize, v: i32) {
        let o = self.state_off + 4 * i;
        if let Some(d) = self.arena.get_mut(o..o + 4) {
            d.iter_mut().zip(v.to_le_bytes()).for_each(|(d, b)| *d = b);
        }
    }

    /// Steps still to run.
    pub fn remaining_steps(&self) -> u32 {
        self.remaining
    }

    /// Network timestep (0-based) used by step `j` (steps count down to 0).
    pub fn timestep_of(&self, j: u32) -> u32 {
        match self.cfg.mode {
            Mode::Ddpm => j,
            Mode::Ddim { steps, .. } => {
                (j as u64 * self.model.timesteps() as u64 / steps.max(1) as u64) as u32
            }
        }
    }

    /// Copies the state (Q`F` i32, one per image element) into `out`.
    ///
    /// # Errors
    /// [`Error::BufferSize`] if `out.len()` is not the image size.
    pub fn read_state(&self, out: &mut [i32]) -> Result<(), Error> {
        if out.len() != self.n {
            return Err(Error::BufferSize { needed: self.n as u32, got: out.len() as u32 });
        }
        for (i, o) in out.iter_mut().enumerate() {
            *o = self.get(i);
        }
        Ok(())
    }

    /// Overwrites the state (e.g. with a float trajectory's x_t in Q`F`).
    ///
    /// # Errors
    /// [`Error::BufferSize`] if `x.len()` is not the image size.
    pub fn set_state(&mut self, x: &[i32]) -> Result<(), Error> {
        if x.len() != self.n {
            return Err(Error::BufferSize { needed: self.n as u32, got: x.len() as u32 });
        }
        for (i, &v) in x.iter().enumerate() {
            self.put(i, v);
        }
        Ok(())
    }

    /// Sets how many steps remain (the next step runs step `remaining − 1`).
    ///
    /// # Errors
    /// [`Error::BadConfig`] if above the total step count.
    pub fn set_remaining_steps(&mut self, remaining: u32) -> Result<(), Error> {
        if remaining > Self::total_steps(&self.model, &self.cfg) {
            return Err(Error::BadConfig { what: "remaining steps above the total" });
        }
        self.remaining = remaining;
        Ok(())
    }

    /// The quantized ε of the last network run (the output tensor; int8 or int16).
    ///
    /// # Errors
    /// Only if the arena were inconsistent with the model (not after `new`).
    pub fn eps(&self) -> Result<TensorView<'_>, Error> {
        self.model.tensor_view(self.arena, self.model.output_tensor())
    }

    /// The network input of the last run (quantized x_t; int8 or int16).
    ///
    /// # Errors
    /// As [`Sampler::eps`].
    pub fn input(&self) -> Result<TensorView<'_>, Error> {
        self.model.tensor_view(self.arena, self.model.input_tensor())
    }

    /// Requantizes the state into the network input and runs the network at
    /// timestep `t`; returns ε (int8). The state is not changed.
    ///
    /// # Errors
    /// [`Error::BadTimestep`] if `t ≥ T`.
    pub fn predict_eps(&mut self, t: u32, hooks: &mut impl Hooks) -> Result<TensorView<'_>, Error> {
        let (mult, shift) = self.model.input_requant();
        let inp = self.model.tensor_info(self.model.input_tensor())?;
        let zp = inp.zero_point;
        let got = self.arena.len() as u32;
        let (cache_off, cache_len) = self.cache;
        let (main, rest) = self
            .arena
            .split_at_mut_checked(cache_off)
            .ok_or(Error::ArenaTooSmall { needed: cache_off as u32, got })?;
        let (net, state) = main
            .split_at_mut_checked(self.state_off)
            .ok_or(Error::ArenaTooSmall { needed: self.state_off as u32, got })?;
        let x = self.model.tensor_bytes_mut(net, self.model.input_tensor())?;
        let rq = crate::ops::numerics::Rq::new(mult, shift);
        let q = |s: &[u8]| {
            zp.saturating_add(rq.apply(i32::from_le_bytes(s.try_into().unwrap_or([0; 4]))))
        };
        if inp.int16 {
            for (d, s) in x.chunks_exact_mut(2).zip(state.chunks_exact(4)) {
                d.copy_from_slice(&(q(s).clamp(-32768, 32767) as i16).to_le_bytes());
            }
        } else {
            for (d, s) in x.iter_mut().zip(state.chunks_exact(4)) {
                *d = sat8(q(s), -128, 127) as u8;
            }
        }
        #[cfg(all(ddpm_wide, feature = "std", target_arch = "x86_64"))]
        if cache_len > 0 {
            let bytes = rest.get_mut(..cache_len).unwrap_or(&mut []);
            let mut c = crate::interp::WeightCache::new(bytes, self.primed);
            self.model.forward_cached(net, t, hooks, &mut c)?;
            self.primed = true;
            return self.eps();
        }
        let _ = (rest, cache_len);
        self.model.forward(net, t, hooks)?;
        self.eps()
    }

    /// Runs one denoising step. Returns `Some(j)` for the step just run (counting
    /// down to 0) or `None` when sampling had already finished.
    ///
    /// # Errors
    /// Errors of [`Model::forward`].
    pub fn step(&mut self, hooks: &mut impl Hooks) -> Result<Option<u32>, Error> {
        if self.remaining == 0 {
            return Ok(None);
        }
        let j = self.remaining - 1;
        let t = self.timestep_of(j);
        hooks.step_start(j, t);
        self.predict_eps(t, hooks)?;
        match self.cfg.mode {
            Mode::Ddpm => self.update_ddpm(t),
            Mode::Ddim { eta_q16, .. } => {
                let prev = if j == 0 { None } else { Some(self.timestep_of(j - 1)) };
                self.update_ddim(t, prev, eta_q16)
            }
        }
        self.remaining = j;
        hooks.step_end(j, t);
        Ok(Some(j))
    }

    /// Runs all remaining steps.
    ///
    /// # Errors
    /// Errors of [`Sampler::step`].
    pub fn run(&mut self, hooks: &mut impl Hooks) -> Result<(), Error> {
        while self.step(hooks)?.is_some() {}
        Ok(())
    }

    fn tab(&self, k: usize, t: u32) -> (i64, u32) {
        (
            self.model.sched(k, t).unwrap_or(0) as i64,
            self.model.schedule_frac_bits(k).unwrap_or(0) as u32,
        )
    }

    /// Applies `f(x, ε, rng)` to every state element; `ε` is the last network
    /// output in the state format, `((q − zp)·m + 2^15) >> 16`.
    fn update(&mut self, mut f: impl FnMut(i64, i64, &mut Xoshiro128) -> i64) {
        let out = self.model.tensor_info(self.model.output_tensor()).ok();
        let zp = out.map(|o| o.zero_point).unwrap_or(0) as i64;
        let m = self.model.eps_to_state_q16();
        let Some((net, state)) = self.arena.split_at_mut_checked(self.state_off) else {
            return;
        };
        let eps = out
            .and_then(|o| net.get(o.arena_offset as usize..(o.arena_offset + o.size) as usize))
            .unwrap_or(&[]);
        let eps = TensorView::new(eps, out.is_some_and(|o| o.int16));
        let rng = &mut self.rng;
        for (s, q) in state.chunks_exact_mut(4).take(self.n).zip(eps.iter()) {
            let x = i32::from_le_bytes(s.try_into().unwrap_or([0; 4])) as i64;
            // Saturating: a hostile eps_to_state_q16 must not overflow (valid ones never do).
            let e = (q as i64 - zp).saturating_mul(m).saturating_add(1 << 15) >> 16;
            s.iter_mut().zip(sat32(f(x, e, rng)).to_le_bytes()).for_each(|(d, b)| *d = b);
        }
    }

    /// Coefficients of x̂₀ = (x − √(1−ᾱ)·ε)/√ᾱ at `t`.
    fn x0_coeffs(&self, t: u32) -> X0 {
        let (sa, fa) = self.tab(table::SQRT_ALPHA_BAR, t);
        let (so, fo) = self.tab(table::SQRT_ONE_MINUS_ALPHA_BAR, t);
        let clip = if self.cfg.clip_x0 { Some(1i64 << self.model.state_frac_bits()) } else { None };
        X0 { sa, fa, so, fo, clip }
    }

    fn update_ddpm(&mut self, t: u32) {
        let f = self.model.state_frac_bits();
        let sig_k = match self.cfg.sigma {
            Sigma::Beta => Some(table::SIGMA_BETA),
            Sigma::BetaTilde => Some(table::SIGMA_BETA_TILDE),
            Sigma::Zero => None,
        };
        // z = 0 at the last step (t = 0): no draw at all.
        let sig = sig_k.filter(|_| t > 0).map(|k| self.tab(k, t));
        let (c1, f1) = self.tab(table::C1, t);
        let (c2, f2) = self.tab(table::C2, t);
        let (p0, g0) = self.tab(table::POST_X0, t);
        let (pt, gt) = self.tab(table::POST_XT, t);
        let x0c = self.x0_coeffs(t);
        let clip = self.cfg.clip_x0;
        self.update(|x, e, rng| {
            let mean = if clip {
                mul_q(p0, x0c.eval(x, e), g0).saturating_add(mul_q(pt, x, gt))
            } else {
                mul_q(c1, x.saturating_sub(mul_q(c2, e, f2)), f1)
            };
            match sig {
                Some((s, fs)) => mean.saturating_add(mul_q(s, rng.gaussian(f) as i64, fs)),
                None => mean,
            }
        });
    }

    /// DDIM coefficients `(√ᾱ_prev, √(1−ᾱ_prev−σ²), σ)`, all Q30, from the
    /// √ᾱ and √(1−ᾱ) tables with integer square roots (bit-exact everywhere):
    /// with Q60 values `ᾱ_t, 1−ᾱ_t` (squares of the tables) and `ᾱ_prev = 1`,
    /// `1−ᾱ_prev = 0` past the first timestep,
    /// `σ² = η²·((1−ᾱ_prev)/(1−ᾱ_t))·(1 − ᾱ_t/ᾱ_prev)` (Q60, each ratio floored),
    /// clamped to `1−ᾱ_prev`; every root is `isqrt` of the Q60 value.
    pub fn ddim_coeffs(&self, t: u32, prev: Option<u32>, eta_q16: u32) -> (i64, i64, i64) {
        let one = 1u128 << 60;
        let q60 = |k: usize, i: u32| {
            sq_q60(
                self.model.sched(k, i).unwrap_or(0),
                self.model.schedule_frac_bits(k).unwrap_or(0),
            )
        };
        let ab_t = q60(table::SQRT_ALPHA_BAR, t);
        let om_t = q60(table::SQRT_ONE_MINUS_ALPHA_BAR, t);
        let (ab_p, om_p) = match prev {
            Some(p) => (q60(table::SQRT_ALPHA_BAR, p), q60(table::SQRT_ONE_MINUS_ALPHA_BAR, p)),
            None => (one, 0),
        };
        let s2 = if eta_q16 == 0 || om_t == 0 || ab_p == 0 {
            0
        } else {
            let r1 = om_p.saturating_mul(one) / om_t;
            let r2 = one - (ab_t.saturating_mul(one) / ab_p).min(one);
            let base = r1.saturating_mul(r2) >> 60;
            let eta2 = eta_q16 as u128 * eta_q16 as u128; // Q32
            (base.saturating_mul(eta2) >> 32).min(om_p)
        };
        let sab_p = isqrt_u128(ab_p) as i64;
        let dir = isqrt_u128(om_p - s2) as i64;
        let sigma = isqrt_u128(s2) as i64;
        (sab_p, dir, sigma)
    }

    fn update_ddim(&mut self, t: u32, prev: Option<u32>, eta_q16: u32) {
        let f = self.model.state_frac_bits();
        let (sab_p, dir, sigma) = self.ddim_coeffs(t, prev, eta_q16);
        let x0c = self.x0_coeffs(t);
        self.update(|x, e, rng| {
            let v = mul_q(sab_p, x0c.eval(x, e), 30).saturating_add(mul_q(dir, e, 30));
            if sigma > 0 {
                v.saturating_add(mul_q(sigma, rng.gaussian(f) as i64, 30))
            } else {
                v
            }
        });
    }

    /// Writes the image as u8 pixels: `round((clip(x, −1, 1) + 1)·127.5)`.
    ///
    /// # Errors
    /// [`Error::BufferSize`] if `out.len()` is not the image size.
    pub fn pixels(&self, out: &mut [u8]) -> Result<(), Error> {
        if out.len() != self.n {
            return Err(Error::BufferSize { needed: self.n as u32, got: out.len() as u32 });
        }
        let f = self.model.state_frac_bits();
        for (i, o) in out.iter_mut().enumerate() {
            *o = state_to_pixel(self.get(i), f);
        }
        Ok(())
    }

    /// The configuration.
    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// The network arena part (for inspecting tensors with [`Model::tensor`]).
    pub fn network_arena(&self) -> &[u8] {
        self.arena.get(..self.state_off).unwrap_or(&[])
    }
}

/// [`Sampler::arena_bytes`] from the header's `arena_bytes` and the image element
/// count, usable in constants: `(net_arena + 3) & !3` plus 4 bytes per element.
pub const fn arena_bytes_for(net_arena: u32, image_len: usize) -> usize {
    ((net_arena as usize).saturating_add(3) & !3).saturating_add(image_len.saturating_mul(4))
}

/// [`Sampler::arena_bytes`] read straight from artifact bytes, usable in a
/// constant (`include_bytes!`): header `arena_bytes` plus the state for the MODEL
/// section's image size. Returns 0 if the bytes are too short or have no MODEL
/// section; [`Sampler::new`] still validates everything at run time.
///
/// ```
/// # #[cfg(feature = "std")] {
/// # let artifact = ddpm_runtime::doc_artifact();
/// # let model = ddpm_runtime::Model::load(&artifact).unwrap();
/// use ddpm_runtime::sampler::arena_bytes_of_artifact;
/// assert_eq!(arena_bytes_of_artifact(&artifact), ddpm_runtime::Sampler::arena_bytes(&model));
/// # }
/// ```
#[allow(clippy::indexing_slicing)] // every index is checked against the length first
pub const fn arena_bytes_of_artifact(bytes: &[u8]) -> usize {
    const fn u32_at(b: &[u8], o: usize) -> u32 {
        if o.saturating_add(4) > b.len() {
            return 0;
        }
        u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
    }
    if bytes.len() < crate::format::HEADER_SIZE {
        return 0;
    }
    let count = (bytes[12] as usize) | (bytes[13] as usize) << 8;
    let mut i = 0;
    while i < count && i < crate::format::MAX_SECTIONS as usize {
        let e = crate::format::HEADER_SIZE + i * crate::format::SECTION_ENTRY_SIZE;
        if u32_at(bytes, e) == crate::format::section::MODEL {
            let m = u32_at(bytes, e + 4) as usize;
            let n = (u32_at(bytes, m.saturating_add(40)) as usize)
                .saturating_mul(u32_at(bytes, m.saturating_add(44)) as usize)
                .saturating_mul(u32_at(bytes, m.saturating_add(48)) as usize);
            return arena_bytes_for(u32_at(bytes, 24), n);
        }
        i += 1;
    }
    0
}

/// `round((clip(x, −1, 1) + 1)·127.5)` for a Q`f` state value.
pub fn state_to_pixel(x: i32, f: u32) -> u8 {
    let f = f.min(30);
    let one = 1i64 << f;
    let v = (x as i64).clamp(-one, one) + one; // [0, 2^(f+1)]
    ((v * 255 + one) >> (f + 1)) as u8
}

/// x̂₀ coefficients: √ᾱ (Q`fa`), √(1−ᾱ) (Q`fo`), optional clip bound.
#[derive(Clone, Copy)]
struct X0 {
    sa: i64,
    fa: u32,
    so: i64,
    fo: u32,
    clip: Option<i64>,
}

impl X0 {
    /// `round((x·2^fo − so·ε)·2^fa / (sa·2^fo))` in Q`F` (half away from zero).
    fn eval(&self, x: i64, e: i64) -> i64 {
        let num = ((x as i128) << self.fo) - self.so as i128 * e as i128;
        let x0 = if self.fa == self.fo && num.unsigned_abs() < 1 << 62 {
            // Same quotient with the common 2^f taken out of both: an i64 division
            // instead of an i128 one (see `div_round_common_shift`).
            div_round_i64(num as i64, self.sa) as i128
        } else {
            div_round(num << self.fa, (self.sa as i128) << self.fo)
        };
        let x0 = x0.clamp(i64::MIN as i128, i64::MAX as i128) as i64;
        match self.clip {
            Some(one) => x0.max(-one).min(one),
            None => x0,
        }
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use crate::interp::NoHooks;

    /// β of `doc_artifact`'s schedule (linear 0.1 → 0.5 over T = 4), in f64.
    fn betas() -> [f64; 4] {
        core::array::from_fn(|i| 0.1 + 0.4 * i as f64 / 3.0)
    }

    fn alpha_bar(i: i64) -> f64 {
        (0..=i).map(|j| 1.0 - betas()[j as usize]).product()
    }

    #[test]
    fn div_round_common_shift() {
        let mut r = crate::ops::numerics::testutil::Rng(9);
        for i in 0..200_000u64 {
            let d = match i % 3 {
                0 => (r.next() >> 34) as i64 | 1,
                1 => ((r.next() >> 34) as i64) & !1,
                _ => (r.next() % 64) as i64 + 1,
            };
            // Include exact ties n = d·k + d/2 and their neighbours.
            let n = if i % 5 == 0 {
                let k = (r.next() >> 40) as i64 - (1 << 23);
                d * k + d / 2 + (r.next() % 3) as i64 - 1
            } else {
                (r.next() as i64) >> (2 + (i % 40))
            };
            let f = (i % 31) as u32;
            let want = div_round((n as i128) << f, (d as i128) << f);
            assert_eq!(div_round_i64(n, d) as i128, want, "n={n} d={d} f={f}");
        }
    }

    /// One update with a given ε, against the f64 formulas of DESIGN.md.
    fn check(cfg: SamplerConfig, t: u32, prev: Option<u32>) {
        let bytes = crate::format::writer::doc_artifact();
        let model = Model::load(&bytes).unwrap();
        let mut arena = std::vec![0u8; Sampler::arena_bytes(&model)];
        let mut s = Sampler::new(&model, &mut arena, cfg).unwrap();
        let f = (1u64 << 24) as f64;
        let xs = [-1.4, -0.3, 0.45, 1.2];
        let qs: [i8; 4] = [-100, -7, 33, 90];
        let state: std::vec::Vec<i32> = xs.iter().map(|x| (x * f) as i32).collect();
        s.set_state(&state).unwrap();
        let out = model.output_tensor();
        let eps = model.tensor_mut(s.arena, out).unwrap();
        eps.copy_from_slice(&qs);
        match cfg.mode {
            Mode::Ddpm => s.update_ddpm(t),
            Mode::Ddim { eta_q16, .. } => s.update_ddim(t, prev, eta_q16),
        }
        let mut got = [0i32; 4];
        s.read_state(&mut got).unwrap();
        let s_eps = (0.03 * 2f64.powi(40)).floor() / 2f64.powi(40); // as stored
        let (i, b) = (t as i64, betas()[t as usize]);
        let (ab, ab_prev) = (alpha_bar(i), if i > 0 { alpha_bar(i - 1) } else { 1.0 });
        for k in 0..4 {
            let x = state[k] as f64 / f;
            let e = qs[k] as f64 * s_eps;
            let mut x0 = (x - (1.0 - ab).sqrt() * e) / ab.sqrt();
            if cfg.clip_x0 {
                x0 = x0.clamp(-1.0, 1.0);
            }
            let want = match cfg.mode {
                Mode::Ddpm if cfg.clip_x0 => {
                    let c0 = b * ab_prev.sqrt() / (1.0 - ab);
                    let ct = (1.0 - b).sqrt() * (1.0 - ab_prev) / (1.0 - ab);
                    c0 * x0 + ct * x
                }
                Mode::Ddpm => (x - b / (1.0 - ab).sqrt() * e) / (1.0 - b).sqrt(),
                Mode::Ddim { .. } => {
                    let abp = prev.map(|p| alpha_bar(p as i64)).unwrap_or(1.0);
                    abp.sqrt() * x0 + (1.0 - abp).sqrt() * e
                }
            };
            // A few Q24 LSB (6e-8 each) from the Q30 tables and the roundings.
            let err = (got[k] as f64 / f - want).abs();
            assert!(err < 1e-6, "{cfg:?} t={t} element {k}: got {} want {want}", got[k] as f64 / f);
        }
        // ε as the host sees it is the int8 output tensor.
        assert_eq!(s.eps().unwrap().as_i8().unwrap(), &qs);
        let _ = s.predict_eps(0, &mut NoHooks).unwrap();
    }

    #[test]
    fn updates_match_f64() {
        let base = SamplerConfig { seed: 3, mode: Mode::Ddpm, sigma: Sigma::Zero, clip_x0: false };
        for t in 0..4 {
            check(base, t, None);
            check(SamplerConfig { clip_x0: true, ..base }, t, None);
        }
        let ddim = SamplerConfig { mode: Mode::Ddim { steps: 4, eta_q16: 0 }, ..base };
        for (t, prev) in [(3, Some(2)), (2, Some(0)), (1, None), (0, None)] {
            check(ddim, t, prev);
            check(SamplerConfig { clip_x0: true, ..ddim }, t, prev);
        }
    }

    #[test]
    fn ddim_timesteps_are_evenly_spaced() {
        let bytes = crate::format::writer::doc_artifact();
        let model = Model::load(&bytes).unwrap();
        let mut arena = std::vec![0u8; Sampler::arena_bytes(&model)];
        let cfg = SamplerConfig {
            seed: 0,
            mode: Mode::Ddim { steps: 3, eta_q16: 0 },
            sigma: Sigma::Beta,
            clip_x0: false,
        };
        let s = Sampler::new(&model, &mut arena, cfg).unwrap();
        assert_eq!([s.timestep_of(2), s.timestep_of(1), s.timestep_of(0)], [2, 1, 0]);
        let cfg = SamplerConfig { mode: Mode::Ddim { steps: 2, eta_q16: 0 }, ..cfg };
        let s = Sampler::new(&model, &mut arena, cfg).unwrap();
        assert_eq!([s.timestep_of(1), s.timestep_of(0)], [2, 0]);
        let bad = SamplerConfig { mode: Mode::Ddim { steps: 5, eta_q16: 0 }, ..cfg };
        assert!(Sampler::new(&model, &mut arena, bad).is_err());
        let bad = SamplerConfig { mode: Mode::Ddim { steps: 2, eta_q16: 65537 }, ..cfg };
        assert!(Sampler::new(&model, &mut arena, bad).is_err());
    }
}
