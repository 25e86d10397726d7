//! The activation element types of the mixed-precision (16×8) path: int8
//! ([`E8`]) and int16 little-endian ([`E16`]) tensors read and written as bytes,
//! element by element, so no alignment is assumed. Portable; every target.
//!
//! Activations are int8 or int16 (zero point 0 for int16), weights stay int8.
//! The kernels of an op that touches an int16 tensor are generic over the
//! element type of their input(s) and output and are monomorphized for every
//! combination the loader accepts.

/// An activation element type.
pub trait Elem: Copy {
    /// Smallest value.
    const MIN: i32;
    /// Largest value.
    const MAX: i32;
    /// Bytes per element.
    const BYTES: usize;
    /// Element `i` of `b` (0 when out of bounds).
    fn get(b: &[u8], i: usize) -> i32;
    /// Stores `v` (already in range) as element `i` of `b` (ignored when out of bounds).
    fn put(b: &mut [u8], i: usize, v: i32);
    /// Number of elements in `b`.
    #[inline]
    fn count(b: &[u8]) -> usize {
        b.len() / Self::BYTES
    }
    /// The elements of `b`, in order.
    fn iter(b: &[u8]) -> impl Iterator<Item = i32> + '_;
    /// Stores `v` (each already in range) as the first elements of `b`.
    fn put_all(b: &mut [u8], v: &[i32]);
    /// Clamps to `[lo, hi]` and to the type's range, then stores.
    #[inline]
    fn put_clamped(b: &mut [u8], i: usize, v: i32, lo: i32, hi: i32) {
        Self::put(b, i, v.max(lo).min(hi).clamp(Self::MIN, Self::MAX));
    }
}

/// int8 elements.
#[derive(Clone, Copy, Debug)]
pub struct E8;
/// int16 little-endian elements.
#[derive(Clone, Copy, Debug)]
pub struct E16;

impl Elem for E8 {
    const MIN: i32 = -128;
    const MAX: i32 = 127;
    const BYTES: usize = 1;
    #[inline(always)]
    fn iter(b: &[u8]) -> impl Iterator<Item = i32> + '_ {
        b.iter().map(|&v| v as i8 as i32)
    }
    #[inline(always)]
    fn put_all(b: &mut [u8], v: &[i32]) {
        for (d, &x) in b.iter_mut().zip(v) {
            *d = x as i8 as u8;
        }
    }
    #[inline(always)]
    fn get(b: &[u8], i: usize) -> i32 {
        b.get(i).map(|&v| v as i8 as i32).unwrap_or(0)
    }
    #[inline(always)]
    fn put(b: &mut [u8], i: usize, v: i32) {
        if let Some(d) = b.get_mut(i) {
            *d = v as i8 as u8;
        }
    }
}

impl Elem for E16 {
    const MIN: i32 = -32768;
    const MAX: i32 = 32767;
    const BYTES: usize = 2;
    #[inline(always)]
    fn iter(b: &[u8]) -> impl Iterator<Item = i32> + '_ {
        b.chunks_exact(2).map(|p| {
            i16::from_le_bytes([p.first().copied().unwrap_or(0), p.last().copied().unwrap_or(0)])
                as i32
        })
    }
    #[inline(always)]
    fn put_all(b: &mut [u8], v: &[i32]) {
        for (d, &x) in b.chunks_exact_mut(2).zip(v) {
            d.copy_from_slice(&(x as i16).to_le_bytes());
        }
    }
    #[inline(always)]
    fn get(b: &[u8], i: usize) -> i32 {
        match b.get(i.wrapping_mul(2)..i.wrapping_mul(2).wrapping_add(2)) {
            Some(&[lo, hi]) => i16::from_le_bytes([lo, hi]) as i32,
            _ => 0,
        }
    }
    #[inline(always)]
    fn put(b: &mut [u8], i: usize, v: i32) {
        if let Some(d) = b.get_mut(i.wrapping_mul(2)..i.wrapping_mul(2).wrapping_add(2)) {
            d.copy_from_slice(&(v as i16).to_le_bytes());
        }
    }
}
