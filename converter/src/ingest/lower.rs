//! Lowering tract's decluttered typed graph to the runtime op set ([`crate::ingest::ir`]).
//!
//! Every tract outlet maps to a [`Val`]. Activations are views on NHWC tensors: a
//! logical shape with per-axis element strides and an offset, so reshapes, axis moves
//! and channel slices cost nothing; only ops that compute emit IR ops. The group norm
//! tract decomposes (reshape → mean → centre → RMS-normalize → reshape) is tracked as
//! a small state machine on the grouped value. Everything that depends only on `t`
//! up to the first learned layer becomes one TIMESTEP_EMBED table.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{anyhow, bail, ensure, Context, Result};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::DimLike;
use tract_onnx::tract_core::ops::array::{Slice, TypedConcat};
use tract_onnx::tract_core::ops::change_axes::AxisOp;
use tract_onnx::tract_core::ops::cnn::conv::Conv;
use tract_onnx::tract_core::ops::cnn::{KernelFormat, PaddingSpec};
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::nn::{
    DataFormat, NearestUpsample, Reduce, Reducer, RmsNorm, Softmax,
};

use crate::ingest::ir::{Graph, LutFn, Op, OpKind, Strides};

/// A strided view on an IR tensor.
#[derive(Clone, Debug, PartialEq)]
struct View {
    t: usize,
    dims: Vec<usize>,
    strides: Vec<usize>,
    off: usize,
    /// No other reader can see the tensor: folding into its producer is safe.
    excl: bool,
}

/// Progress through tract's decomposition of a group norm on `[1, G, X]`.
#[derive(Clone, Debug, PartialEq)]
enum Stage {
    /// The reshaped input.
    Raw,
    /// Σ over the group.
    Sum,
    /// Mean over the group.
    Mean,
    /// x − μ.
    Centered,
    /// (x − μ)².
    Squared,
    /// Σ (x − μ)².
    SqSum,
    /// σ².
    Var,
    /// σ² + ε.
    VarEps(f32),
    /// 1/√(σ² + ε).
    InvStd(f32),
    /// Normalized (a GROUP_NORM output, possibly followed by elementwise ops).
    Normed,
}

#[derive(Clone, Debug)]
struct Grouped {
    t: usize,
    groups: usize,
    stage: Stage,
    excl: bool,
    /// Logical dims and strides of the view the group norm was entered from, so the
    /// exit reshape can restore that view (e.g. `[1, C, H·W]` in attention blocks).
    entry: (Vec<usize>, Vec<usize>),
}

#[derive(Clone, Debug)]
enum Val {
    /// Depends on `t` only; evaluated into the embedding table, not lowered.
    TimeOnly,
    /// A constant.
    Const(Arc<Tensor>),
    /// An activation.
    Act(View),
    /// A group-norm in progress (tract's reshape to `[1, G, X]`).
    Group(Grouped),
}

/// Result of lowering: the IR graph.
pub struct Lowered {
    /// The graph.
    pub graph: Graph,
}

struct Ctx<'a> {
    model: &'a TypedModel,
    g: Graph,
    vals: HashMap<OutletId, Val>,
    /// Producer op of each tensor.
    producer: Vec<Option<usize>>,
    /// Ops removed by fusions.
    dead: Vec<bool>,
}

fn shape_of(model: &TypedModel, o: OutletId) -> Result<Vec<usize>> {
    let f = model.outlet_fact(o)?;
    f.shape.as_concrete().map(|s| s.to_vec()).ok_or_else(|| anyhow!("dynamic shape {:?}", f.shape))
}

fn floats(t: &Tensor, what: &str) -> Result<Vec<f32>> {
    let c = t.cast_to::<f32>()?;
    let v: Vec<f32> = c.to_plain_array_view::<f32>()?.iter().copied().collect();
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        bail!("{what} holds a non-finite value ({}) at index {i}", v[i]);
    }
    Ok(v)
}

fn row_major(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![0; dims.len()];
    let mut acc = 1;
    for i in (0..dims.len()).rev() {
        s[i] = if dims[i] == 1 { 0 } else { acc };
        acc *= dims[i];
    }
    s
}

/// Logical channel/height/width interpretation of a shape by rank (NCHW, CHW, NC, C).
fn chw_of(dims: &[usize]) -> Option<(usize, usize, usize)> {
    match dims.len() {
        4 if dims[0] == 1 => Some((dims[1], dims[2], dims[3])),
        3 => Some((dims[0], dims[1], dims[2])),
        2 if dims[0] == 1 => Some((dims[1], 1, 1)),
        1 => Some((dims[0], 1, 1)),
        0 => Some((1, 1, 1)),
        _ => None,
    }
}

/// Strides of the canonical spatial view of an NHWC tensor with `ct` channels and
/// width `w`, for a logical shape interpreted by [`chw_of`].
fn spatial_strides(dims: &[usize], ct: usize, w: usize) -> Vec<usize> {
    let mut s = vec![0; dims.len()];
    let r = dims.len();
    let set = |s: &mut Vec<usize>, i: usize, v: usize| {
        if dims[i] > 1 {
            s[i] = v;
        }
    };
    match r {
        4 => {
            set(&mut s, 1, 1);
            set(&mut s, 2, w * ct);
            set(&mut s, 3, ct);
        }
        3 => {
            set(&mut s, 0, 1);
            set(&mut s, 1, w * ct);
            set(&mut s, 2, ct);
        }
        2 => set(&mut s, 1, 1),
        1 => set(&mut s, 0, 1),
        _ => {}
    }
    s
}

fn norm_strides(dims: &[usize], strides: &[usize]) -> Vec<usize> {
    dims.iter().zip(strides).map(|(&d, &s)| if d == 1 { 0 } else { s }).collect()
}

impl View {
    fn numel(&self) -> usize {
        self.dims.iter().product()
    }
}

impl<'a> Ctx<'a> {
    fn tensor_view(&self, t: usize, dims: &[usize], excl: bool) -> View {
        let tt = &self.g.tensors[t];
        View { t, dims: dims.to_vec(), strides: spatial_strides(dims, tt.c, tt.w), off: 0, excl }
    }

    /// `(c, h, w, channel offset)` when `v` is a canonical spatial view (possibly a
    /// channel slice) of its tensor.
    fn spatial(&self, v: &View) -> Option<(usize, usize, usize, usize)> {
        let (c, h, w) = chw_of(&v.dims)?;
        let tt = &self.g.tensors[v.t];
        if tt.h != h || tt.w != w || v.off + c > tt.c {
            return None;
        }
        let want = spatial_strides(&v.dims, tt.c, tt.w);
        (norm_strides(&v.dims, &v.strides) == want).then_some((c, h, w, v.off))
    }

    /// Like [`Self::spatial`] but the view must cover the whole tensor.
    fn spatial_full(&self, v: &View) -> Option<(usize, usize, usize)> {
        let (c, h, w, off) = self.spatial(v)?;
        (off == 0 && c == self.g.tensors[v.t].c).then_some((c, h, w))
    }

    /// `(c, h, w)` when `v` covers its whole tensor in channel-major order: the
    /// channel axis first, then the pixels in row-major order (e.g. `[1, C, H·W]`).
    fn channel_major(&self, v: &View) -> Option<(usize, usize, usize)> {
        let tt = &self.g.tensors[v.t];
        if v.off != 0 || v.numel() != tt.len() {
            return None;
        }
        let nz: Vec<(usize, usize)> =
            v.dims.iter().zip(&v.strides).filter(|(d, _)| **d > 1).map(|(&d, &s)| (d, s)).collect();
        let pix = match nz.first() {
            Some(&(c, 1)) if tt.c > 1 && c == tt.c => &nz[1..],
            _ if tt.c == 1 => &nz[..],
            _ => return None,
        };
        let mut want = tt.c;
        for &(d, s) in pix.iter().rev() {
            if s != want {
                return None;
            }
            want *= d;
        }
        (want == tt.len()).then_some((tt.c, tt.h, tt.w))
    }

    fn covers_whole(&self, v: &View) -> bool {
        v.off == 0 && v.numel() == self.g.tensors[v.t].len()
    }

    fn push(&mut self, kind: OpKind, inputs: Vec<usize>, output: usize, source: &str) -> usize {
        self.g.ops.push(Op { kind, inputs, output, source: source.to_string() });
        self.dead.push(false);
        let id = self.g.ops.len() - 1;
        self.producer[output] = Some(id);
        id
    }

    fn new_tensor(&mut self, name: &str, h: usize, w: usize, c: usize) -> usize {
        self.producer.push(None);
        self.g.add_tensor(name, h, w, c)
    }

    fn excl_out(&self, node: &TypedNode) -> bool {
        node.outputs[0].successors.len() == 1
    }
}

fn describe(model: &TypedModel, node: &TypedNode) -> String {
    let shapes: Vec<String> = node
        .inputs
        .iter()
        .map(|o| {
            model
                .outlet_fact(*o)
                .map(|f| {
                    let k = if f.konst.is_some() { " const" } else { "" };
                    format!("{:?} {:?}{k}", f.shape, f.datum_type)
                })
                .unwrap_or_default()
        })
        .collect();
    format!("node {:?} (op {}, inputs [{}])", node.name, node.op.name(), shapes.join("; "))
}

/// Lowers a decluttered model whose input 0 is the image and input 1 the timestep.
///
/// `embed_table` evaluates the given `t`-only outlets for every timestep (row-major
/// `[T][Σ dims]`); it is called once with the frontier of the timestep sub-graph.
///
/// # Errors
/// Any node it cannot lower, with the node, op, input shapes and what would be needed.
pub fn lower(
    model: &TypedModel,
    timesteps: usize,
    embed_table: &mut dyn FnMut(&[OutletId]) -> Result<Vec<f32>>,
) -> Result<Lowered> {
    let inputs = model.input_outlets()?.to_vec();
    let (x_in, t_in) = (inputs[0], inputs[1]);
    let order = model.eval_order()?;

    // Which nodes depend on t alone (and are not learned layers).
    let mut time_only = vec![false; model.nodes().len()];
    let is_const = |o: &OutletId| model.outlet_fact(*o).map(|f| f.konst.is_some()).unwrap_or(false);
    for &id in &order {
        let n = model.node(id);
        if id == t_in.node {
            time_only[id] = true;
            continue;
        }
        if n.inputs.is_empty() {
            continue;
        }
        let learned = n.op_is::<EinSum>() || n.op_is::<Conv>();
        let all = n.inputs.iter().all(|o| time_only[o.node] || is_const(o));
        let any = n.inputs.iter().any(|o| time_only[o.node]);
        time_only[id] = all && any && !learned && !is_const(&OutletId::new(id, 0));
    }
    // Frontier: t-only outlets read by something that is not t-only.
    let mut frontier: Vec<OutletId> = Vec::new();
    for &id in &order {
        let n = model.node(id);
        if time_only[id] {
            continue;
        }
        for o in &n.inputs {
            if time_only[o.node] && !frontier.contains(o) {
                frontier.push(*o);
            }
        }
    }

    let mut cx =
        Ctx { model, g: Graph::default(), vals: HashMap::new(), producer: vec![], dead: vec![] };
    cx.g.timesteps = timesteps;
    let chw = shape_of(model, x_in)?;
    let xi = cx.new_tensor("x", chw[2], chw[3], chw[1]);
    cx.g.input = xi;
    let v = cx.tensor_view(xi, &chw, false);
    cx.vals.insert(x_in, Val::Act(v));

    if !frontier.is_empty() {
        let mut dims = Vec::new();
        for o in &frontier {
            let s = shape_of(model, *o)?;
            let d: usize = s.iter().product();
            if s.iter().filter(|&&x| x > 1).count() > 1 {
                bail!(
                    "the timestep sub-graph ends in {:?} with shape {s:?}; a TIMESTEP_EMBED needs a vector",
                    model.node(o.node).name
                );
            }
            dims.push((s, d));
        }
        let total: usize = dims.iter().map(|d| d.1).sum();
        let table = embed_table(&frontier).context("evaluating the timestep embedding")?;
        ensure!(table.len() == timesteps * total, "embedding table has the wrong size");
        if let Some(i) = table.iter().position(|v| !v.is_finite()) {
            bail!("the timestep embedding is not finite at t = {}", i / total);
        }
        let te = cx.new_tensor("timestep_embed", 1, 1, total);
        cx.push(
            OpKind::TimestepEmbed { timesteps, dim: total, table },
            vec![],
            te,
            "timestep embedding",
        );
        let mut off = 0;
        for (o, (s, d)) in frontier.iter().zip(dims) {
            let strides = s.iter().map(|&x| if x > 1 { 1 } else { 0 }).collect();
            cx.vals.insert(*o, Val::Act(View { t: te, dims: s, strides, off, excl: false }));
            off += d;
        }
    }

    for &id in &order {
        let node = model.node(id);
        if id == x_in.node || id == t_in.node {
            continue;
        }
        if let Some(k) = &node.outputs[0].fact.konst {
            cx.vals.insert(OutletId::new(id, 0), Val::Const(k.clone()));
            continue;
        }
        if time_only[id] {
            cx.vals.entry(OutletId::new(id, 0)).or_insert(Val::TimeOnly);
            continue;
        }
        let v = cx
            .lower_node(node)
            .with_context(|| format!("cannot lower {}", describe(model, node)))?;
        cx.vals.insert(OutletId::new(id, 0), v);
    }

    let out = model.output_outlets()?[0];
    let ov = match cx.vals.get(&out) {
        Some(Val::Act(v)) => v.clone(),
        _ => bail!("the model output is not an activation the lowering produced"),
    };
    let dims = shape_of(model, out)?;
    ensure!(
        cx.spatial_full(&ov).is_some() && dims == chw,
        "the output {dims:?} is not laid out as an image like the input {chw:?}"
    );
    cx.g.output = ov.t;
    cx.finish()
}

impl<'a> Ctx<'a> {
    fn input(&self, node: &TypedNode, i: usize) -> Result<Val> {
        self.vals.get(&node.inputs[i]).cloned().ok_or_else(|| anyhow!("input {i} was not lowered"))
    }

    fn act(&self, node: &TypedNode, i: usize) -> Result<View> {
        match self.input(node, i)? {
            Val::Act(v) => Ok(v),
            other => bail!("input {i} is {}, an activation is needed", kind_name(&other)),
        }
    }

    fn lower_node(&mut self, node: &TypedNode) -> Result<Val> {
        let name = node.op.name().to_string();
        let excl = self.excl_out(node);
        let out_shape = shape_of(self.model, OutletId::new(node.id, 0))?;
        if let Some(op) = node.op_as::<AxisOp>() {
            return self.axis_op(node, op, excl);
        }
        if let Some(s) = node.op_as::<Slice>() {
            let mut v = self.act(node, 0)?;
            let start = s.start.to_usize()?;
            v.off += start * v.strides[s.axis];
            v.dims[s.axis] = s.end.to_usize()? - start;
            v.excl = false;
            return Ok(Val::Act(v));
        }
        if let Some(c) = node.op_as::<Conv>() {
            return self.conv(node, c, excl);
        }
        if let Some(e) = node.op_as::<EinSum>() {
            return self.einsum(node, e, excl, &out_shape);
        }
        if let Some(r) = node.op_as::<Reduce>() {
            let g = match self.input(node, 0)? {
                Val::Group(g) => g,
                _ => bail!("a reduction is only supported inside a group norm; a REDUCE op would be needed"),
            };
            ensure!(
                r.axes.as_slice() == [2],
                "group-norm reduction over axes {:?}, expected [2]",
                r.axes
            );
            let stage = match (&g.stage, &r.reducer) {
                (Stage::Raw, Reducer::Sum) => Stage::Sum,
                (Stage::Squared, Reducer::Sum) => Stage::SqSum,
                (Stage::Centered, Reducer::MeanOfSquares) => Stage::Var,
                (s, r) => bail!("reduction {r:?} after group-norm stage {s:?} is not a group norm"),
            };
            return Ok(Val::Group(Grouped { stage, ..g }));
        }
        if let Some(r) = node.op_as::<RmsNorm>() {
            let g = match self.input(node, 0)? {
                Val::Group(g) if g.stage == Stage::Centered && r.axis == 2 => g,
                _ => bail!("RmsNorm is only supported as the variance step of a group norm"),
            };
            let eps = r.eps.cast_to_scalar::<f32>()?;
            return Ok(Val::Group(self.emit_group_norm(node, g, eps)));
        }
        if let Some(s) = node.op_as::<Softmax>() {
            let v = self.act(node, 0)?;
            let r = v.dims.len();
            ensure!(
                s.axes.as_slice() == [r - 1],
                "softmax over axes {:?}; only the last axis is supported",
                s.axes
            );
            ensure!(
                self.covers_whole(&v) && norm_strides(&v.dims, &v.strides) == row_major(&v.dims),
                "softmax input is not laid out row-major (strides {:?}); a transposing copy would be needed",
                v.strides
            );
            let len = v.dims[r - 1];
            let tt = self.g.tensors[v.t].clone();
            let y = self.new_tensor(&node.name, tt.h, tt.w, tt.c);
            self.push(OpKind::Softmax { rows: tt.len() / len, len }, vec![v.t], y, &node.name);
            return Ok(Val::Act(View { t: y, excl, ..v }));
        }
        if let Some(c) = node.op_as::<TypedConcat>() {
            let mut ins = Vec::new();
            let mut hw = None;
            for i in 0..node.inputs.len() {
                let v = self.act(node, i)?;
                let (_, h, w) = self
                    .spatial_full(&v)
                    .ok_or_else(|| anyhow!("concat input {i} is not a whole NCHW image tensor"))?;
                ensure!(
                    chw_of(&v.dims).is_some() && v.dims.len() >= 3 && c.axis == v.dims.len() - 3,
                    "concat along axis {} of rank {}; only the channel axis is supported",
                    c.axis,
                    v.dims.len()
                );
                ensure!(hw.is_none_or(|x| x == (h, w)), "concat inputs differ in height/width");
                hw = Some((h, w));
                ins.push(v.t);
            }
            let (h, w) = hw.ok_or_else(|| anyhow!("empty concat"))?;
            let c: usize = ins.iter().map(|&t| self.g.tensors[t].c).sum();
            let y = self.new_tensor(&node.name, h, w, c);
            self.push(OpKind::Concat, ins, y, &node.name);
            return Ok(Val::Act(self.tensor_view(y, &out_shape, excl)));
        }
        if let Some(u) = node.op_as::<NearestUpsample>() {
            let v = self.act(node, 0)?;
            let (c, h, w) = self
                .spatial_full(&v)
                .ok_or_else(|| anyhow!("upsample input is not an NCHW image"))?;
            let r = u.scales.len();
            ensure!(
                r == v.dims.len() && r >= 2 && u.scales[..r - 2].iter().all(|&s| s == 1),
                "upsample scales {:?}: only height and width may be scaled",
                u.scales
            );
            let (fh, fw) = (u.scales[r - 2], u.scales[r - 1]);
            let y = self.new_tensor(&node.name, h * fh, w * fw, c);
            self.push(OpKind::Upsample { factor: [fh, fw] }, vec![v.t], y, &node.name);
            return Ok(Val::Act(self.tensor_view(y, &out_shape, excl)));
        }
        match name.as_str() {
            "Silu" | "Sigmoid" => {
                let f = if name == "Silu" { LutFn::Silu } else { LutFn::Sigmoid };
                match self.input(node, 0)? {
                    Val::Act(v) => {
                        ensure!(self.covers_whole(&v), "elementwise op on a partial view");
                        let tt = self.g.tensors[v.t].clone();
                        let y = self.new_tensor(&node.name, tt.h, tt.w, tt.c);
                        self.push(OpKind::Lut(f), vec![v.t], y, &node.name);
                        Ok(Val::Act(View { t: y, excl, ..v }))
                    }
                    Val::Group(g) if g.stage == Stage::Normed => {
                        let tt = self.g.tensors[g.t].clone();
                        let y = self.new_tensor(&node.name, tt.h, tt.w, tt.c);
                        self.push(OpKind::Lut(f), vec![g.t], y, &node.name);
                        Ok(Val::Group(Grouped { t: y, excl, ..g }))
                    }
                    v => bail!("{name} of {} is not supported", kind_name(&v)),
                }
            }
            "Add" | "Sub" | "Mul" => self.binary(node, &name, excl, &out_shape),
            "Rsqrt" => match self.input(node, 0)? {
                Val::Group(g) => match g.stage {
                    Stage::VarEps(e) => Ok(Val::Group(Grouped { stage: Stage::InvStd(e), ..g })),
                    _ => bail!("Rsqrt outside the variance step of a group norm"),
                },
                _ => bail!("Rsqrt is only supported inside a group norm"),
            },
            "Square" => match self.input(node, 0)? {
                Val::Group(g) if g.stage == Stage::Centered => {
                    Ok(Val::Group(Grouped { stage: Stage::Squared, ..g }))
                }
                _ => bail!("Square is only supported inside a group norm"),
            },
            _ => bail!("op {name} has no lowering to the runtime op set (conv, group norm, SiLU/sigmoid LUT, add, mul, concat, nearest upsample, matmul, softmax, timestep embedding)"),
        }
    }

    fn axis_op(&mut self, node: &TypedNode, op: &AxisOp, excl: bool) -> Result<Val> {
        let inp = self.input(node, 0)?;
        let in_excl = self.excl_out(node);
        match (inp, op) {
            (Val::Act(mut v), AxisOp::Add(a)) => {
                v.dims.insert(*a, 1);
                v.strides.insert(*a, 0);
                v.excl = v.excl && in_excl;
                Ok(Val::Act(v))
            }
            (Val::Act(mut v), AxisOp::Rm(a)) => {
                ensure!(v.dims[*a] == 1, "removing axis {a} of size {}", v.dims[*a]);
                v.dims.remove(*a);
                v.strides.remove(*a);
                v.excl = v.excl && in_excl;
                Ok(Val::Act(v))
            }
            (Val::Act(mut v), AxisOp::Move(from, to)) => {
                let d = v.dims.remove(*from);
                let s = v.strides.remove(*from);
                v.dims.insert(*to, d);
                v.strides.insert(*to, s);
                v.excl = v.excl && in_excl;
                Ok(Val::Act(v))
            }
            (Val::Act(v), AxisOp::Reshape(at, from, to)) => {
                let from: Vec<usize> = from
                    .iter()
                    .map(|d| d.to_usize().map_err(|e| anyhow!("{e:?}")))
                    .collect::<Result<_>>()?;
                let to: Vec<usize> = to
                    .iter()
                    .map(|d| d.to_usize().map_err(|e| anyhow!("{e:?}")))
                    .collect::<Result<_>>()?;
                // Group-norm entry: a whole image [1, C, H, W] (or any channel-major view
                // of it, such as [1, C, H·W]) reshaped to [1, G, C/G·H·W].
                let out = shape_of(self.model, OutletId::new(node.id, 0))?;
                let whole = self
                    .spatial_full(&v)
                    .filter(|_| v.dims.len() == 4)
                    .or_else(|| self.channel_major(&v));
                if let (Some((c, h, w)), [1, g, x]) = (whole, out.as_slice()) {
                    let reduced = node.outputs[0]
                        .successors
                        .iter()
                        .any(|s| self.model.node(s.node).op_is::<Reduce>());
                    if c % g == 0 && g * x == c * h * w && (*g != c || reduced) {
                        return Ok(Val::Group(Grouped {
                            t: v.t,
                            groups: *g,
                            stage: Stage::Raw,
                            excl,
                            entry: (v.dims.clone(), norm_strides(&v.dims, &v.strides)),
                        }));
                    }
                }
                let (dims, strides) = reshape_view(&v.dims, &v.strides, *at, &from, &to)?;
                Ok(Val::Act(View { dims, strides, excl: v.excl && in_excl, ..v }))
            }
            (Val::Group(g), AxisOp::Reshape(_, from, to)) if g.stage == Stage::Normed => {
                let shape = shape_of(self.model, OutletId::new(node.id, 0))?;
                if shape == g.entry.0 && g.entry.0.len() != 4 {
                    // back to the channel-major view the group norm was entered from
                    let (dims, strides) = g.entry.clone();
                    return Ok(Val::Act(View {
                        t: g.t,
                        dims,
                        strides,
                        off: 0,
                        excl: g.excl && in_excl,
                    }));
                }
                let v = self.tensor_view(g.t, &shape, g.excl && in_excl);
                ensure!(
                    self.spatial_full(&v).is_some(),
                    "group-norm exit shape {shape:?} does not match"
                );
                Ok(Val::Act(v))
            }
            (Val::Const(_), _) | (Val::TimeOnly, _) => bail!("unexpected constant axis op"),
            (v, op) => bail!("axis op {op:?} on {} is not supported", kind_name(&v)),
        }
    }

    fn emit_group_norm(&mut self, node: &TypedNode, g: Grouped, eps: f32) -> Grouped {
        let tt = self.g.tensors[g.t].clone();
        let y = self.new_tensor(&node.name, tt.h, tt.w, tt.c);
        let kind = OpKind::GroupNorm {
            groups: g.groups,
            eps,
            gamma: vec![1.0; tt.c],
            beta: vec![0.0; tt.c],
        };
        self.push(kind, vec![g.t], y, &node.name);
        Grouped {
            t: y,
            groups: g.groups,
            stage: Stage::Normed,
            excl: self.excl_out(node),
            entry: g.entry,
        }
    }

    fn conv(&mut self, node: &TypedNode, c: &Conv, excl: bool) -> Result<Val> {
        let v = self.act(node, 0)?;
        ensure!(
            c.group == 1,
            "grouped convolution (group {}); only group = 1 is supported",
            c.group
        );
        ensure!(c.q_params.is_none(), "quantized convolution input is not supported");
        ensure!(
            matches!(c.pool_spec.data_format, DataFormat::NCHW),
            "conv data format {:?}, expected NCHW",
            c.pool_spec.data_format
        );
        ensure!(
            matches!(c.kernel_fmt, KernelFormat::OIHW),
            "conv kernel format {:?}, expected OIHW",
            c.kernel_fmt
        );
        let ks = &c.pool_spec.kernel_shape;
        ensure!(ks.len() == 2, "only 2-D convolution is supported (kernel {:?})", ks);
        if let Some(d) = &c.pool_spec.dilations {
            ensure!(d.iter().all(|&x| x == 1), "dilated convolution {:?} is not supported", d);
        }
        let stride = c.pool_spec.strides.clone().unwrap_or_else(|| tvec![1, 1]);
        let pad = match &c.pool_spec.padding {
            PaddingSpec::Explicit(b, a) | PaddingSpec::ExplicitOnnxPool(b, a, false) => {
                [b[0], b[1], a[0], a[1]]
            }
            PaddingSpec::Valid => [0; 4],
            p => bail!("conv padding {p:?} is not supported; explicit padding is needed"),
        };
        let (ic, _h, _w, coff) =
            self.spatial(&v).ok_or_else(|| anyhow!("conv input is not an NCHW image view"))?;
        let kernel = match self.input(node, 1)? {
            Val::Const(k) => k,
            _ => bail!("conv weights are not constant"),
        };
        let ksh = kernel.shape().to_vec();
        let wf = floats(&kernel, "conv weights")?;
        let (oc, kh, kw) = (ksh[0], ksh[2], ksh[3]);
        ensure!(ksh[1] == ic, "conv kernel {ksh:?} does not match {ic} input channels");
        let ct = self.g.tensors[v.t].c;
        let mut weights = vec![0f32; oc * kh * kw * ct];
        for o in 0..oc {
            for i in 0..ic {
                for y in 0..kh {
                    for x in 0..kw {
                        weights[((o * kh + y) * kw + x) * ct + coff + i] =
                            wf[((o * ic + i) * kh + y) * kw + x];
                    }
                }
            }
        }
        let (bias, dyn_bias) = match node.inputs.get(2).map(|_| self.input(node, 2)).transpose()? {
            None => (vec![0.0; oc], None),
            Some(Val::Const(b)) => {
                let b = floats(&b, "conv bias")?;
                (if b.len() == 1 { vec![b[0]; oc] } else { b }, None)
            }
            Some(Val::Act(b)) => (vec![0.0; oc], Some(b)),
            Some(other) => bail!("conv bias is {}", kind_name(&other)),
        };
        let tt = self.g.tensors[v.t].clone();
        let oh = (tt.h + pad[0] + pad[2] - kh) / stride[0] + 1;
        let ow = (tt.w + pad[1] + pad[3] - kw) / stride[1] + 1;
        let out_shape = shape_of(self.model, OutletId::new(node.id, 0))?;
        let y = self.new_tensor(&node.name, oh, ow, oc);
        self.push(
            OpKind::Conv2d { kh, kw, stride: [stride[0], stride[1]], pad, weights, bias },
            vec![v.t],
            y,
            &node.name,
        );
        let yv = self.tensor_view(y, &out_shape, excl);
        ensure!(
            self.spatial_full(&yv).is_some(),
            "conv output shape {out_shape:?} != ({oh}, {ow}, {oc})"
        );
        match dyn_bias {
            None => Ok(Val::Act(yv)),
            Some(b) => {
                ensure!(
                    self.g.tensors[b.t].h == 1
                        && self.g.tensors[b.t].w == 1
                        && b.numel() == oc
                        && self.covers_whole(&b),
                    "a dynamic conv bias must be a whole 1×1×{oc} tensor"
                );
                let z = self.new_tensor(&format!("{}.bias_add", node.name), oh, ow, oc);
                self.push(OpKind::Add { broadcast: true }, vec![y, b.t], z, &node.name);
                Ok(Val::Act(View { t: z, ..yv }))
            }
        }
    }

    fn einsum(
        &mut self,
        node: &TypedNode,
        e: &EinSum,
        excl: bool,
        out_shape: &[usize],
    ) -> Result<Val> {
        ensure!(e.q_params.is_none(), "quantized einsum is not supported");
        let (ins, outs) = e.axes.to_strs();
        let (s0, s1, so): (Vec<char>, Vec<char>, Vec<char>) =
            (ins[0].chars().collect(), ins[1].chars().collect(), outs[0].chars().collect());
        match (self.input(node, 0)?, self.input(node, 1)?) {
            (Val::Act(x), Val::Const(w)) => self.linear(node, x, &s0, w, &s1, &so, excl, out_shape),
            (Val::Const(w), Val::Act(x)) => self.linear(node, x, &s1, w, &s0, &so, excl, out_shape),
            (Val::Act(a), Val::Act(b)) => self.matmul(node, a, &s0, b, &s1, &so, excl, out_shape),
            (a, b) => bail!("einsum of {} and {}", kind_name(&a), kind_name(&b)),
        }
    }

    /// EinSum with constant weights: a 1×1 convolution over the channel axis.
    #[allow(clippy::too_many_arguments)]
    fn linear(
        &mut self,
        node: &TypedNode,
        x: View,
        sx: &[char],
        w: Arc<Tensor>,
        sw: &[char],
        so: &[char],
        excl: bool,
        out_shape: &[usize],
    ) -> Result<Val> {
        // The contracted axes, in the activation's order (several when heads × head
        // width are contracted at once, as in a multi-head attention's output
        // projection), must merge into its channel axis.
        let contracted: Vec<char> =
            sx.iter().copied().filter(|c| sw.contains(c) && !so.contains(c)).collect();
        ensure!(!contracted.is_empty(), "a linear einsum needs a contracted axis");
        let mut ic = 1;
        let mut inner = 1;
        for &c in contracted.iter().rev() {
            let i = sx.iter().position(|&a| a == c).unwrap_or(0);
            if x.dims[i] > 1 {
                ensure!(
                    x.strides[i] == inner,
                    "the contracted axes {contracted:?} are not the channel axis of the activation"
                );
                inner *= x.dims[i];
            }
            ic *= x.dims[i];
        }
        ensure!(
            sw.len() == contracted.len() + 1,
            "einsum weights of rank {}; expected [out] plus the contracted axes {contracted:?}",
            sw.len()
        );
        let o = *sw.iter().find(|c| !contracted.contains(c)).unwrap_or(&contracted[0]);
        ensure!(
            so.contains(&o) && !sx.contains(&o),
            "einsum weight axis {o} must be an output axis"
        );
        // row-major strides of the weight tensor, per axis letter
        let wsh = w.shape().to_vec();
        let wst = |c: char| {
            let i = sw.iter().position(|&a| a == c).unwrap_or(0);
            wsh[i + 1..].iter().product::<usize>()
        };
        for &c in &contracted {
            let (i, j) = (
                sx.iter().position(|&a| a == c).unwrap_or(0),
                sw.iter().position(|&a| a == c).unwrap_or(0),
            );
            ensure!(
                x.dims[i] == wsh[j],
                "einsum axis {c}: activation {} vs weight {}",
                x.dims[i],
                wsh[j]
            );
        }
        let tt = self.g.tensors[x.t].clone();
        let ct = tt.c;
        ensure!(x.off < ct && x.off + ic <= ct, "einsum input view is not a channel slice");
        for (i, &c) in sx.iter().enumerate() {
            if !contracted.contains(&c) && x.dims[i] > 1 {
                ensure!(so.contains(&c), "einsum sums over activation axis {c}");
                ensure!(
                    x.strides[i].is_multiple_of(ct),
                    "einsum activation axis {c} is not a pixel axis"
                );
            }
        }
        let npix: usize = sx
            .iter()
            .zip(&x.dims)
            .filter(|(c, _)| !contracted.contains(c))
            .map(|(_, d)| d)
            .product();
        ensure!(npix == tt.h * tt.w, "einsum over a subset of the pixels");
        let wf = floats(&w, "linear weights")?;
        let oc = wsh[sw.iter().position(|&a| a == o).unwrap_or(0)];
        // weight offset of each input channel (the contracted axes merged, x's order)
        let mut in_off = vec![0usize];
        for &c in &contracted {
            let d = x.dims[sx.iter().position(|&a| a == c).unwrap_or(0)];
            let s = wst(c);
            in_off = in_off.iter().flat_map(|&b| (0..d).map(move |j| b + j * s)).collect();
        }
        let so_w = wst(o);
        let mut weights = vec![0f32; oc * ct];
        for oi in 0..oc {
            for (ii, &off) in in_off.iter().enumerate() {
                weights[oi * ct + x.off + ii] = wf[oi * so_w + off];
            }
        }
        let y = self.new_tensor(&node.name, tt.h, tt.w, oc);
        let kind = OpKind::Conv2d {
            kh: 1,
            kw: 1,
            stride: [1, 1],
            pad: [0; 4],
            weights,
            bias: vec![0.0; oc],
        };
        self.push(kind, vec![x.t], y, &node.name);
        let strides = so
            .iter()
            .zip(out_shape)
            .map(|(c, &d)| {
                if d == 1 {
                    0
                } else if *c == o {
                    1
                } else {
                    let i = sx.iter().position(|a| a == c).unwrap_or(0);
                    x.strides[i] / ct * oc
                }
            })
            .collect();
        Ok(Val::Act(View { t: y, dims: out_shape.to_vec(), strides, off: 0, excl }))
    }

    /// Follows view-only successors to see whether `node`'s output ends up read as an
    /// image (`Some([c, h, w])`) or as a matrix (`None`).
    fn image_consumer(&self, node: &TypedNode) -> Option<[usize; 3]> {
        let mut cur = node;
        loop {
            let succ = &cur.outputs[0].successors;
            if succ.len() != 1 {
                return None;
            }
            let next = self.model.node(succ[0].node);
            if next.op_is::<AxisOp>() {
                cur = next;
                continue;
            }
            if next.op_is::<Softmax>()
                || next.op_is::<EinSum>()
                    && next.inputs.iter().all(|o| {
                        self.model.outlet_fact(*o).map(|f| f.konst.is_none()).unwrap_or(false)
                    })
            {
                return None;
            }
            let s = shape_of(self.model, OutletId::new(cur.id, 0)).ok()?;
            return match s.len() {
                3 | 4 => chw_of(&s).map(|(c, h, w)| [c, h, w]),
                _ => None,
            };
        }
    }

    /// Follows `node`'s single-successor chain through view ops, linear layers
    /// (einsum with constant weights) and constant adds/muls to the first NCHW image
    /// shape; returns its `(h, w)` when a linear layer is on the way.
    fn linear_grid_ahead(&self, node: &TypedNode) -> Option<(usize, usize)> {
        let is_const =
            |o: &OutletId| self.model.outlet_fact(*o).map(|f| f.konst.is_some()).unwrap_or(false);
        let mut cur = node;
        let mut linear = false;
        for _ in 0..16 {
            let succ = &cur.outputs[0].successors;
            if succ.len() != 1 {
                return None;
            }
            let next = self.model.node(succ[0].node);
            let one_const =
                next.inputs.len() == 2 && next.inputs.iter().filter(|o| is_const(o)).count() == 1;
            if next.op_is::<EinSum>() && one_const {
                linear = true;
            } else if !(next.op_is::<AxisOp>()
                || (one_const && matches!(next.op.name().as_ref(), "Add" | "Mul")))
            {
                return None;
            }
            let s = shape_of(self.model, OutletId::new(next.id, 0)).ok()?;
            if s.len() == 4 && s[0] == 1 {
                return linear.then_some((s[2], s[3]));
            }
            cur = next;
        }
        None
    }

    #[allow(clippy::too_many_arguments)]
    fn matmul(
        &mut self,
        node: &TypedNode,
        a: View,
        sa: &[char],
        b: View,
        sb: &[char],
        so: &[char],
        excl: bool,
        out_shape: &[usize],
    ) -> Result<Val> {
        for c in sa.iter().chain(sb) {
            ensure!(
                so.contains(c) || (sa.contains(c) && sb.contains(c)),
                "einsum sums axis {c} of one operand only"
            );
        }
        let batch: Vec<char> =
            so.iter().copied().filter(|c| sa.contains(c) && sb.contains(c)).collect();
        let m: Vec<char> =
            so.iter().copied().filter(|c| sa.contains(c) && !sb.contains(c)).collect();
        let n: Vec<char> =
            so.iter().copied().filter(|c| sb.contains(c) && !sa.contains(c)).collect();
        let k: Vec<char> =
            sa.iter().copied().filter(|c| sb.contains(c) && !so.contains(c)).collect();
        let merged = |v: &View, s: &[char], group: &[char], what: &str| -> Result<(usize, usize)> {
            let mut axes: Vec<(usize, usize)> = Vec::new();
            for c in group {
                let i = s.iter().position(|x| x == c).ok_or_else(|| anyhow!("axis {c} missing"))?;
                if v.dims[i] > 1 {
                    axes.push((v.dims[i], v.strides[i]));
                }
            }
            let dim = axes.iter().map(|x| x.0).product();
            for w in axes.windows(2) {
                ensure!(
                    w[0].1 == w[1].1 * w[1].0,
                    "{what} axes {group:?} are not contiguous in memory; a copy would be needed"
                );
            }
            Ok((dim, axes.last().map(|x| x.1).unwrap_or(0)))
        };
        let (bd, a_sb) = merged(&a, sa, &batch, "batch")?;
        let (_, b_sb) = merged(&b, sb, &batch, "batch")?;
        let (md, a_sm) = merged(&a, sa, &m, "row")?;
        let (kd, a_sk) = merged(&a, sa, &k, "inner")?;
        let (kd2, b_sk) = merged(&b, sb, &k, "inner")?;
        let (nd, b_sn) = merged(&b, sb, &n, "column")?;
        ensure!(kd == kd2, "inner dimensions differ ({kd} vs {kd2})");
        ensure!(a.off == 0 && b.off == 0, "matmul operands must start at their tensor's origin");
        let total: usize = out_shape.iter().product();
        // Rows of pixels with their channels contiguous (multi-head attention's
        // [HW, heads, head width]) feeding a linear layer on the way back to an
        // image: the row-major result already is that image in NHWC.
        let grid = self.linear_grid_ahead(node).filter(|&(h, w)| {
            let mut p = 1;
            out_shape.iter().any(|&d| {
                p *= d;
                p == h * w
            }) && total.is_multiple_of(h * w)
        });
        let consumer = if grid.is_some() { None } else { self.image_consumer(node) };
        let (dims_t, strides) = match consumer {
            Some([c, h, w])
                if c == out_shape.iter().copied().find(|&d| d > 1).unwrap_or(1)
                    && c * h * w == total =>
            {
                // channel-minor: first non-unit output axis is the channel
                let first = out_shape.iter().position(|&d| d > 1).unwrap_or(0);
                let mut st = vec![0; out_shape.len()];
                let mut acc = c;
                for i in (first + 1..out_shape.len()).rev() {
                    if out_shape[i] > 1 {
                        st[i] = acc;
                        acc *= out_shape[i];
                    }
                }
                st[first] = 1;
                ((h, w, c), st)
            }
            _ => match grid {
                Some((h, w)) => ((h, w, total / (h * w)), row_major(out_shape)),
                None => ((bd, md, nd), row_major(out_shape)),
            },
        };
        let y = self.new_tensor(&node.name, dims_t.0, dims_t.1, dims_t.2);
        let yv = View { t: y, dims: out_shape.to_vec(), strides, off: 0, excl };
        let (_, y_sb) = merged(&yv, so, &batch, "batch")?;
        let (_, y_sm) = merged(&yv, so, &m, "row")?;
        let (_, y_sn) = merged(&yv, so, &n, "column")?;
        let kind = OpKind::MatMul {
            batch: bd,
            m: md,
            k: kd,
            n: nd,
            a: Strides { b: a_sb, i: a_sm, j: a_sk },
            b: Strides { b: b_sb, i: b_sk, j: b_sn },
            y: Strides { b: y_sb, i: y_sm, j: y_sn },
            alpha: 1.0,
        };
        self.push(kind, vec![a.t, b.t], y, &node.name);
        Ok(Val::Act(yv))
    }

    /// Per-channel values of a constant broadcast against view `v` (or a scalar).
    fn per_channel(&self, v: &View, k: &Tensor) -> Result<Vec<f32>> {
        let f = floats(k, "constant operand")?;
        let c = self.g.tensors[v.t].c;
        if f.len() == 1 {
            return Ok(vec![f[0]; c]);
        }
        let ks = k.shape();
        ensure!(
            ks.len() == v.dims.len(),
            "constant of shape {ks:?} against activation {:?}",
            v.dims
        );
        let axis = ks.iter().position(|&d| d > 1).unwrap_or(0);
        ensure!(
            ks.iter().filter(|&&d| d > 1).count() == 1
                && v.strides[axis] == 1
                && ks[axis] == v.dims[axis]
                && v.off == 0
                && v.dims[axis] == c,
            "constant of shape {ks:?} is not per-channel for activation {:?}",
            v.dims
        );
        Ok(f)
    }

    fn binary(
        &mut self,
        node: &TypedNode,
        name: &str,
        excl: bool,
        out_shape: &[usize],
    ) -> Result<Val> {
        let (a, b) = (self.input(node, 0)?, self.input(node, 1)?);
        let (a, b) = match (&a, &b) {
            (Val::Const(_), Val::Act(_)) | (Val::Const(_), Val::Group(_)) if name != "Sub" => {
                (b, a)
            }
            _ => (a, b),
        };
        match (name, a, b) {
            // --- group norm decomposition
            ("Mul", Val::Group(g), Val::Const(k))
                if g.stage == Stage::Sum || g.stage == Stage::SqSum =>
            {
                // Σ · 1/n: the mean only if the constant is 1 / (group size).
                let n = self.g.tensors[g.t].len() / g.groups;
                let r = k.cast_to_scalar::<f32>()? as f64 * n as f64;
                ensure!(
                    (r - 1.0).abs() < 1e-4,
                    "group sum scaled by {} instead of 1/{n}: not a group norm",
                    r / n as f64
                );
                let stage = if g.stage == Stage::Sum { Stage::Mean } else { Stage::Var };
                Ok(Val::Group(Grouped { stage, ..g }))
            }
            ("Sub", Val::Group(x), Val::Group(m))
                if x.stage == Stage::Raw && m.stage == Stage::Mean && x.t == m.t =>
            {
                Ok(Val::Group(Grouped { stage: Stage::Centered, ..x }))
            }
            ("Mul", Val::Group(x), Val::Group(y))
                if x.stage == Stage::Centered && y.stage == Stage::Centered =>
            {
                Ok(Val::Group(Grouped { stage: Stage::Squared, ..x }))
            }
            ("Add", Val::Group(g), Val::Const(k)) if g.stage == Stage::Var => {
                Ok(Val::Group(Grouped { stage: Stage::VarEps(k.cast_to_scalar::<f32>()?), ..g }))
            }
            ("Mul", Val::Group(x), Val::Group(s))
                if x.stage == Stage::Centered && matches!(s.stage, Stage::InvStd(_)) =>
            {
                let eps = match s.stage {
                    Stage::InvStd(e) => e,
                    _ => 0.0,
                };
                Ok(Val::Group(self.emit_group_norm(node, x, eps)))
            }
            (op @ ("Mul" | "Add"), Val::Group(g), Val::Const(k)) if g.stage == Stage::Normed => {
                // per-group affine of InstanceNormalization: fold into the group norm
                let f = floats(&k, "instance-norm affine")?;
                let pid = self.producer[g.t]
                    .filter(|&p| matches!(self.g.ops[p].kind, OpKind::GroupNorm { .. }));
                let p = pid.filter(|_| g.excl).ok_or_else(|| {
                    anyhow!("{op} by a constant after a group norm that cannot absorb it")
                })?;
                let c = self.g.tensors[g.t].c;
                let cg = c / g.groups;
                let at = |ch: usize| if f.len() == 1 { f[0] } else { f[ch / cg] };
                ensure!(
                    f.len() == 1 || f.len() == g.groups,
                    "instance-norm affine of {} values for {} groups",
                    f.len(),
                    g.groups
                );
                if let OpKind::GroupNorm { gamma, beta, .. } = &mut self.g.ops[p].kind {
                    for ch in 0..c {
                        if op == "Mul" {
                            gamma[ch] *= at(ch);
                            beta[ch] *= at(ch);
                        } else {
                            beta[ch] += at(ch);
                        }
                    }
                }
                Ok(Val::Group(Grouped { excl, ..g }))
            }
            // --- activation with constant
            (op @ ("Mul" | "Add"), Val::Act(v), Val::Const(k)) => {
                self.fold_const(node, op, v, &k, excl)
            }
            // --- activation with activation
            (op @ ("Mul" | "Add"), Val::Act(x), Val::Act(y)) => {
                self.act_binary(node, op, x, y, excl, out_shape)
            }
            (op, a, b) => bail!("{op} of {} and {} is not supported", kind_name(&a), kind_name(&b)),
        }
    }

    fn fold_const(
        &mut self,
        node: &TypedNode,
        op: &str,
        v: View,
        k: &Tensor,
        excl: bool,
    ) -> Result<Val> {
        let is_scalar = k.len() == 1;
        if op == "Mul" && is_scalar {
            let alpha = k.cast_to_scalar::<f32>()?;
            ensure!(
                alpha > 0.0 && alpha.is_finite(),
                "multiplication by {alpha}; only a positive scale is supported"
            );
            ensure!(self.covers_whole(&v), "scaling a partial view");
            let tt = self.g.tensors[v.t].clone();
            let y = self.new_tensor(&node.name, tt.h, tt.w, tt.c);
            self.push(OpKind::Scale { alpha }, vec![v.t], y, &node.name);
            return Ok(Val::Act(View { t: y, excl, ..v }));
        }
        let vals = self.per_channel(&v, k)?;
        let p = self.producer[v.t]
            .filter(|_| v.excl && self.excl_ok(node))
            .ok_or_else(|| anyhow!("{op} of a per-channel constant onto a tensor whose producer cannot absorb it (needs a conv or group norm producing it for this use only)"))?;
        match (&mut self.g.ops[p].kind, op) {
            (OpKind::Conv2d { bias, .. }, "Add") => {
                bias.iter_mut().zip(&vals).for_each(|(b, v)| *b += v)
            }
            (OpKind::Conv2d { weights, bias, .. }, "Mul") => {
                let per = weights.len() / bias.len();
                for (o, &s) in vals.iter().enumerate() {
                    bias[o] *= s;
                    weights[o * per..(o + 1) * per].iter_mut().for_each(|w| *w *= s);
                }
            }
            (OpKind::GroupNorm { beta, .. }, "Add") => {
                beta.iter_mut().zip(&vals).for_each(|(b, v)| *b += v)
            }
            (OpKind::GroupNorm { gamma, beta, .. }, "Mul") => {
                for (ch, &s) in vals.iter().enumerate() {
                    gamma[ch] *= s;
                    beta[ch] *= s;
                }
            }
            (other, _) => {
                bail!("{op} of a per-channel constant after {} cannot be folded", other.name())
            }
        }
        Ok(Val::Act(View { excl, ..v }))
    }

    fn excl_ok(&self, _node: &TypedNode) -> bool {
        true
    }

    fn act_binary(
        &mut self,
        node: &TypedNode,
        op: &str,
        x: View,
        y: View,
        excl: bool,
        out_shape: &[usize],
    ) -> Result<Val> {
        let (xt, yt) = (self.g.tensors[x.t].clone(), self.g.tensors[y.t].clone());
        let vector = |v: &View, t: &crate::ingest::ir::Tensor| {
            t.h == 1 && t.w == 1 && v.off == 0 && v.numel() == t.c
        };
        // two convs over the same input, summed: one conv (tract splits convs over concats)
        if op == "Add"
            && x.excl
            && y.excl
            && norm_strides(&x.dims, &x.strides) == norm_strides(&y.dims, &y.strides)
            && xt.shape() == yt.shape()
        {
            if let (Some(px), Some(py)) = (self.producer[x.t], self.producer[y.t]) {
                let (ox, oy) = (&self.g.ops[px], &self.g.ops[py]);
                if let (
                    OpKind::Conv2d { kh, kw, stride, pad, .. },
                    OpKind::Conv2d { kh: kh2, kw: kw2, stride: s2, pad: p2, weights: w2, bias: b2 },
                ) = (&ox.kind, &oy.kind)
                {
                    if ox.inputs == oy.inputs && (kh, kw, stride, pad) == (kh2, kw2, s2, p2) {
                        let (w2, b2) = (w2.clone(), b2.clone());
                        if let OpKind::Conv2d { weights, bias, .. } = &mut self.g.ops[px].kind {
                            weights.iter_mut().zip(&w2).for_each(|(a, b)| *a += b);
                            bias.iter_mut().zip(&b2).for_each(|(a, b)| *a += b);
                        }
                        self.dead[py] = true;
                        self.producer[y.t] = None;
                        return Ok(Val::Act(View { excl, ..x }));
                    }
                }
            }
        }
        let same = xt.shape() == yt.shape()
            && self.covers_whole(&x)
            && self.covers_whole(&y)
            && norm_strides(&x.dims, &x.strides) == norm_strides(&y.dims, &y.strides);
        let kind = |broadcast| {
            if op == "Add" {
                OpKind::Add { broadcast }
            } else {
                OpKind::Mul { broadcast }
            }
        };
        if same {
            let z = self.new_tensor(&node.name, xt.h, xt.w, xt.c);
            self.push(kind(false), vec![x.t, y.t], z, &node.name);
            return Ok(Val::Act(View { t: z, excl, ..x }));
        }
        let (img, vec) = if vector(&y, &yt) { (x, y) } else { (y, x) };
        let (it, vt) = (self.g.tensors[img.t].clone(), self.g.tensors[vec.t].clone());
        ensure!(
            vector(&vec, &vt) && vt.c == it.c && self.spatial_full(&img).is_some(),
            "{op} of activations {:?} and {:?}: only same-shape or image + per-channel vector is supported",
            x_dims(&img),
            x_dims(&vec)
        );
        let z = self.new_tensor(&node.name, it.h, it.w, it.c);
        self.push(kind(true), vec![img.t, vec.t], z, &node.name);
        Ok(Val::Act(self.tensor_view(z, out_shape, excl)))
    }

    /// Folds scales into their producers, drops dead ops and unused tensors.
    fn finish(mut self) -> Result<Lowered> {
        // Fold REQUANT-by-scale into a MATMUL or CONV that feeds only it.
        let n = self.g.ops.len();
        for i in 0..n {
            if self.dead[i] {
                continue;
            }
            let (alpha, src) = match &self.g.ops[i].kind {
                OpKind::Scale { alpha } => (*alpha, self.g.ops[i].inputs[0]),
                _ => continue,
            };
            let readers =
                (0..n).filter(|&j| !self.dead[j] && self.g.ops[j].inputs.contains(&src)).count();
            let Some(p) = self.producer[src] else { continue };
            if readers != 1 || src == self.g.output {
                continue;
            }
            let folded = match &mut self.g.ops[p].kind {
                OpKind::MatMul { alpha: a, .. } => {
                    *a *= alpha;
                    true
                }
                OpKind::Conv2d { weights, bias, .. } => {
                    weights.iter_mut().for_each(|w| *w *= alpha);
                    bias.iter_mut().for_each(|w| *w *= alpha);
                    true
                }
                _ => false,
            };
            if folded {
                let out = self.g.ops[i].output;
                self.g.ops[p].output = out;
                self.producer[out] = Some(p);
                self.dead[i] = true;
            }
        }
        let ops: Vec<Op> = self
            .g
            .ops
            .iter()
            .zip(&self.dead)
            .filter(|(_, d)| !**d)
            .map(|(o, _)| o.clone())
            .collect();
        // Keep referenced tensors only, renumbered in first-use order.
        let mut map = vec![usize::MAX; self.g.tensors.len()];
        let mut tensors = Vec::new();
        let mut take = |t: usize, tensors: &mut Vec<crate::ingest::ir::Tensor>| {
            if map[t] == usize::MAX {
                map[t] = tensors.len();
                tensors.push(self.g.tensors[t].clone());
            }
            map[t]
        };
        let input = take(self.g.input, &mut tensors);
        let mut new_ops = Vec::new();
        for mut op in ops {
            op.inputs = op.inputs.iter().map(|&t| take(t, &mut tensors)).collect();
            op.output = take(op.output, &mut tensors);
            new_ops.push(op);
        }
        let output = take(self.g.output, &mut tensors);
        let graph = Graph { tensors, ops: new_ops, input, output, timesteps: self.g.timesteps };
        // Sanity: every input is produced before it is read.
        let mut ready = vec![false; graph.tensors.len()];
        ready[graph.input] = true;
        for op in &graph.ops {
            for &t in &op.inputs {
                ensure!(ready[t], "internal: tensor {} read before written", graph.tensors[t].name);
            }
            ready[op.output] = true;
        }
        ensure!(ready[graph.output], "internal: output never written");
        Ok(Lowered { graph })
    }
}

fn x_dims(v: &View) -> Vec<usize> {
    v.dims.clone()
}

fn kind_name(v: &Val) -> &'static str {
    match v {
        Val::TimeOnly => "a timestep-only value",
        Val::Const(_) => "a constant",
        Val::Act(_) => "an activation",
        Val::Group(_) => "a group-norm intermediate",
    }
}

/// Reshape of a strided view (numpy's no-copy reshape): replaces `from` at `at` by `to`.
fn reshape_view(
    dims: &[usize],
    strides: &[usize],
    at: usize,
    from: &[usize],
    to: &[usize],
) -> Result<(Vec<usize>, Vec<usize>)> {
    ensure!(dims[at..at + from.len()] == *from, "reshape {from:?} does not match {dims:?} at {at}");
    let od: Vec<usize> = from.to_vec();
    let os: Vec<usize> = strides[at..at + from.len()].to_vec();
    let mut ns = vec![0usize; to.len()];
    let (mut oi, mut ni) = (0, 0);
    while oi < od.len() || ni < to.len() {
        // skip unit dims
        if ni < to.len() && to[ni] == 1 {
            ns[ni] = 0;
            ni += 1;
            continue;
        }
        if oi < od.len() && od[oi] == 1 {
            oi += 1;
            continue;
        }
        ensure!(oi < od.len() && ni < to.len(), "reshape {from:?} -> {to:?} does not line up");
        let (mut op, mut np) = (od[oi], to[ni]);
        let (ostart, nstart) = (oi, ni);
        oi += 1;
        ni += 1;
        while op != np {
            if op < np {
                ensure!(oi < od.len(), "reshape {from:?} -> {to:?} does not line up");
                op *= od[oi];
                oi += 1;
            } else {
                ensure!(ni < to.len(), "reshape {from:?} -> {to:?} does not line up");
                np *= to[ni];
                ni += 1;
            }
        }
        // old block must be contiguous
        let blk: Vec<usize> = (ostart..oi).filter(|&i| od[i] > 1).collect();
        for w in blk.windows(2) {
            ensure!(
                os[w[0]] == os[w[1]] * od[w[1]],
                "reshape {from:?} -> {to:?} merges axes that are not contiguous in memory; a copy would be needed"
            );
        }
        let mut s = blk.last().map(|&i| os[i]).unwrap_or(0);
        for j in (nstart..ni).rev() {
            ns[j] = if to[j] == 1 { 0 } else { s };
            s *= to[j];
        }
    }
    let mut d = dims[..at].to_vec();
    d.extend_from_slice(to);
    d.extend_from_slice(&dims[at + from.len()..]);
    let mut st = strides[..at].to_vec();
    st.extend_from_slice(&ns);
    st.extend_from_slice(&strides[at + from.len()..]);
    Ok((d, st))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reshape_merges_and_splits() {
        // NCHW view of a 7×7×64 tensor; merge H, W.
        let (d, s) = reshape_view(&[1, 64, 7, 7], &[0, 1, 448, 64], 2, &[7, 7], &[49]).unwrap();
        assert_eq!((d, s), (vec![1, 64, 49], vec![0, 1, 64]));
        // transposed matrix: split a stride-1 axis
        let (d, s) = reshape_view(&[49, 49], &[1, 49], 0, &[49], &[7, 7]).unwrap();
        assert_eq!((d, s), (vec![7, 7, 49], vec![7, 1, 49]));
        // merging C with H is not a view of NHWC memory
        assert!(reshape_view(&[64, 7, 7], &[1, 448, 64], 0, &[64, 7], &[448]).is_err());
    }
}
