//! `converter inspect`: what an artifact holds, read back through the runtime loader.

use anyhow::{anyhow, Result};
use ddpm_runtime::format::opcode;
use ddpm_runtime::Model;
use serde_json::{json, Value};

use crate::artifact::tensors::is_int16;
use crate::artifact::write::buffers;
use crate::quantize::plan;

/// The report of one artifact, as JSON (the text form is rendered from it).
///
/// # Errors
/// When the runtime rejects the artifact.
pub fn report(bytes: &[u8]) -> Result<Value> {
    let m = Model::load(bytes).map_err(|e| anyhow!("not a valid artifact: {e}"))?;
    let mut ops = Vec::new();
    let (mut macs, mut params, mut embed_bytes) = (0u64, 0u64, 0u64);
    let mut plan_ops = Vec::new();
    // LUT16 tables (513 × i16 each), distinct ones only (the builder stores equal ones once).
    let mut lut16 = std::collections::BTreeSet::new();
    for op in m.ops() {
        let shape = |id: Option<u16>| id.and_then(|i| m.tensor_info(i).ok()).map(|t| t.shape());
        let ty = |id: Option<u16>| id.and_then(|i| m.tensor_info(i).ok()).map(|t| type_name(&t));
        let ins: Vec<_> = (0..op.n_inputs()).filter_map(|i| shape(op.input(i))).collect();
        let in_types: Vec<_> = (0..op.n_inputs()).filter_map(|i| ty(op.input(i))).collect();
        let out = shape(op.output(0));
        let mac = m.op_macs(&op);
        macs += mac;
        let p = |i: usize| op.param(i).unwrap_or(0).max(0) as u64;
        let op_params = match op.opcode {
            opcode::CONV2D => p(13) + p(15) / 4,
            opcode::GROUP_NORM => 2 * p(6) / 4,
            _ => 0,
        };
        params += op_params;
        if op.opcode == opcode::TIMESTEP_EMBED {
            embed_bytes += p(3);
        }
        if op.opcode == opcode::LUT16 {
            lut16.insert((p(0), p(1)));
        }
        ops.push(json!({
            "index": op.index, "op": op.name(), "inputs": ins, "output": out,
            "input_types": in_types, "output_type": ty(op.output(0)),
            "macs": mac, "params": op_params,
        }));
        let ids: Vec<usize> =
            (0..op.n_inputs()).filter_map(|i| op.input(i)).map(usize::from).collect();
        plan_ops.push((ids, op.output(0).map(usize::from).unwrap_or(0), op.scratch_len as usize));
    }
    let sizes: Vec<usize> = (0..m.tensor_count())
        .map(|i| m.tensor_info(i).map(|t| t.size as usize).unwrap_or(0))
        .collect();
    let infos: Vec<_> = (0..m.tensor_count()).filter_map(|i| m.tensor_info(i).ok()).collect();
    let tensor_list: Vec<Value> = infos
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({
                "id": i, "shape": t.shape(), "type": type_name(t), "bytes": t.size,
                "arena_offset": t.arena_offset, "scale": t.scale, "zero_point": t.zero_point,
            })
        })
        .collect();
    let int16: Vec<&ddpm_runtime::TensorInfo> = infos.iter().filter(|t| is_int16(t)).collect();
    let bufs = buffers(&sizes, &plan_ops, m.input_tensor() as usize, m.output_tensor() as usize);
    let lower = plan::plan(&bufs).lower_bound;
    let kind =
        ["linear", "cosine", "quadratic"].get(m.schedule_kind() as usize).copied().unwrap_or("?");
    let t = m.timesteps();
    let prov: Value =
        m.provenance().and_then(|p| serde_json::from_str(p).ok()).unwrap_or(Value::Null);
    let fb: Vec<u8> = (0..8).filter_map(|k| m.schedule_frac_bits(k)).collect();
    // The tables a model needs besides its parameters: the schedule (8 × T i32), the
    // quantized timestep embedding (T × dim i8) and the int16 activation tables (LUT16,
    // 1,026 B each; the 256 B int8 LUTs are not counted).
    let lut16_bytes: u64 = lut16.iter().map(|&(_, len)| len).sum();
    let table_bytes = 8 * 4 * t as u64 + embed_bytes + lut16_bytes;
    Ok(json!({
        "params": params,
        "flash_bytes": bytes.len(),
        "weights_bytes": m.weights().len(),
        "table_bytes": table_bytes,
        "lut16_table_bytes": lut16_bytes,
        "flash_budget_bytes": params * 11 / 10 + table_bytes,
        "arena_bytes": m.arena_bytes(),
        "arena_lower_bound_bytes": lower,
        "macs_per_step": macs,
        "tensors": m.tensor_count(),
        "int16_tensors": int16.len(),
        "int16_tensor_bytes": int16.iter().map(|t| t.size as u64).sum::<u64>(),
        "tensor_list": tensor_list,
        "image": m.image_shape(),
        "schedule": {
            "kind": kind, "timesteps": t, "frac_bits": fb,
            "c1_first": m.sched(0, 0), "c1_last": m.sched(0, t.saturating_sub(1)),
        },
        "provenance": prov,
        "ops": ops,
    }))
}

/// `"i16"` or `"i8"`: the element type of an artifact tensor.
pub fn type_name(t: &ddpm_runtime::TensorInfo) -> &'static str {
    if is_int16(t) {
        "i16"
    } else {
        "i8"
    }
}

/// Renders [`report`] as a table (int16 tensors marked `:i16`).
pub fn text(r: &Value) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "{:>4}  {:<17} {:<34} {:<18} {:>10}\n",
        "#", "op", "inputs (h,w,c)", "output", "MACs"
    ));
    for op in r["ops"].as_array().into_iter().flatten() {
        let fmt = |v: &Value| {
            let a: Vec<String> =
                v.as_array().into_iter().flatten().map(|x| x.to_string()).collect();
            format!(
                "{}x{}x{}",
                a.first().cloned().unwrap_or_default(),
                a.get(1).cloned().unwrap_or_default(),
                a.get(2).cloned().unwrap_or_default()
            )
        };
        let mark = |t: &Value| if t.as_str() == Some("i16") { ":i16" } else { "" };
        let in_types: Vec<Value> = op["input_types"].as_array().cloned().unwrap_or_default();
        let ins: Vec<String> = op["inputs"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, v)| format!("{}{}", fmt(v), in_types.get(i).map_or("", mark)))
            .collect();
        s.push_str(&format!(
            "{:>4}  {:<17} {:<34} {:<18} {:>10}\n",
            op["index"],
            op["op"].as_str().unwrap_or(""),
            ins.join(" "),
            format!("{}{}", fmt(&op["output"]), mark(&op["output_type"])),
            op["macs"]
        ));
    }
    let sc = &r["schedule"];
    s.push_str(&format!(
        "\ntensors {} ({} int16, {} bytes)\nparams {}\nflash bytes {} (weights {}; budget 1.10 × params + {} table bytes = {})\narena bytes {} (lower bound {})\nMACs per step {}\nschedule {} T={} frac_bits {}\n",
        r["tensors"], r["int16_tensors"], r["int16_tensor_bytes"], r["params"], r["flash_bytes"], r["weights_bytes"], r["table_bytes"], r["flash_budget_bytes"], r["arena_bytes"], r["arena_lower_bound_bytes"],
        r["macs_per_step"], sc["kind"].as_str().unwrap_or("?"), sc["timesteps"], sc["frac_bits"]
    ));
    if let Some(p) = r["provenance"].as_object() {
        s.push_str(&format!(
            "source sha256 {}\n",
            p.get("source_sha256").and_then(|v| v.as_str()).unwrap_or("?")
        ));
        s.push_str(&format!(
            "calibration {}\n",
            p.get("calibration").map(|v| v.to_string()).unwrap_or_default()
        ));
    }
    s
}
