//! The float reference: the decluttered tract model, optimized and runnable.

use std::sync::Arc;

use anyhow::{anyhow, bail, ensure, Context, Result};
use tract_onnx::prelude::*;

/// A runnable tract model with inputs `(x f32[1,C,H,W], t i64[1])`.
pub struct FloatModel {
    plan: Arc<TypedRunnableModel>,
    chw: [usize; 3],
}

impl FloatModel {
    /// Optimizes `model` (outputs as set in it) for repeated runs.
    ///
    /// # Errors
    /// When tract cannot optimize or plan it.
    pub fn new(model: &TypedModel, chw: [usize; 3]) -> Result<FloatModel> {
        let plan = model.clone().into_optimized()?.into_runnable()?;
        Ok(FloatModel { plan, chw })
    }

    /// Same model with `outlets` as its outputs.
    ///
    /// # Errors
    /// As [`FloatModel::new`].
    pub fn with_outputs(
        model: &TypedModel,
        chw: [usize; 3],
        outlets: &[OutletId],
    ) -> Result<FloatModel> {
        let mut m = model.clone();
        m.select_output_outlets(outlets)?;
        FloatModel::new(&m, chw)
    }

    /// Runs on `x` (NCHW) at timestep `t`; returns every output flattened.
    ///
    /// # Errors
    /// On a tract failure.
    pub fn run(&self, x: &[f32], t: i64) -> Result<Vec<Vec<f32>>> {
        let [c, h, w] = self.chw;
        let xt = Tensor::from_shape(&[1, c, h, w], x)?;
        let tt = Tensor::from_shape(&[1], &[t])?;
        let out = self.plan.run(tvec!(xt.into_tvalue(), tt.into_tvalue()))?;
        out.iter()
            .map(|o| {
                let o = o.cast_to::<f32>().map_err(|e| anyhow!("{e}"))?;
                Ok(o.to_plain_array_view::<f32>()?.iter().copied().collect())
            })
            .collect()
    }

    /// ε for `x` (NCHW) at `t`.
    ///
    /// # Errors
    /// On a tract failure.
    pub fn eps(&self, x: &[f32], t: i64) -> Result<Vec<f32>> {
        Ok(self.run(x, t)?.swap_remove(0))
    }
}

/// Evaluates `outlets` (functions of `t` only) for every `t` in `0..timesteps`:
/// row-major `[timesteps][Σ sizes]`.
///
/// Deterministic, unlike running the sub-graph with tract: its `f32` elementwise math
/// runs on tract-linalg's CPU-specific kernels (`exp`) or the platform's libm (`sin`,
/// `cos`), whose last bits differ between hosts. Each node between the timestep input
/// and `outlets` is evaluated here instead: `f32` transcendental functions with the
/// pure-Rust `libm` crate, `f32` arithmetic (exactly rounded) in scalar code, and only
/// ops that compute nothing in float (casts from integers, reshapes, slices,
/// concatenations, broadcasts, integer arithmetic) with tract's own `eval`. Constants
/// are read as tract's decluttering left them. `chw` is unused (the sub-graph does not
/// read the image); it keeps the signature of [`time_table_tract`].
///
/// # Errors
/// A node of an op this evaluator does not know, or a tract failure.
pub fn time_table(
    model: &TypedModel,
    chw: [usize; 3],
    outlets: &[OutletId],
    timesteps: usize,
) -> Result<Vec<f32>> {
    let _ = chw;
    let t_in = model.input_outlets()?[1];
    // The nodes `outlets` depend on, in evaluation order.
    let mut needed = vec![false; model.nodes().len()];
    let mut stack: Vec<usize> = outlets.iter().map(|o| o.node).collect();
    while let Some(id) = stack.pop() {
        if std::mem::replace(&mut needed[id], true) {
            continue;
        }
        if model.node(id).outputs.iter().any(|o| o.fact.konst.is_some()) {
            continue;
        }
        stack.extend(model.node(id).inputs.iter().map(|o| o.node));
    }
    let order: Vec<usize> = model.eval_order()?.into_iter().filter(|&id| needed[id]).collect();
    let mut table = Vec::new();
    for t in 0..timesteps {
        let mut vals: std::collections::HashMap<OutletId, Tensor> = Default::default();
        for &id in &order {
            let node = model.node(id);
            let outs: Vec<Tensor> = if id == t_in.node {
                vec![Tensor::from_shape(&[1], &[t as i64])?]
            } else if let Some(k) = &node.outputs[0].fact.konst {
                vec![(**k).clone()]
            } else {
                let ins = node
                    .inputs
                    .iter()
                    .map(|o| vals.get(o).cloned().ok_or_else(|| anyhow!("{o:?} not evaluated")))
                    .collect::<Result<Vec<_>>>()?;
                eval_time_node(node, ins).with_context(|| {
                    format!(
                        "evaluating the timestep sub-graph at node {:?} (op {})",
                        node.name,
                        node.op.name()
                    )
                })?
            };
            for (slot, v) in outs.into_iter().enumerate() {
                vals.insert(OutletId::new(id, slot), v);
            }
        }
        for o in outlets {
            let v = vals.get(o).ok_or_else(|| anyhow!("{o:?} not evaluated"))?;
            table.extend(f32_values(v)?);
        }
    }
    Ok(table)
}

/// `t`'s values as f32, in logical (row-major) order.
fn f32_values(t: &Tensor) -> Result<Vec<f32>> {
    let t = t.cast_to::<f32>()?;
    Ok(t.to_plain_array_view::<f32>()?.iter().copied().collect())
}

/// One node of the timestep sub-graph (see [`time_table`]).
fn eval_time_node(node: &TypedNode, ins: Vec<Tensor>) -> Result<Vec<Tensor>> {
    use tract_onnx::tract_core::ops::array::{MultiBroadcastTo, Slice, TypedConcat};
    use tract_onnx::tract_core::ops::binary::TypedBinOp;
    use tract_onnx::tract_core::ops::cast::Cast;
    use tract_onnx::tract_core::ops::change_axes::AxisOp;
    use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
    let f32_in = ins.iter().all(|t| t.datum_type() == f32::datum_type());
    let out_dt = node.outputs[0].fact.datum_type;
    let shape: Vec<usize> =
        node.outputs[0].fact.shape.as_concrete().ok_or_else(|| anyhow!("dynamic shape"))?.to_vec();
    if let Some(e) = node.op_as::<ElementWiseOp>() {
        let name = e.0.name();
        ensure!(f32_in && out_dt == f32::datum_type(), "{name} on {:?}", ins[0].datum_type());
        let f: fn(f32) -> f32 = match name.as_str() {
            "Sin" => libm::sinf,
            "Cos" => libm::cosf,
            "Exp" => libm::expf,
            "Ln" => libm::logf,
            "Tanh" => libm::tanhf,
            "Erf" => libm::erff,
            "Sqrt" => |x| x.sqrt(),
            "Rsqrt" => |x| 1.0 / x.sqrt(),
            "Recip" => |x| 1.0 / x,
            "Neg" => |x| -x,
            "Abs" => |x| x.abs(),
            "Square" => |x| x * x,
            "Sigmoid" => |x| 1.0 / (1.0 + libm::expf(-x)),
            _ => bail!("no deterministic evaluation of the elementwise op {name}"),
        };
        let v: Vec<f32> = f32_values(&ins[0])?.into_iter().map(f).collect();
        return Ok(vec![Tensor::from_shape(&shape, &v)?]);
    }
    if let Some(b) = node.op_as::<TypedBinOp>() {
        if f32_in {
            let name = b.0.name();
            ensure!(out_dt == f32::datum_type(), "{name} of f32 giving {out_dt:?}");
            let f: fn(f32, f32) -> f32 = match name {
                "Add" => |a, b| a + b,
                "Sub" => |a, b| a - b,
                "Mul" => |a, b| a * b,
                "Div" => |a, b| a / b,
                "Min" => f32::min,
                "Max" => f32::max,
                _ => bail!("no deterministic evaluation of the f32 binary op {name}"),
            };
            let (a, b) = (broadcast(&ins[0], &shape)?, broadcast(&ins[1], &shape)?);
            let v: Vec<f32> = a.iter().zip(&b).map(|(&x, &y)| f(x, y)).collect();
            return Ok(vec![Tensor::from_shape(&shape, &v)?]);
        }
        // Integer arithmetic: exact on every host.
        ensure!(
            ins.iter().all(|t| t.datum_type().is_integer()),
            "binary op {} on {:?}",
            b.0.name(),
            ins.iter().map(|t| t.datum_type()).collect::<Vec<_>>()
        );
    } else if let Some(c) = node.op_as::<Cast>() {
        // Integer → float conversion is exactly rounded; float → float narrowing too.
        ensure!(
            c.to.is_integer() || c.to.is_float(),
            "cast to {:?} is not evaluated deterministically",
            c.to
        );
    } else if !(node.op_is::<AxisOp>()
        || node.op_is::<Slice>()
        || node.op_is::<TypedConcat>()
        || node.op_is::<MultiBroadcastTo>())
    {
        bail!("no deterministic evaluation of {}", node.op.name());
    }
    // Data movement, integer arithmetic and casts: no float rounding that could depend
    // on the host.
    let out = node
        .op
        .eval_out_of_plan(ins.into_iter().map(|t| t.into_tvalue()).collect())?
        .ok_or_else(|| anyhow!("{} cannot run outside a plan", node.op.name()))?;
    Ok(out.into_iter().map(|v| v.into_tensor()).collect())
}

/// `t`'s f32 values broadcast (numpy rules) to `shape`, row-major.
fn broadcast(t: &Tensor, shape: &[usize]) -> Result<Vec<f32>> {
    let v = f32_values(t)?;
    let ts = t.shape();
    ensure!(ts.len() <= shape.len(), "cannot broadcast {ts:?} to {shape:?}");
    let lead = shape.len() - ts.len();
    // Input strides per output axis (0 where broadcast).
    let mut strides = vec![0usize; shape.len()];
    let mut acc = 1;
    for i in (0..ts.len()).rev() {
        ensure!(ts[i] == shape[lead + i] || ts[i] == 1, "cannot broadcast {ts:?} to {shape:?}");
        strides[lead + i] = if ts[i] == 1 { 0 } else { acc };
        acc *= ts[i];
    }
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(n);
    for flat in 0..n {
        let (mut rem, mut off) = (flat, 0);
        for ax in (0..shape.len()).rev() {
            off += (rem % shape[ax]) * strides[ax];
            rem /= shape[ax];
        }
        out.push(v[off]);
    }
    Ok(out)
}

/// [`time_table`] run by tract (its float kernels: the last bits depend on the host
/// CPU). Kept to check the deterministic evaluator against.
///
/// # Errors
/// On a tract failure.
pub fn time_table_tract(
    model: &TypedModel,
    chw: [usize; 3],
    outlets: &[OutletId],
    timesteps: usize,
) -> Result<Vec<f32>> {
    let fm = FloatModel::with_outputs(model, chw, outlets)?;
    let x = vec![0f32; chw.iter().product()];
    let mut table = Vec::new();
    for t in 0..timesteps {
        for o in fm.run(&x, t as i64)? {
            table.extend(o);
        }
    }
    Ok(table)
}
