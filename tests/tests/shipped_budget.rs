//! The shipped model's artifact meets the converter's size budgets:
//! `flash_bytes ≤ 1.10 × params + tables` (schedule and timestep-embedding tables)
//! and `arena_bytes ≤ 1.10 × arena_lower_bound_bytes` (the largest set of tensors
//! alive at once). Both figures come from `converter inspect --json`'s report.
//!
//! Environment: `DDPM_ARTIFACT` (an artifact of the shipped model to check; otherwise
//! `models/mnist_unet.onnx` is quantized here with the default settings).

mod common;
use common::artifact_bytes;

#[test]
fn shipped_model_meets_flash_and_arena_budgets() {
    let bytes = artifact_bytes();
    let r = ddpm_converter::artifact::inspect::report(&bytes).unwrap();
    let get = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("inspect report lacks {k}"));
    let (params, flash, tables) = (get("params"), get("flash_bytes"), get("table_bytes"));
    let (arena, lower) = (get("arena_bytes"), get("arena_lower_bound_bytes"));
    assert_eq!(flash as usize, bytes.len());
    // 8 schedule tables of T i32, a T × 32 int8 embedding table for this model, and
    // the int16 activation LUTs (513 i16 entries each) the mixed policy adds.
    let t = r["schedule"]["timesteps"].as_u64().unwrap();
    let lut16 = get("lut16_table_bytes");
    assert_eq!(lut16 % (513 * 2), 0, "lut16 tables are whole 513-entry i16 tables");
    assert_eq!(tables, 8 * 4 * t + 32 * t + lut16, "table bytes of the shipped model");
    assert_eq!(get("flash_budget_bytes"), params * 11 / 10 + tables);
    assert!(
        flash <= params * 11 / 10 + tables,
        "flash {flash} B exceeds 1.10 × {params} params + {tables} table bytes"
    );
    assert!(arena * 10 <= lower * 11, "arena {arena} B exceeds 1.10 × lower bound {lower} B");
}
