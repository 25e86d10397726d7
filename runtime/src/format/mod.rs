//! The `.ddq` artifact format: constants, little-endian readers, CRC-32 and the
//! fixed-point helpers the converter must share with the kernels.
//!
//! `docs/FORMAT.md` is the specification; this module mirrors it.

#[cfg(feature = "std")]
pub mod writer;

/// File magic, the first 8 bytes of every artifact.
pub const MAGIC: [u8; 8] = *b"DDPMEDGE";
/// Format version written by this crate and the only one it reads.
pub const VERSION: u16 = 1;
/// Size of the fixed header in bytes.
pub const HEADER_SIZE: usize = 64;
/// Size of one section-table entry in bytes.
pub const SECTION_ENTRY_SIZE: usize = 16;
/// Alignment of every section and of every WEIGHTS entry written by the builder.
pub const SECTION_ALIGN: usize = 16;
/// Largest accepted section count.
pub const MAX_SECTIONS: u16 = 16;
/// Size of the MODEL section.
pub const MODEL_SIZE: usize = 64;
/// Size of one TENSORS record.
pub const TENSOR_RECORD_SIZE: usize = 32;
/// Size of the SCHEDULE header.
pub const SCHEDULE_HEADER_SIZE: usize = 32;
/// Number of SCHEDULE tables.
pub const SCHEDULE_TABLES: usize = 8;
/// Largest tensor and op count.
pub const MAX_TENSORS: u32 = 1024;
/// Largest op count.
pub const MAX_OPS: u32 = 1024;

/// Section kinds.
pub mod section {
    /// Graph summary, I/O, state format.
    pub const MODEL: u32 = 1;
    /// Tensor records.
    pub const TENSORS: u32 = 2;
    /// Op records.
    pub const OPS: u32 = 3;
    /// Weights, biases, multipliers, tables.
    pub const WEIGHTS: u32 = 4;
    /// Fixed-point schedule tables.
    pub const SCHEDULE: u32 = 5;
    /// UTF-8 JSON provenance (optional).
    pub const PROVENANCE: u32 = 6;
}

/// Opcodes (see FORMAT.md for params).
pub mod opcode {
    /// 2-D convolution (also linear layers as 1×1).
    pub const CONV2D: u16 = 1;
    /// Group normalization, integer only.
    pub const GROUP_NORM: u16 = 2;
    /// 256-entry int8 lookup table.
    pub const LUT: u16 = 3;
    /// Quantized elementwise add.
    pub const ADD: u16 = 4;
    /// Quantized elementwise multiply.
    pub const MUL: u16 = 5;
    /// Channel concatenation.
    pub const CONCAT: u16 = 6;
    /// Nearest-neighbour upsampling.
    pub const UPSAMPLE_NEAREST: u16 = 7;
    /// Strided batched matrix multiply.
    pub const MATMUL: u16 = 8;
    /// Softmax over the last axis.
    pub const SOFTMAX: u16 = 9;
    /// Timestep embedding table lookup.
    pub const TIMESTEP_EMBED: u16 = 10;
    /// Requantize.
    pub const REQUANT: u16 = 11;
    /// 513-entry int16 lookup table with linear interpolation (int16 → int16).
    pub const LUT16: u16 = 12;
}

/// TENSORS record flag: the tensor holds little-endian int16 elements (size is
/// `2·h·w·c` bytes, zero point 0, even arena offset). Without it, int8.
pub const TENSOR_INT16: u16 = 1;

/// Entries of a LUT16 table (`q + 32768` in steps of 128, plus the end point).
pub const LUT16_ENTRIES: usize = 513;

/// Largest `kh·kw·ic` of a CONV2D whose input is int16: `511·32768·127 < 2^31`, so
/// the i32 accumulator is exact.
pub const CONV_I16_MAX_K: usize = 511;

/// Schedule table indices (SCHEDULE section, FORMAT.md).
pub mod table {
    /// c1 = 1/√α.
    pub const C1: usize = 0;
    /// c2 = β/√(1−ᾱ).
    pub const C2: usize = 1;
    /// σ with σ² = β.
    pub const SIGMA_BETA: usize = 2;
    /// σ with σ² = β̃.
    pub const SIGMA_BETA_TILDE: usize = 3;
    /// √ᾱ.
    pub const SQRT_ALPHA_BAR: usize = 4;
    /// √(1−ᾱ).
    pub const SQRT_ONE_MINUS_ALPHA_BAR: usize = 5;
    /// Posterior coefficient of x̂₀.
    pub const POST_X0: usize = 6;
    /// Posterior coefficient of x_t.
    pub const POST_XT: usize = 7;
}

/// Number of i32 params an op takes, given its input count (`None`: unknown opcode).
pub const fn param_count(op: u16, n_inputs: usize) -> Option<usize> {
    Some(match op {
        opcode::CONV2D => 20,
        opcode::GROUP_NORM => 11,
        opcode::LUT => 2,
        opcode::ADD => 13,
        opcode::MUL => 8,
        opcode::CONCAT => 1 + 3 * n_inputs,
        opcode::UPSAMPLE_NEAREST => 2,
        opcode::MATMUL => 20,
        opcode::SOFTMAX => 4,
        opcode::TIMESTEP_EMBED => 4,
        opcode::REQUANT => 4,
        opcode::LUT16 => 2,
        _ => return None,
    })
}

/// Human-readable name of an opcode.
pub const fn opcode_name(op: u16) -> &'static str {
    match op {
        opcode::CONV2D => "CONV2D",
        opcode::GROUP_NORM => "GROUP_NORM",
        opcode::LUT => "LUT",
        opcode::ADD => "ADD",
        opcode::MUL => "MUL",
        opcode::CONCAT => "CONCAT",
        opcode::UPSAMPLE_NEAREST => "UPSAMPLE_NEAREST",
        opcode::MATMUL => "MATMUL",
        opcode::SOFTMAX => "SOFTMAX",
        opcode::TIMESTEP_EMBED => "TIMESTEP_EMBED",
        opcode::REQUANT => "REQUANT",
        opcode::LUT16 => "LUT16",
        _ => "UNKNOWN",
    }
}

/// Reads a little-endian `u16` at `off`, `None` if out of bounds.
#[inline]
pub fn read_u16(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_le_bytes([s.first().copied()?, s.get(1).copied()?]))
}

/// Reads a little-endian `u32` at `off`, `None` if out of bounds.
#[inline]
pub fn read_u32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    let a: [u8; 4] = s.try_into().ok()?;
    Some(u32::from_le_bytes(a))
}

/// Reads a little-endian `i32` at `off`, `None` if out of bounds.
#[inline]
pub fn read_i32(b: &[u8], off: usize) -> Option<i32> {
    read_u32(b, off).map(|v| v as i32)
}

/// Reads a little-endian `i64` at `off`, `None` if out of bounds.
#[inline]
pub fn read_i64(b: &[u8], off: usize) -> Option<i64> {
    let s = b.get(off..off.checked_add(8)?)?;
    let a: [u8; 8] = s.try_into().ok()?;
    Some(i64::from_le_bytes(a))
}

/// Reads a little-endian `f32` at `off`, `None` if out of bounds.
#[inline]
pub fn read_f32(b: &[u8], off: usize) -> Option<f32> {
    read_u32(b, off).map(f32::from_bits)
}

// Evaluated at compile time only; an out-of-range index would fail the build.
#[allow(clippy::indexing_slicing)]
const fn crc_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static CRC_TABLE: [u32; 256] = crc_table();

/// CRC-32 (ISO-HDLC: poly 0xEDB88320 reflected, init and xorout 0xFFFFFFFF).
///
/// `crc32(b"123456789") == 0xCBF4_3926`.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32_update(0xFFFF_FFFF, bytes) ^ 0xFFFF_FFFF
}

/// Feeds `bytes` into a running CRC-32 register (start with `0xFFFF_FFFF`, xor the
/// result with `0xFFFF_FFFF`).
pub fn crc32_update(mut c: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        let idx = ((c ^ b as u32) & 0xFF) as u8;
        c = CRC_TABLE.get(idx as usize).copied().unwrap_or(0) ^ (c >> 8);
    }
    c
}

/// Offset of the CRC field in the header.
pub const CRC_OFFSET: usize = 20;

/// The artifact checksum: CRC-32 of the whole file with the 4 CRC bytes
/// (offset 20) read as zero, so every header bit is covered too.
pub fn artifact_crc(file: &[u8]) -> u32 {
    let head = file.get(..CRC_OFFSET).unwrap_or(file);
    let tail = file.get(CRC_OFFSET + 4..).unwrap_or(&[]);
    let c = crc32_update(0xFFFF_FFFF, head);
    let c = crc32_update(c, &[0; 4]);
    crc32_update(c, tail) ^ 0xFFFF_FFFF
}

/// TFLite's `QuantizeMultiplier`: splits `real` into `(mult, shift)` with
/// `real ≈ mult · 2^(shift − 31)`, `|mult|` in `[2^30, 2^31)` (or 0 for `real == 0`),
/// shift positive = left. Shifts are clamped to `[-31, 30]`; a `real` too small for
/// that range gives `(0, 0)`.
pub fn quantize_multiplier(real: f64) -> (i32, i32) {
    if real == 0.0 || !real.is_finite() {
        return (0, 0);
    }
    let (frac, mut exp) = frexp(real);
    // frac in [0.5, 1): q = round(frac · 2^31)
    let mut q = libm::round(frac * 2_147_483_648.0) as i64;
    if q == 1i64 << 31 || q == -(1i64 << 31) {
        q /= 2;
        exp += 1;
    }
    if exp < -31 {
        return (0, 0);
    }
    if exp > 30 {
        let m = if q > 0 { i32::MAX } else { -i32::MAX };
        return (m, 30);
    }
    (q as i32, exp)
}

/// `frexp` for finite non-zero `x`: `x = frac · 2^exp`, `|frac|` in `[0.5, 1)`.
fn frexp(x: f64) -> (f64, i32) {
    let bits = x.to_bits();
    let e = ((bits >> 52) & 0x7FF) as i32;
    if e == 0 {
        // subnormal: scale up first
        let (f, e2) = frexp(x * 18_014_398_509_481_984.0); // 2^54
        return (f, e2 - 54);
    }
    let exp = e - 1022;
    let frac_bits = (bits & !(0x7FFu64 << 52)) | (1022u64 << 52);
    (f64::from_bits(frac_bits), exp)
}

/// gemmlowp `SaturatingRoundingDoublingHighMul`: `round(a·b / 2^31)` with
/// `a = b = i32::MIN` saturating to `i32::MAX`.
#[inline]
pub fn saturating_rounding_doubling_high_mul(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    // gemmlowp adds 2^30 (ab ≥ 0) or 1 − 2^30 (ab < 0) and divides by 2^31
    // truncating toward zero. For ab < 0 that is ⌈(ab + 1 − 2^30)/2^31⌉
    // = ⌊(ab + 2^30)/2^31⌋, the same floor as for ab ≥ 0: one arithmetic shift
    // (a multiply-accumulate and a funnel shift on 32-bit cores).
    ((a as i64 * b as i64 + (1i64 << 30)) >> 31) as i32
}

/// gemmlowp `RoundingDivideByPOT`: `x / 2^exponent` rounded half away from zero.
/// `exponent` is clamped to `0..=31`.
#[inline]
pub fn rounding_divide_by_pot(x: i32, exponent: i32) -> i32 {
    let e = exponent.clamp(0, 31) as u32;
    let mask = ((1i64 << e) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + i32::from(x < 0);
    (x >> e) + i32::from(remainder > threshold)
}

/// TFLite's reference `MultiplyByQuantizedMultiplier(x, mult, shift)`:
/// `RoundingDivideByPOT(SRDHM(x · 2^max(shift,0), mult), max(−shift,0))`.
///
/// The left shift saturates to the i32 range (TFLite leaves overflow undefined; the
/// converter never produces it for valid ranges). `shift` is clamped to `[-31, 30]`.
#[inline]
pub fn multiply_by_quantized_multiplier(x: i32, mult: i32, shift: i32) -> i32 {
    let shift = shift.clamp(-31, 30);
    if shift > 0 {
        // Right shift is 0 here; RoundingDivideByPOT(v, 0) = v.
        let shifted = ((x as i64) << shift).clamp(i32::MIN as i64, i32::MAX as i64) as i32;
        saturating_rounding_doubling_high_mul(shifted, mult)
    } else {
        // Left shift is 0 here (the common case: requantizing a wide accumulator).
        rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x, mult), -shift)
    }
}

/// Kernel scratch bytes the converter must reserve for an op (0 where none).
///
/// `in_shapes` and `out_shape` are `[h, w, c]`. CONV2D reserves one i32 per output
/// channel (per-channel sums for target kernels; the reference kernel keeps them on
/// the stack); every other op needs none. The loader rejects a smaller
/// `scratch_len`.
pub fn scratch_bytes(
    opcode: u16,
    in_shapes: &[[u16; 3]],
    out_shape: [u16; 3],
    params: &[i32],
) -> u32 {
    let _ = (in_shapes, params);
    match opcode {
        opcode::CONV2D => 4 * out_shape[2] as u32,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn quantize_multiplier_examples() {
        assert_eq!(quantize_multiplier(0.5), (1 << 30, 0));
        assert_eq!(quantize_multiplier(1.0), (1 << 30, 1));
        assert_eq!(quantize_multiplier(0.25), (1 << 30, -1));
        let (m, s) = quantize_multiplier(0.0123);
        assert!((1 << 30..=i32::MAX).contains(&m));
        let back = m as f64 * 2f64.powi(s - 31);
        assert!((back - 0.0123).abs() < 1e-11);
        let (m, _) = quantize_multiplier(-0.3);
        assert!(m < 0);
    }

    #[test]
    fn mbqm_matches_f64_within_one() {
        let mut s = 0x1234_5678_9abc_def0u64;
        for _ in 0..20000 {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let x = ((s >> 33) as i32) >> (s % 16);
            let real = ((s >> 8) % 1_000_000) as f64 / 1_000_000.0 * 0.99 + 0.001;
            let (m, sh) = quantize_multiplier(real);
            let got = multiply_by_quantized_multiplier(x, m, sh) as f64;
            let want = x as f64 * m as f64 * 2f64.powi(sh - 31);
            // Two roundings (SRDHM then RDBPOT) may each move half an LSB.
            assert!((got - want).abs() <= 1.0, "x={x} real={real} got={got} want={want}");
        }
    }

    /// The two-step definition, written out as in TFLite's reference.
    fn mbqm_reference(x: i32, mult: i32, shift: i32) -> i32 {
        let shift = shift.clamp(-31, 30);
        let left = if shift > 0 { shift } else { 0 };
        let right = if shift > 0 { 0 } else { -shift };
        let shifted = ((x as i64) << left).clamp(i32::MIN as i64, i32::MAX as i64) as i32;
        rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, mult), right)
    }

    #[test]
    fn mbqm_split_paths_match_reference() {
        let mut s = 99u64;
        let edge = [0, 1, -1, i32::MAX, i32::MIN, 1 << 30, -(1 << 30), 12345, -54321];
        for i in 0..200_000u32 {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let r = (s >> 16) as u32;
            let x = if i % 7 == 0 { edge[(r % 9) as usize] } else { (s >> 32) as i32 >> (r % 31) };
            let m = if i % 11 == 0 { edge[(r % 9) as usize] } else { (s as i32) | 1 << 30 };
            let sh = (r % 70) as i32 - 35;
            assert_eq!(
                multiply_by_quantized_multiplier(x, m, sh),
                mbqm_reference(x, m, sh),
                "x={x} m={m} shift={sh}"
            );
        }
    }

    /// gemmlowp's SRDHM as written there: sign-dependent nudge, truncating division.
    fn srdhm_gemmlowp(a: i32, b: i32) -> i32 {
        if a == i32::MIN && b == i32::MIN {
            return i32::MAX;
        }
        let ab = a as i64 * b as i64;
        let nudge = if ab >= 0 { 1i64 << 30 } else { 1 - (1i64 << 30) };
        ((ab + nudge) / (1i64 << 31)) as i32
    }

    #[test]
    fn srdhm_matches_gemmlowp() {
        let edge = [0, 1, -1, 2, -2, i32::MAX, i32::MIN, i32::MIN + 1, 1 << 30, -(1 << 30), 46341];
        for &a in &edge {
            for &b in &edge {
                assert_eq!(saturating_rounding_doubling_high_mul(a, b), srdhm_gemmlowp(a, b));
            }
        }
        let mut s = 7u64;
        for i in 0..1_000_000u32 {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let a = (s >> 32) as i32 >> (i % 32);
            let b = s as i32;
            assert_eq!(saturating_rounding_doubling_high_mul(a, b), srdhm_gemmlowp(a, b));
            // Products exactly at a rounding tie, both signs.
            let t = (s >> 40) as i32;
            for (x, y) in [(t, 1 << 30), (-t, 1 << 30), (t | 1, -(1 << 30))] {
                assert_eq!(saturating_rounding_doubling_high_mul(x, y), srdhm_gemmlowp(x, y));
            }
        }
    }

    #[test]
    fn rounding_divide_examples() {
        assert_eq!(rounding_divide_by_pot(5, 1), 3);
        assert_eq!(rounding_divide_by_pot(-5, 1), -3);
        assert_eq!(rounding_divide_by_pot(4, 1), 2);
        assert_eq!(rounding_divide_by_pot(-7, 2), -2);
    }
}
