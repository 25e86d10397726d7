//! Loading an ONNX model with tract: fixed input facts, typed, decluttered.

use std::path::Path;

use anyhow::{bail, Context, Result};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

/// A loaded, typed and decluttered model with its fixed image shape.
pub struct Loaded {
    /// The decluttered tract model (inputs: image, timestep; output: ε).
    pub model: TypedModel,
    /// Image shape `[c, h, w]` (batch 1).
    pub image_chw: [usize; 3],
    /// SHA-256 of the source file, lowercase hex.
    pub sha256: String,
}

/// Loads `path`, fixing the inputs to `x: f32[1, C, H, W]` and `t: i64[1]`.
///
/// `input_shape` overrides `[C, H, W]` when the file leaves it dynamic.
///
/// # Errors
/// Missing, truncated or non-ONNX files, a wrong number of inputs or outputs, or a
/// shape that stays dynamic.
pub fn load(path: &Path, input_shape: Option<[usize; 3]>) -> Result<Loaded> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.is_empty() {
        bail!("{} is empty, not an ONNX model", path.display());
    }
    // tract 0.23 panics on some malformed graphs (e.g. an Unsqueeze axis out of
    // range) instead of returning an error. Turn such a panic into an error that
    // names the file; the panic hook is silenced meanwhile so the CLI prints one
    // line, and restored afterwards.
    let prev_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        load_bytes(path, &bytes, input_shape)
    }));
    std::panic::set_hook(prev_hook);
    match r {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            bail!(
                "{} is not a valid ONNX model: tract failed while reading it ({msg}); check the file or re-export it",
                path.display()
            )
        }
    }
}

fn load_bytes(path: &Path, bytes: &[u8], input_shape: Option<[usize; 3]>) -> Result<Loaded> {
    let sha256 = {
        use sha2::Digest;
        let d = sha2::Sha256::digest(bytes);
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let onnx = tract_onnx::onnx();
    let mut model = onnx.model_for_read(&mut &bytes[..]).map_err(|e| {
        anyhow::anyhow!("{} is not a readable ONNX model: {}", path.display(), root(&e))
    })?;
    let inputs = model.input_outlets()?.len();
    if inputs != 2 {
        bail!(
            "{} has {inputs} inputs; a DDPM UNet needs exactly 2 (image x f32[1,C,H,W], timestep t i64[1])",
            path.display()
        );
    }
    let outputs = model.output_outlets()?.len();
    if outputs != 1 {
        bail!("{} has {outputs} outputs; expected exactly 1 (ε, same shape as x)", path.display());
    }
    // Image shape: from the file when it is concrete, else from --input-shape.
    let fact = model.input_fact(0)?.clone();
    let from_file: Option<Vec<usize>> = fact.shape.concretize().and_then(|dims| {
        dims.iter().map(|d| d.to_i64().ok().map(|v| v as usize)).collect::<Option<Vec<_>>>()
    });
    let chw = match (input_shape, from_file) {
        (Some(s), _) => s,
        (None, Some(d)) if d.len() == 4 && d[0] == 1 => [d[1], d[2], d[3]],
        (None, Some(d)) => bail!(
            "input 0 of {} has shape {d:?}; expected [1, C, H, W] (override with --input-shape C,H,W)",
            path.display()
        ),
        (None, None) => bail!(
            "input 0 of {} has a dynamic shape {:?} that cannot be fixed from the file; pass --input-shape C,H,W",
            path.display(),
            fact.shape
        ),
    };
    check_constant_shapes(path, &model)?;
    model.set_input_fact(0, f32::fact([1, chw[0], chw[1], chw[2]]).into())?;
    model.set_input_fact(1, i64::fact([1]).into())?;
    let typed = model.into_typed().map_err(|e| {
        anyhow::anyhow!(
            "cannot type {} with x f32[1,{},{},{}], t i64[1]: {}",
            path.display(),
            chw[0],
            chw[1],
            chw[2],
            root(&e)
        )
    })?;
    let model = typed
        .into_decluttered()
        .map_err(|e| anyhow::anyhow!("cannot declutter {}: {}", path.display(), root(&e)))?;
    // Every fact must now be concrete.
    for node in model.nodes() {
        for (i, o) in node.outputs.iter().enumerate() {
            if o.fact.shape.as_concrete().is_none() {
                bail!(
                    "node {:?} ({}) output {i} keeps a dynamic shape {:?} after fixing the inputs",
                    node.name,
                    node.op.name(),
                    o.fact.shape
                );
            }
        }
    }
    Ok(Loaded { model, image_chw: chw, sha256 })
}

/// Largest tensor (elements) a `ConstantOfShape` or `Expand` node may ask for.
/// tract materializes such constants while typing the model, so a file of a few
/// bytes could otherwise make the converter fill gigabytes. The shipped UNet's
/// largest tensor has 73 728 elements.
pub const MAX_CONST_ELEMENTS: u64 = 1 << 26;

/// Rejects `ConstantOfShape`/`Expand` nodes whose constant target shape has a negative
/// dimension (tract would read it as a huge `usize`) or more than
/// [`MAX_CONST_ELEMENTS`] elements, before tract materializes them.
fn check_constant_shapes(path: &Path, model: &InferenceModel) -> Result<()> {
    use tract_onnx::tract_hir::ops::konst::Const;
    for node in model.nodes() {
        let op = node.op.name();
        if op != "ConstantOfShape" && op != "MultiBroadcastTo" {
            continue;
        }
        let Some(shape_in) = node.inputs.get(if op == "ConstantOfShape" { 0 } else { 1 }) else {
            continue;
        };
        let Some(k) = model.node(shape_in.node).op_as::<Const>() else { continue };
        let Ok(dims) = k.val().cast_to::<i64>() else { continue };
        let Ok(dims) = dims.try_as_plain_ram().and_then(|d| d.as_slice::<i64>()) else { continue };
        if let Some(d) = dims.iter().find(|&&d| d < 0) {
            bail!(
                "{}: node {:?} ({op}) has a negative dimension {d} in its target shape {dims:?}; \
                 shapes must be >= 0 (re-export the model with a fixed, valid shape)",
                path.display(),
                node.name
            );
        }
        let n = dims.iter().fold(1u64, |n, &d| n.saturating_mul(d as u64));
        if n > MAX_CONST_ELEMENTS {
            bail!(
                "{}: node {:?} ({op}) would create a tensor of shape {dims:?} ({n} elements, limit {MAX_CONST_ELEMENTS})",
                path.display(),
                node.name
            );
        }
    }
    Ok(())
}

/// The innermost cause of a tract error, on one line.
pub fn root(e: &anyhow::Error) -> String {
    let msgs: Vec<String> = e.chain().map(|c| c.to_string()).collect();
    msgs.join(": ").replace('\n', " ")
}

/// One line per node of the decluttered graph: id, name, op, inputs, output facts.
pub fn dump(model: &TypedModel) -> String {
    let mut s = String::new();
    for id in model.eval_order().unwrap_or_default() {
        let n = model.node(id);
        let ins: Vec<String> = n.inputs.iter().map(|o| format!("{}/{}", o.node, o.slot)).collect();
        let outs: Vec<String> = n.outputs.iter().map(|o| format!("{:?}", o.fact)).collect();
        s.push_str(&format!(
            "#{id} {} [{}] <- ({}) -> {} :: {:?}\n",
            n.name,
            n.op.name(),
            ins.join(", "),
            outs.join(", "),
            n.op
        ));
    }
    s
}
