//! The float reference: the decluttered tract model, optimized and runnable.

use std::sync::Arc;

use anyhow::{anyhow, Result};
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
/// # Errors
/// On a tract failure.
pub fn time_table(
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
