//! The lowered graph: the runtime's op set in float, NHWC, batch 1.
//!
//! Every tensor is a dense `h × w × c` buffer; ops run in list order. The float
//! interpreter in `quantize::interp` executes this IR and is checked against tract.

/// A lowered tensor: a dense NHWC buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Name of the tract outlet (or derived name) it comes from.
    pub name: String,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
    /// Channels.
    pub c: usize,
}

impl Tensor {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.h * self.w * self.c
    }
    /// True when the tensor has no element (never in a valid graph).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// `[h, w, c]`.
    pub fn shape(&self) -> [usize; 3] {
        [self.h, self.w, self.c]
    }
}

/// Element strides of one MATMUL operand: `(batch, first, second)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Strides {
    /// Stride between batches.
    pub b: usize,
    /// Stride of the first matrix axis (rows).
    pub i: usize,
    /// Stride of the second matrix axis (columns).
    pub j: usize,
}

/// Scalar elementwise function applied through a 256-entry table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LutFn {
    /// `x · sigmoid(x)`.
    Silu,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
}

impl LutFn {
    /// The function itself (`exp` from the `libm` crate: the same bits on every host).
    pub fn eval(self, x: f32) -> f32 {
        let s = 1.0 / (1.0 + libm::expf(-x));
        match self {
            LutFn::Silu => x * s,
            LutFn::Sigmoid => s,
        }
    }
}

/// An op of the lowered graph with its float parameters.
#[derive(Clone, Debug, PartialEq)]
pub enum OpKind {
    /// Convolution; weights `[oc][kh][kw][ic]`, bias `[oc]`.
    Conv2d {
        /// Kernel height.
        kh: usize,
        /// Kernel width.
        kw: usize,
        /// Stride (h, w).
        stride: [usize; 2],
        /// Padding top, left, bottom, right.
        pad: [usize; 4],
        /// Weights `[oc][kh][kw][ic]`.
        weights: Vec<f32>,
        /// Bias `[oc]`.
        bias: Vec<f32>,
    },
    /// Group normalization with per-channel affine.
    GroupNorm {
        /// Number of groups.
        groups: usize,
        /// Variance epsilon.
        eps: f32,
        /// γ per channel.
        gamma: Vec<f32>,
        /// β per channel.
        beta: Vec<f32>,
    },
    /// Elementwise table lookup.
    Lut(LutFn),
    /// `a + b`; `broadcast`: `b` is `1×1×c`.
    Add {
        /// `b` is `1×1×c` added to every pixel.
        broadcast: bool,
    },
    /// `a · b`; `broadcast` as for add.
    Mul {
        /// `b` is `1×1×c`.
        broadcast: bool,
    },
    /// Concatenation along channels.
    Concat,
    /// Nearest-neighbour upsampling.
    Upsample {
        /// Factor (h, w).
        factor: [usize; 2],
    },
    /// Batched strided matrix product, scaled by `alpha`.
    MatMul {
        /// Batches.
        batch: usize,
        /// Rows of a / y.
        m: usize,
        /// Inner dimension.
        k: usize,
        /// Columns of b / y.
        n: usize,
        /// Strides of a (b, m, k).
        a: Strides,
        /// Strides of b (b, k, n).
        b: Strides,
        /// Strides of y (b, m, n).
        y: Strides,
        /// Positive scale folded into the product.
        alpha: f32,
    },
    /// Softmax over the last axis of `rows × len` contiguous values.
    Softmax {
        /// Rows.
        rows: usize,
        /// Row length.
        len: usize,
    },
    /// `y = table[t]`, `[timesteps][dim]`.
    TimestepEmbed {
        /// Number of timesteps.
        timesteps: usize,
        /// Embedding width.
        dim: usize,
        /// Float table, `timesteps × dim`.
        table: Vec<f32>,
    },
    /// `y = alpha · x` (a positive constant scale; quantized as a requantization).
    Scale {
        /// The factor.
        alpha: f32,
    },
}

impl OpKind {
    /// Short upper-case name, as in FORMAT.md.
    pub fn name(&self) -> &'static str {
        match self {
            OpKind::Conv2d { .. } => "CONV2D",
            OpKind::GroupNorm { .. } => "GROUP_NORM",
            OpKind::Lut(_) => "LUT",
            OpKind::Add { .. } => "ADD",
            OpKind::Mul { .. } => "MUL",
            OpKind::Concat => "CONCAT",
            OpKind::Upsample { .. } => "UPSAMPLE_NEAREST",
            OpKind::MatMul { .. } => "MATMUL",
            OpKind::Softmax { .. } => "SOFTMAX",
            OpKind::TimestepEmbed { .. } => "TIMESTEP_EMBED",
            OpKind::Scale { .. } => "REQUANT",
        }
    }
}

/// One op: kind, input tensor ids, output tensor id, and the tract node it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Op {
    /// What it computes.
    pub kind: OpKind,
    /// Input tensor ids.
    pub inputs: Vec<usize>,
    /// Output tensor id.
    pub output: usize,
    /// Name of the tract node it was lowered from.
    pub source: String,
}

/// The lowered graph.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Graph {
    /// All tensors.
    pub tensors: Vec<Tensor>,
    /// Ops in execution order.
    pub ops: Vec<Op>,
    /// The image input tensor.
    pub input: usize,
    /// The ε output tensor.
    pub output: usize,
    /// Timesteps the embedding table covers.
    pub timesteps: usize,
}

impl Graph {
    /// Adds a tensor and returns its id.
    pub fn add_tensor(&mut self, name: impl Into<String>, h: usize, w: usize, c: usize) -> usize {
        self.tensors.push(Tensor { name: name.into(), h, w, c });
        self.tensors.len() - 1
    }

    /// Multiply-accumulates of one op.
    pub fn macs(&self, op: &Op) -> u64 {
        let out = &self.tensors[op.output];
        match &op.kind {
            OpKind::Conv2d { kh, kw, .. } => {
                let ic = self.tensors[op.inputs[0]].c;
                (out.len() * kh * kw * ic) as u64
            }
            OpKind::MatMul { batch, m, k, n, .. } => (batch * m * k * n) as u64,
            _ => 0,
        }
    }

    /// Number of float parameters (conv weights and biases, norm affines, tables excluded).
    pub fn params(&self) -> usize {
        self.ops
            .iter()
            .map(|op| match &op.kind {
                OpKind::Conv2d { weights, bias, .. } => weights.len() + bias.len(),
                OpKind::GroupNorm { gamma, beta, .. } => gamma.len() + beta.len(),
                _ => 0,
            })
            .sum()
    }

    /// For each tensor, the ops that read it.
    pub fn consumers(&self) -> Vec<Vec<usize>> {
        let mut c = vec![Vec::new(); self.tensors.len()];
        for (i, op) in self.ops.iter().enumerate() {
            for &t in &op.inputs {
                c[t].push(i);
            }
        }
        c
    }

    /// For each tensor, the op that writes it (None for the input).
    pub fn producers(&self) -> Vec<Option<usize>> {
        let mut p = vec![None; self.tensors.len()];
        for (i, op) in self.ops.iter().enumerate() {
            p[op.output] = Some(i);
        }
        p
    }
}
