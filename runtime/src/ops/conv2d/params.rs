//! [`Conv2dParams`]: the scalar parameters of a CONV2D, shared by every kernel.

/// Scalar parameters of a CONV2D.
#[derive(Clone, Copy, Debug)]
pub struct Conv2dParams {
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride (rows).
    pub sh: usize,
    /// Stride (cols).
    pub sw: usize,
    /// Top padding.
    pub pt: usize,
    /// Left padding.
    pub pl: usize,
    /// Input zero point.
    pub in_zp: i32,
    /// Output zero point.
    pub out_zp: i32,
    /// Activation min.
    pub act_min: i32,
    /// Activation max.
    pub act_max: i32,
}
