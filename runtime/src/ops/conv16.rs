//! CONV2D with an int16 input (16×8: int16 activations, int8 weights), output int8
//! or int16. Semantics are `docs/FORMAT.md`'s CONV2D with `in_zp = 0`; the loader
//! bounds `kh·kw·ic` by 511 so the i32 accumulator is exact.
//!
//! [`conv2d_i16`] picks the kernel for the target; every kernel is bit-exact with
//! the portable one, [`super::wide::conv2d`].

use super::conv2d::Conv2dParams;
use super::wide::{self, E16, E8};

/// Runs the convolution: `x` is `[h, w, ic]` int16 little-endian bytes, `y` is
/// `[oh, ow, oc]` int16 (`y_int16`) or int8 bytes; weights `[oc][kh][kw][ic]` int8;
/// `bias`/`mult`/`shift` LE i32 arrays (`bias` may be empty). `scratch` (4·oc
/// bytes) is free for target kernels.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_i16(
    x: &[u8],
    in_shape: [usize; 3],
    y: &mut [u8],
    y_int16: bool,
    out_shape: [usize; 3],
    p: &Conv2dParams,
    w: &[i8],
    bias: &[u8],
    mult: &[u8],
    shift: &[u8],
    scratch: &mut [u8],
) {
    let _ = scratch;
    if y_int16 {
        wide::conv2d::<E16, E16>(x, in_shape, y, out_shape, p, w, bias, mult, shift);
    } else {
        wide::conv2d::<E16, E8>(x, in_shape, y, out_shape, p, w, bias, mult, shift);
    }
}
