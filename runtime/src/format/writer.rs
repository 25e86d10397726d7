//! Artifact builder (host only, `std` feature): the converter and the tests write
//! `.ddq` files with it, so the layout rules live in one place.

#![allow(clippy::indexing_slicing)] // host-only builder; panics here are bugs in the caller

use super::{
    artifact_crc, section, HEADER_SIZE, MAGIC, SECTION_ALIGN, SECTION_ENTRY_SIZE, VERSION,
};

/// A byte range inside the WEIGHTS section (offset relative to its start).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeightRef {
    /// Byte offset from the start of WEIGHTS (4-byte aligned).
    pub offset: u32,
    /// Length in bytes.
    pub len: u32,
}

impl WeightRef {
    /// The two param words `offset, len` as stored in op params.
    pub fn params(&self) -> [i32; 2] {
        [self.offset as i32, self.len as i32]
    }
}

/// One tensor record.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TensorDesc {
    /// Height.
    pub h: u16,
    /// Width.
    pub w: u16,
    /// Channels.
    pub c: u16,
    /// Byte offset in the network arena.
    pub arena_offset: u32,
    /// Zero point (−128..=127).
    pub zero_point: i32,
    /// Scale (informational).
    pub scale: f32,
}

/// One op record.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct OpDesc {
    /// Opcode (`format::opcode`).
    pub opcode: u16,
    /// Input tensor ids.
    pub inputs: Vec<u16>,
    /// Output tensor ids.
    pub outputs: Vec<u16>,
    /// Params in FORMAT.md order.
    pub params: Vec<i32>,
    /// Arena offset of the kernel scratch.
    pub scratch_offset: u32,
    /// Scratch length in bytes (see `format::scratch_bytes`).
    pub scratch_len: u32,
}

/// The MODEL section.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ModelDesc {
    /// Tensor id of the network input (x_t, int8).
    pub input_tensor: u32,
    /// Tensor id of the network output (ε, int8 or int16).
    pub output_tensor: u32,
    /// Training timesteps T.
    pub timesteps: u32,
    /// Fractional bits F of the sampler state (24).
    pub state_frac_bits: u32,
    /// TFLite multiplier, state → input int8 (real `2^-F / s_in`).
    pub input_multiplier: i32,
    /// TFLite shift for `input_multiplier`.
    pub input_shift: i32,
    /// `round(s_eps · 2^(F+16))`.
    pub eps_to_state_q16: i64,
    /// Image height.
    pub image_h: u32,
    /// Image width.
    pub image_w: u32,
    /// Image channels.
    pub image_c: u32,
}

/// The SCHEDULE section.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ScheduleDesc {
    /// T.
    pub timesteps: u32,
    /// 0 linear, 1 cosine, 2 quadratic.
    pub kind: u32,
    /// β at the first step.
    pub beta_start: f32,
    /// β at the last step.
    pub beta_end: f32,
    /// Fractional bits of each table.
    pub frac_bits: [u8; 8],
    /// The 8 tables, `T` values each (`format::table`).
    pub tables: [Vec<i32>; 8],
}

impl ScheduleDesc {
    /// Tables for the β sequence `betas` (network timesteps `0..T`), computed as
    /// FORMAT.md states: f64, rounded once to Q30 (fewer fractional bits for a
    /// table whose largest value would not fit).
    pub fn from_betas(kind: u32, betas: &[f64]) -> Self {
        let t = betas.len();
        let mut f = vec![vec![0f64; t]; 8];
        let mut ab_prev = 1.0f64;
        for (i, &b) in betas.iter().enumerate() {
            let a = 1.0 - b;
            let ab = ab_prev * a;
            let bt = b * (1.0 - ab_prev) / (1.0 - ab);
            f[0][i] = 1.0 / a.sqrt();
            f[1][i] = b / (1.0 - ab).sqrt();
            f[2][i] = b.sqrt();
            f[3][i] = bt.max(0.0).sqrt();
            f[4][i] = ab.sqrt();
            f[5][i] = (1.0 - ab).sqrt();
            f[6][i] = b * ab_prev.sqrt() / (1.0 - ab);
            f[7][i] = a.sqrt() * (1.0 - ab_prev) / (1.0 - ab);
            ab_prev = ab;
        }
        let mut frac_bits = [30u8; 8];
        let mut tables: [Vec<i32>; 8] = Default::default();
        for k in 0..8 {
            let max = f[k].iter().fold(0f64, |m, v| m.max(v.abs()));
            let mut fb = 30u8;
            while fb > 0 && (max * (1u64 << fb) as f64).round() >= 2_147_483_647.0 {
                fb -= 1;
            }
            frac_bits[k] = fb;
            tables[k] = f[k].iter().map(|v| (v * (1u64 << fb) as f64).round() as i32).collect();
        }
        ScheduleDesc {
            timesteps: t as u32,
            kind,
            beta_start: betas.first().copied().unwrap_or(0.0) as f32,
            beta_end: betas.last().copied().unwrap_or(0.0) as f32,
            frac_bits,
            tables,
        }
    }

    /// Linear β schedule (DDPM): `β_i = start + (end − start)·i/(T−1)`.
    pub fn linear(timesteps: u32, beta_start: f64, beta_end: f64) -> Self {
        let n = timesteps.max(1) as usize;
        let d = (n.max(2) - 1) as f64;
        let betas: Vec<f64> =
            (0..n).map(|i| beta_start + (beta_end - beta_start) * i as f64 / d).collect();
        Self::from_betas(0, &betas)
    }

    /// Quadratic schedule: `β_i = (√start + (√end − √start)·i/(T−1))²`.
    pub fn quadratic(timesteps: u32, beta_start: f64, beta_end: f64) -> Self {
        let n = timesteps.max(1) as usize;
        let d = (n.max(2) - 1) as f64;
        let (a, b) = (beta_start.sqrt(), beta_end.sqrt());
        let betas: Vec<f64> = (0..n).map(|i| (a + (b - a) * i as f64 / d).powi(2)).collect();
        let mut s = Self::from_betas(2, &betas);
        s.beta_start = beta_start as f32;
        s.beta_end = beta_end as f32;
        s
    }

    /// Cosine schedule (Nichol & Dhariwal 2021, s = 0.008, β clipped at 0.999).
    pub fn cosine(timesteps: u32) -> Self {
        let n = timesteps.max(1) as usize;
        let f =
            |t: f64| ((t / n as f64 + 0.008) / 1.008 * core::f64::consts::FRAC_PI_2).cos().powi(2);
        let betas: Vec<f64> =
            (0..n).map(|i| (1.0 - f(i as f64 + 1.0) / f(i as f64)).min(0.999)).collect();
        Self::from_betas(1, &betas)
    }
}

/// Builds an artifact; `finish` lays out the sections and computes the CRC.
#[derive(Default, Debug, Clone)]
pub struct ArtifactBuilder {
    weights: Vec<u8>,
    tensors: Vec<TensorDesc>,
    /// Per tensor: int16 elements (`TENSOR_INT16`).
    int16: Vec<bool>,
    ops: Vec<OpDesc>,
    model: ModelDesc,
    schedule: ScheduleDesc,
    provenance: Option<String>,
    arena_bytes: u32,
    /// Blobs already in WEIGHTS, so identical ones are stored once.
    blobs: std::collections::BTreeMap<Vec<u8>, u32>,
}

/// Alignment of every WEIGHTS entry.
const WEIGHT_ALIGN: usize = 4;

fn pad_to(v: &mut Vec<u8>, align: usize) {
    while v.len() % align != 0 {
        v.push(0);
    }
}

impl ArtifactBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends raw bytes to WEIGHTS at a 4-byte aligned offset (enough for the i32
    /// and u32 arrays kernels read in place). A blob equal to one already added is
    /// not stored again: both references point at the same bytes.
    pub fn add_weights(&mut self, bytes: &[u8]) -> WeightRef {
        let len = bytes.len() as u32;
        if let Some(&offset) = self.blobs.get(bytes) {
            return WeightRef { offset, len };
        }
        pad_to(&mut self.weights, WEIGHT_ALIGN);
        let offset = self.weights.len() as u32;
        self.weights.extend_from_slice(bytes);
        self.blobs.insert(bytes.to_vec(), offset);
        WeightRef { offset, len }
    }

    /// Appends int8 values.
    pub fn add_weights_i8(&mut self, v: &[i8]) -> WeightRef {
        let b: Vec<u8> = v.iter().map(|&x| x as u8).collect();
        self.add_weights(&b)
    }

    /// Appends little-endian i32 values.
    pub fn add_weights_i32(&mut self, v: &[i32]) -> WeightRef {
        let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.add_weights(&b)
    }

    /// Appends little-endian u32 values.
    pub fn add_weights_u32(&mut self, v: &[u32]) -> WeightRef {
        let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.add_weights(&b)
    }

    /// Adds a tensor record, returns its id.
    pub fn add_tensor(&mut self, t: TensorDesc) -> u16 {
        self.tensors.push(t);
        self.int16.push(false);
        (self.tensors.len() - 1) as u16
    }

    /// Adds an int16 tensor record (flag `TENSOR_INT16`, `2·h·w·c` bytes; the zero
    /// point must be 0 and the arena offset even), returns its id.
    pub fn add_tensor_i16(&mut self, t: TensorDesc) -> u16 {
        self.tensors.push(t);
        self.int16.push(true);
        (self.tensors.len() - 1) as u16
    }

    /// Appends little-endian i16 values.
    pub fn add_weights_i16(&mut self, v: &[i16]) -> WeightRef {
        let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.add_weights(&b)
    }

    /// Appends an op record (ops run in insertion order).
    pub fn add_op(&mut self, op: OpDesc) {
        self.ops.push(op);
    }

    /// Sets the MODEL section (tensor and op counts are filled in by `finish`).
    pub fn set_model(&mut self, m: ModelDesc) {
        self.model = m;
    }

    /// Sets the SCHEDULE section.
    pub fn set_schedule(&mut self, s: ScheduleDesc) {
        self.schedule = s;
    }

    /// Sets the PROVENANCE JSON (the section is omitted if never set).
    pub fn set_provenance(&mut self, json: &str) {
        self.provenance = Some(json.to_owned());
    }

    /// Sets the network arena size recorded in the header.
    pub fn set_arena_bytes(&mut self, n: u32) {
        self.arena_bytes = n;
    }

    fn model_bytes(&self) -> Vec<u8> {
        let m = &self.model;
        let mut b = Vec::with_capacity(64);
        b.extend((self.tensors.len() as u32).to_le_bytes());
        b.extend((self.ops.len() as u32).to_le_bytes());
        b.extend(m.input_tensor.to_le_bytes());
        b.extend(m.output_tensor.to_le_bytes());
        b.extend(m.timesteps.to_le_bytes());
        b.extend(m.state_frac_bits.to_le_bytes());
        b.extend(m.input_multiplier.to_le_bytes());
        b.extend(m.input_shift.to_le_bytes());
        b.extend(m.eps_to_state_q16.to_le_bytes());
        b.extend(m.image_h.to_le_bytes());
        b.extend(m.image_w.to_le_bytes());
        b.extend(m.image_c.to_le_bytes());
        b.resize(64, 0);
        b
    }

    fn tensor_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.tensors.len() * 32);
        for (i, t) in self.tensors.iter().enumerate() {
            let wide = self.int16.get(i).copied().unwrap_or(false);
            let size = t.h as u64 * t.w as u64 * t.c as u64 * if wide { 2 } else { 1 };
            b.extend(t.h.to_le_bytes());
            b.extend(t.w.to_le_bytes());
            b.extend(t.c.to_le_bytes());
            b.extend(if wide { super::TENSOR_INT16 } else { 0u16 }.to_le_bytes());
            b.extend(t.arena_offset.to_le_bytes());
            b.extend((size.min(u32::MAX as u64) as u32).to_le_bytes());
            b.extend(t.zero_point.to_le_bytes());
            b.extend(t.scale.to_le_bytes());
            b.extend([0u8; 8]);
        }
        b
    }

    fn op_bytes(&self) -> Vec<u8> {
        let mut b = Vec::new();
        for op in &self.ops {
            b.extend(op.opcode.to_le_bytes());
            b.push(op.inputs.len() as u8);
            b.push(op.outputs.len() as u8);
            b.extend((op.params.len() as u16).to_le_bytes());
            b.extend(0u16.to_le_bytes());
            b.extend(op.scratch_offset.to_le_bytes());
            b.extend(op.scratch_len.to_le_bytes());
            for id in op.inputs.iter().chain(op.outputs.iter()) {
                b.extend(id.to_le_bytes());
            }
            pad_to(&mut b, 4);
            for p in &op.params {
                b.extend(p.to_le_bytes());
            }
        }
        b
    }

    fn schedule_bytes(&self) -> Vec<u8> {
        let s = &self.schedule;
        let mut b = Vec::new();
        b.extend(s.timesteps.to_le_bytes());
        b.extend(s.kind.to_le_bytes());
        b.extend(s.beta_start.to_le_bytes());
        b.extend(s.beta_end.to_le_bytes());
        b.extend(8u32.to_le_bytes());
        b.extend(0u32.to_le_bytes());
        b.extend(s.frac_bits);
        for t in &s.tables {
            for v in t {
                b.extend(v.to_le_bytes());
            }
        }
        b
    }

    /// Lays out header, section table and sections; computes the CRC.
    pub fn finish(self) -> Vec<u8> {
        let mut sections: Vec<(u32, Vec<u8>)> = vec![
            (section::MODEL, self.model_bytes()),
            (section::TENSORS, self.tensor_bytes()),
            (section::OPS, self.op_bytes()),
            (section::WEIGHTS, self.weights.clone()),
            (section::SCHEDULE, self.schedule_bytes()),
        ];
        if let Some(p) = &self.provenance {
            sections.push((section::PROVENANCE, p.as_bytes().to_vec()));
        }
        let mut out = vec![0u8; HEADER_SIZE + sections.len() * SECTION_ENTRY_SIZE];
        pad_to(&mut out, SECTION_ALIGN);
        let mut table = Vec::new();
        for (kind, bytes) in &sections {
            pad_to(&mut out, SECTION_ALIGN);
            table.push((*kind, out.len() as u32, bytes.len() as u32));
            out.extend_from_slice(bytes);
        }
        pad_to(&mut out, SECTION_ALIGN);
        for (i, (kind, off, len)) in table.iter().enumerate() {
            let e = HEADER_SIZE + i * SECTION_ENTRY_SIZE;
            out[e..e + 4].copy_from_slice(&kind.to_le_bytes());
            out[e + 4..e + 8].copy_from_slice(&off.to_le_bytes());
            out[e + 8..e + 12].copy_from_slice(&len.to_le_bytes());
        }
        out[0..8].copy_from_slice(&MAGIC);
        out[8..10].copy_from_slice(&VERSION.to_le_bytes());
        out[10..12].copy_from_slice(&(HEADER_SIZE as u16).to_le_bytes());
        out[12..14].copy_from_slice(&(sections.len() as u16).to_le_bytes());
        let file_size = out.len() as u32;
        out[16..20].copy_from_slice(&file_size.to_le_bytes());
        out[24..28].copy_from_slice(&self.arena_bytes.to_le_bytes());
        let crc = artifact_crc(&out);
        out[20..24].copy_from_slice(&crc.to_le_bytes());
        out
    }
}

/// A minimal valid artifact (one 1×1 CONV2D, 2×2×1 image, T = 4) for examples.
pub fn doc_artifact() -> Vec<u8> {
    let mut b = ArtifactBuilder::new();
    let t =
        |arena_offset| TensorDesc { h: 2, w: 2, c: 1, arena_offset, zero_point: 0, scale: 0.03 };
    let x = b.add_tensor(t(0));
    let y = b.add_tensor(t(16));
    let w = b.add_weights_i8(&[64]);
    let bias = b.add_weights_i32(&[0]);
    let (m, s) = super::quantize_multiplier(0.5 / 64.0);
    let mult = b.add_weights_i32(&[m]);
    let shift = b.add_weights_i32(&[s]);
    let mut params = vec![1, 1, 1, 1, 0, 0, 0, 0, 0, 0, -128, 127];
    for r in [w, bias, mult, shift] {
        params.extend(r.params());
    }
    let opcode = super::opcode::CONV2D;
    let (inputs, outputs) = (vec![x], vec![y]);
    b.add_op(OpDesc { opcode, inputs, outputs, params, scratch_offset: 32, scratch_len: 4 });
    let (im, is) = super::quantize_multiplier(2f64.powi(-24) / 0.03);
    b.set_model(ModelDesc {
        input_tensor: x as u32,
        output_tensor: y as u32,
        timesteps: 4,
        state_frac_bits: 24,
        input_multiplier: im,
        input_shift: is,
        eps_to_state_q16: (0.03 * 2f64.powi(40)) as i64,
        image_h: 2,
        image_w: 2,
        image_c: 1,
    });
    b.set_schedule(ScheduleDesc::linear(4, 0.1, 0.5));
    b.set_arena_bytes(48);
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_word_aligned_and_shared_when_identical() {
        let mut b = ArtifactBuilder::new();
        let a = b.add_weights_i8(&[1, 2, 3]);
        let c = b.add_weights_i32(&[7, 8]);
        let d = b.add_weights_i8(&[1, 2, 3]);
        let e = b.add_weights_i8(&[1, 2, 4]);
        assert_eq!(a.offset, 0);
        assert_eq!(c.offset, 4, "an i32 array starts at the next multiple of 4");
        assert_eq!(d, a, "an identical blob is stored once");
        assert_eq!(e.offset, 12);
        assert_eq!(b.weights.len(), 15);
    }
}
