//! Loading and validating an artifact; tensor and op views.

use crate::error::Error;
use crate::format::{
    opcode, param_count, read_f32, read_i32, read_i64, read_u16, read_u32, section, CONV_I16_MAX_K,
    HEADER_SIZE, LUT16_ENTRIES, MAGIC, MAX_OPS, MAX_SECTIONS, MAX_TENSORS, MODEL_SIZE,
    SCHEDULE_HEADER_SIZE, SCHEDULE_TABLES, SECTION_ALIGN, SECTION_ENTRY_SIZE, TENSOR_INT16,
    TENSOR_RECORD_SIZE, VERSION,
};

/// Largest element count of one group in GROUP_NORM (keeps the i128 math in range).
pub(crate) const GN_MAX_GROUP: u64 = 1 << 24;
/// Largest `eps_q32` accepted by GROUP_NORM.
pub(crate) const GN_MAX_EPS: u64 = 1 << 56;

/// Shape and quantization of one tensor.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TensorInfo {
    /// Height.
    pub h: u16,
    /// Width.
    pub w: u16,
    /// Channels.
    pub c: u16,
    /// Byte offset in the network arena.
    pub arena_offset: u32,
    /// Size in bytes (= h·w·c for int8, 2·h·w·c for int16).
    pub size: u32,
    /// Zero point.
    pub zero_point: i32,
    /// Scale (informational; the runtime does no float math).
    pub scale: f32,
    /// Elements are little-endian int16 (flag `TENSOR_INT16`); otherwise int8.
    pub int16: bool,
}

impl TensorInfo {
    /// `[h, w, c]`.
    pub fn shape(&self) -> [u16; 3] {
        [self.h, self.w, self.c]
    }
    /// Number of elements (`h·w·c`).
    pub fn elems(&self) -> u32 {
        if self.int16 {
            self.size / 2
        } else {
            self.size
        }
    }
    /// Smallest and largest value of the element type.
    pub fn value_range(&self) -> (i32, i32) {
        if self.int16 {
            (i16::MIN as i32, i16::MAX as i32)
        } else {
            (-128, 127)
        }
    }
    fn range(&self) -> (u64, u64) {
        (self.arena_offset as u64, self.arena_offset as u64 + self.size as u64)
    }
}

/// The elements of one tensor in an arena: int8, or int16 little-endian.
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a> {
    bytes: &'a [u8],
    int16: bool,
}

impl<'a> TensorView<'a> {
    /// A view of `bytes` as int8 or (`int16`) little-endian int16 elements.
    pub fn new(bytes: &'a [u8], int16: bool) -> Self {
        Self { bytes, int16 }
    }
    /// Whether the elements are int16.
    pub fn is_int16(&self) -> bool {
        self.int16
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        if self.int16 {
            self.bytes.len() / 2
        } else {
            self.bytes.len()
        }
    }
    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Element `i` (quantized value), `None` past the end.
    pub fn get(&self, i: usize) -> Option<i32> {
        if self.int16 {
            let b = self.bytes.get(i.checked_mul(2)?..i.checked_mul(2)?.checked_add(2)?)?;
            Some(i16::from_le_bytes([*b.first()?, *b.get(1)?]) as i32)
        } else {
            self.bytes.get(i).map(|&v| v as i8 as i32)
        }
    }
    /// The elements in order.
    pub fn iter(&self) -> impl Iterator<Item = i32> + 'a {
        let v = *self;
        (0..v.len()).map(move |i| v.get(i).unwrap_or(0))
    }
    /// The elements as int8, if they are int8.
    pub fn as_i8(&self) -> Option<&'a [i8]> {
        if self.int16 {
            None
        } else {
            Some(crate::ops::numerics::as_i8(self.bytes))
        }
    }
    /// The raw bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

/// A view of one op record.
#[derive(Clone, Copy, Debug)]
pub struct Op<'a> {
    /// Position in the op list.
    pub index: u16,
    /// Opcode (`format::opcode`).
    pub opcode: u16,
    n_in: u8,
    n_out: u8,
    ids: &'a [u8],
    params: &'a [u8],
    /// Arena offset of the kernel scratch.
    pub scratch_offset: u32,
    /// Scratch length in bytes.
    pub scratch_len: u32,
}

impl<'a> Op<'a> {
    /// Number of input tensors.
    pub fn n_inputs(&self) -> usize {
        self.n_in as usize
    }
    /// Number of output tensors.
    pub fn n_outputs(&self) -> usize {
        self.n_out as usize
    }
    /// Input tensor id `i`.
    pub fn input(&self, i: usize) -> Option<u16> {
        if i >= self.n_in as usize {
            return None;
        }
        read_u16(self.ids, i * 2)
    }
    /// Output tensor id `i`.
    pub fn output(&self, i: usize) -> Option<u16> {
        if i >= self.n_out as usize {
            return None;
        }
        read_u16(self.ids, (self.n_in as usize + i) * 2)
    }
    /// Number of params.
    pub fn n_params(&self) -> usize {
        self.params.len() / 4
    }
    /// Param `i`.
    pub fn param(&self, i: usize) -> Option<i32> {
        read_i32(self.params, i.checked_mul(4)?)
    }
    /// Opcode name.
    pub fn name(&self) -> &'static str {
        crate::format::opcode_name(self.opcode)
    }
    pub(crate) fn p(&self, i: usize) -> i32 {
        self.param(i).unwrap_or(0)
    }
}

/// Parses the op record at `off`; returns the op and the offset of the next record.
fn parse_op(ops: &[u8], off: usize, index: u16) -> Option<(Op<'_>, usize)> {
    let opcode = read_u16(ops, off)?;
    let n_in = *ops.get(off + 2)?;
    let n_out = *ops.get(off + 3)?;
    let n_params = read_u16(ops, off + 4)? as usize;
    let scratch_offset = read_u32(ops, off + 8)?;
    let scratch_len = read_u32(ops, off + 12)?;
    let ids_start = off.checked_add(16)?;
    let ids_len = (n_in as usize + n_out as usize) * 2;
    let ids_padded = (ids_len + 3) & !3;
    let ids = ops.get(ids_start..ids_start.checked_add(ids_len)?)?;
    let p_start = ids_start.checked_add(ids_padded)?;
    let p_end = p_start.checked_add(n_params * 4)?;
    let params = ops.get(p_start..p_end)?;
    Some((Op { index, opcode, n_in, n_out, ids, params, scratch_offset, scratch_len }, p_end))
}

/// Iterator over the ops of a loaded model.
#[derive(Clone, Debug)]
pub struct Ops<'m> {
    ops: &'m [u8],
    off: usize,
    index: u16,
    count: u16,
}

impl<'m> Iterator for Ops<'m> {
    type Item = Op<'m>;
    fn next(&mut self) -> Option<Op<'m>> {
        if self.index >= self.count {
            return None;
        }
        let (op, next) = parse_op(self.ops, self.off, self.index)?;
        self.off = next;
        self.index += 1;
        Some(op)
    }
}

/// A loaded, validated artifact. Borrows the artifact bytes (zero copy).
#[derive(Clone, Copy, Debug)]
pub struct Model<'a> {
    tensors: &'a [u8],
    ops: &'a [u8],
    weights: &'a [u8],
    schedule: &'a [u8],
    provenance: Option<&'a [u8]>,
    tensor_count: u16,
    op_count: u16,
    input: u16,
    output: u16,
    timesteps: u32,
    state_frac_bits: u32,
    input_multiplier: i32,
    input_shift: i32,
    eps_to_state_q16: i64,
    image: [u32; 3],
    arena_bytes: u32,
    frac_bits: [u8; 8],
    schedule_kind: u32,
}

fn trunc(needed: usize, got: usize) -> Error {
    Error::Truncated { needed: needed.min(u32::MAX as usize) as u32, got: got as u32 }
}

fn zp_ok(v: i32) -> bool {
    (-128..=127).contains(&v)
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1 && a.0 < a.1 && b.0 < b.1
}

impl<'a> Model<'a> {
    /// Validates `bytes` as a `.ddq` artifact and returns a view of it.
    ///
    /// # Errors
    /// A typed [`Error`] for any invalid field; never panics.
    pub fn load(bytes: &'a [u8]) -> Result<Model<'a>, Error> {
        let len = bytes.len();
        if len < HEADER_SIZE {
            return Err(trunc(HEADER_SIZE, len));
        }
        if bytes.get(0..8) != Some(&MAGIC[..]) {
            return Err(Error::BadMagic);
        }
        let h = |o: usize| read_u32(bytes, o).unwrap_or(0);
        let version = read_u16(bytes, 8).unwrap_or(0);
        if version > VERSION {
            return Err(Error::FutureVersion { found: version });
        }
        if version < VERSION {
            return Err(Error::UnsupportedVersion { found: version });
        }
        if read_u16(bytes, 10) != Some(HEADER_SIZE as u16) {
            return Err(Error::BadHeader { what: "header_size is not 64" });
        }
        let count = read_u16(bytes, 12).unwrap_or(0);
        if !(5..=MAX_SECTIONS).contains(&count) {
            return Err(Error::BadHeader { what: "section_count not in 5..=16" });
        }
        if read_u16(bytes, 14) != Some(0) {
            return Err(Error::BadHeader { what: "flags are not 0" });
        }
        if bytes.get(28..64).is_none_or(|r| r.iter().any(|&b| b != 0)) {
            return Err(Error::BadHeader { what: "reserved bytes are not 0" });
        }
        let file_size = h(16);
        if file_size as usize != len {
            if (file_size as usize) > len {
                return Err(trunc(file_size as usize, len));
            }
            return Err(Error::FileSizeMismatch { header: file_size, actual: len as u32 });
        }
        let table_end = HEADER_SIZE + count as usize * SECTION_ENTRY_SIZE;
        if table_end > len {
            return Err(trunc(table_end, len));
        }
        let stored = h(20);
        let computed = crate::format::artifact_crc(bytes);
        if stored != computed {
            return Err(Error::CrcMismatch { stored, computed });
        }
        let arena_bytes = h(24);

        // Section table.
        let mut found: [Option<(usize, usize)>; 7] = [None; 7];
        let mut ranges: [(u64, u64); MAX_SECTIONS as usize] = [(0, 0); MAX_SECTIONS as usize];
        for i in 0..count as usize {
            let e = HEADER_SIZE + i * SECTION_ENTRY_SIZE;
            let kind = h(e);
            let off = h(e + 4) as u64;
            let slen = h(e + 8) as u64;
            let bad = |what| Error::BadSection { kind, what };
            if !(1..=6).contains(&kind) {
                return Err(bad("unknown section kind"));
            }
            if h(e + 12) != 0 {
                return Err(bad("reserved word is not 0"));
            }
            if off % SECTION_ALIGN as u64 != 0 {
                return Err(bad("offset is not 16-byte aligned"));
            }
            if off < table_end as u64 {
                return Err(bad("section starts inside the header or section table"));
            }
            if off + slen > len as u64 {
                return Err(bad("section extends past the end of the file"));
            }
            let r = (off, off + slen);
            for prev in ranges.iter().take(i) {
                if overlaps(*prev, r) {
                    return Err(bad("section overlaps another section"));
                }
            }
            if let Some(slot) = ranges.get_mut(i) {
                *slot = r;
            }
            let f = found.get_mut(kind as usize).ok_or(bad("unknown section kind"))?;
            if f.is_some() {
                return Err(bad("duplicate section"));
            }
            *f = Some((off as usize, (off + slen) as usize));
        }
        let sec = |kind: u32| -> Result<&'a [u8], Error> {
            let (a, b) = found
                .get(kind as usize)
                .copied()
                .flatten()
                .ok_or(Error::MissingSection { kind })?;
            bytes.get(a..b).ok_or(Error::MissingSection { kind })
        };
        let model = sec(section::MODEL)?;
        let tensors = sec(section::TENSORS)?;
        let ops = sec(section::OPS)?;
        let weights = sec(section::WEIGHTS)?;
        let schedule = sec(section::SCHEDULE)?;
        let provenance = sec(section::PROVENANCE).ok();

        // MODEL.
        let bm = |what| Error::BadModel { what };
        if model.len() != MODEL_SIZE {
            return Err(bm("section length is not 64"));
        }
        let m = |o: usize| read_u32(model, o).unwrap_or(0);
        let tensor_count = m(0);
        let op_count = m(4);
        if !(1..=MAX_TENSORS).contains(&tensor_count) {
            return Err(bm("tensor_count not in 1..=1024"));
        }
        if !(1..=MAX_OPS).contains(&op_count) {
            return Err(bm("op_count not in 1..=1024"));
        }
        let input = m(8);
        let output = m(12);
        if input >= tensor_count {
            return Err(bm("input_tensor out of range"));
        }
        if output >= tensor_count {
            return Err(bm("output_tensor out of range"));
        }
        let timesteps = m(16);
        if timesteps == 0 || timesteps > 100_000 {
            return Err(bm("timesteps not in 1..=100000"));
        }
        let state_frac_bits = m(20);
        if !(16..=28).contains(&state_frac_bits) {
            return Err(bm("state_frac_bits not in 16..=28"));
        }
        let input_multiplier = read_i32(model, 24).unwrap_or(0);
        let input_shift = read_i32(model, 28).unwrap_or(0);
        if input_multiplier < 0 || !(-31..=30).contains(&input_shift) {
            return Err(bm("input_multiplier/input_shift out of range"));
        }
        let eps_to_state_q16 = read_i64(model, 32).unwrap_or(0);
        if !(0..=1i64 << 50).contains(&eps_to_state_q16) {
            return Err(bm("eps_to_state_q16 not in 0..=2^50"));
        }
        let image = [m(40), m(44), m(48)];
        if image.iter().any(|&d| d == 0 || d > u16::MAX as u32) {
            return Err(bm("image dimensions not in 1..=65535"));
        }
        if model.get(52..64).is_none_or(|r| r.iter().any(|&b| b != 0)) {
            return Err(bm("reserved bytes are not 0"));
        }
        if tensors.len() as u64 != tensor_count as u64 * TENSOR_RECORD_SIZE as u64 {
            return Err(bm("TENSORS length is not tensor_count × 32"));
        }

        // SCHEDULE.
        let bs = |what| Error::BadSchedule { what };
        if schedule.len() < SCHEDULE_HEADER_SIZE {
            return Err(bs("shorter than its 32-byte header"));
        }
        if read_u32(schedule, 0) != Some(timesteps) {
            return Err(bs("T differs from MODEL.timesteps"));
        }
        let schedule_kind = read_u32(schedule, 4).unwrap_or(u32::MAX);
        if schedule_kind > 2 {
            return Err(bs("unknown schedule kind"));
        }
        if read_u32(schedule, 16) != Some(SCHEDULE_TABLES as u32) {
            return Err(bs("n_tables is not 8"));
        }
        if read_u32(schedule, 20) != Some(0) {
            return Err(bs("reserved word is not 0"));
        }
        let mut frac_bits = [0u8; 8];
        for (k, fb) in frac_bits.iter_mut().enumerate() {
            *fb = schedule.get(24 + k).copied().unwrap_or(255);
            if *fb > 31 {
                return Err(bs("frac_bits above 31"));
            }
        }
        let want = SCHEDULE_HEADER_SIZE as u64 + SCHEDULE_TABLES as u64 * timesteps as u64 * 4;
        if schedule.len() as u64 != want {
            return Err(bs("length is not 32 + 8·T·4"));
        }

        let me = Model {
            tensors,
            ops,
            weights,
            schedule,
            provenance,
            tensor_count: tensor_count as u16,
            op_count: op_count as u16,
            input: input as u16,
            output: output as u16,
            timesteps,
            state_frac_bits,
            input_multiplier,
            input_shift,
            eps_to_state_q16,
            image,
            arena_bytes,
            frac_bits,
            schedule_kind,
        };
        for i in 0..timesteps {
            // x̂₀ divides by √ᾱ; σ and the other coefficients are non-negative.
            if me.sched(crate::format::table::SQRT_ALPHA_BAR, i).unwrap_or(0) <= 0 {
                return Err(bs("√ᾱ table has a value ≤ 0"));
            }
            for k in 0..SCHEDULE_TABLES {
                if me.sched(k, i).unwrap_or(-1) < 0 {
                    return Err(bs("negative table value"));
                }
            }
        }

        // TENSORS.
        let image_size = image.iter().map(|&d| d as u64).product::<u64>();
        for i in 0..tensor_count as u16 {
            let t = me.read_tensor(i).ok_or(Error::BadTensorId { id: i as u32 })?;
            let bt = |what| Error::BadTensor { index: i, what };
            let base = i as usize * TENSOR_RECORD_SIZE;
            if t.h == 0 || t.w == 0 || t.c == 0 {
                return Err(bt("a dimension is 0"));
            }
            let esz = if t.int16 { 2 } else { 1 };
            if t.size as u64 != t.h as u64 * t.w as u64 * t.c as u64 * esz {
                return Err(bt("size is not h·w·c × element size"));
            }
            if read_u16(tensors, base + 6).is_none_or(|f| f & !TENSOR_INT16 != 0)
                || tensors.get(base + 24..base + 32).is_none_or(|r| r.iter().any(|&b| b != 0))
            {
                return Err(bt("unknown flags or reserved bytes are not 0"));
            }
            if t.int16 && t.zero_point != 0 {
                return Err(bt("int16 tensor with a zero_point other than 0"));
            }
            if t.int16 && t.arena_offset % 2 != 0 {
                return Err(bt("int16 tensor at an odd arena offset"));
            }
            if t.arena_offset as u64 + t.size as u64 > arena_bytes as u64 {
                return Err(bt("extends past arena_bytes"));
            }
            if !zp_ok(t.zero_point) {
                return Err(bt("zero_point not in -128..=127"));
            }
            if (i == me.input || i == me.output) && t.elems() as u64 != image_size {
                return Err(bt("input/output tensor size differs from the image size"));
            }
        }

        // OPS.
        let mut off = 0usize;
        for index in 0..op_count as u16 {
            if off % 4 != 0 {
                return Err(Error::BadOp { index, opcode: 0, what: "record not 4-byte aligned" });
            }
            let (op, next) = parse_op(ops, off, index).ok_or(Error::BadOp {
                index,
                opcode: read_u16(ops, off).unwrap_or(0),
                what: "record runs past the end of OPS",
            })?;
            me.validate_op(&op)?;
            off = next;
        }
        if off != ops.len() {
            return Err(Error::BadOp {
                index: op_count as u16,
                opcode: 0,
                what: "OPS has trailing bytes after the last record",
            });
        }
        Ok(me)
    }

    fn read_tensor(&self, i: u16) -> Option<TensorInfo> {
        let b = (i as usize).checked_mul(TENSOR_RECORD_SIZE)?;
        let r = self.tensors.get(b..b + TENSOR_RECORD_SIZE)?;
        Some(TensorInfo {
            h: read_u16(r, 0)?,
            w: read_u16(r, 2)?,
            c: read_u16(r, 4)?,
            arena_offset: read_u32(r, 8)?,
            size: read_u32(r, 12)?,
            zero_point: read_i32(r, 16)?,
            scale: read_f32(r, 20)?,
            int16: read_u16(r, 6)? & TENSOR_INT16 != 0,
        })
    }

    /// Shape and quantization of tensor `id`.
    ///
    /// # Errors
    /// [`Error::BadTensorId`] if `id` is not in the model.
    pub fn tensor_info(&self, id: u16) -> Result<TensorInfo, Error> {
        if id >= self.tensor_count {
            return Err(Error::BadTensorId { id: id as u32 });
        }
        self.read_tensor(id).ok_or(Error::BadTensorId { id: id as u32 })
    }

    /// Tensor `id` as int8 inside `arena`.
    ///
    /// # Errors
    /// [`Error::BadTensorId`], [`Error::ArenaTooSmall`], or [`Error::NotInt8`] for
    /// an int16 tensor (read it with [`Model::tensor_bytes`]).
    pub fn tensor<'b>(&self, arena: &'b [u8], id: u16) -> Result<&'b [i8], Error> {
        if self.tensor_info(id)?.int16 {
            return Err(Error::NotInt8 { id });
        }
        Ok(crate::ops::numerics::as_i8(self.tensor_bytes(arena, id)?))
    }

    /// Tensor `id` inside `arena` as a typed view (int8 or int16).
    ///
    /// # Errors
    /// [`Error::BadTensorId`], or [`Error::ArenaTooSmall`].
    pub fn tensor_view<'b>(&self, arena: &'b [u8], id: u16) -> Result<TensorView<'b>, Error> {
        let int16 = self.tensor_info(id)?.int16;
        Ok(TensorView::new(self.tensor_bytes(arena, id)?, int16))
    }

    /// The bytes of tensor `id` inside `arena` (int8, or int16 little-endian).
    ///
    /// # Errors
    /// [`Error::BadTensorId`], or [`Error::ArenaTooSmall`].
    pub fn tensor_bytes<'b>(&self, arena: &'b [u8], id: u16) -> Result<&'b [u8], Error> {
        let t = self.tensor_info(id)?;
        let (a, b) = t.range();
        arena
            .get(a as usize..b as usize)
            .ok_or(Error::ArenaTooSmall { needed: self.arena_bytes, got: arena.len() as u32 })
    }

    /// Tensor `id` as mutable bytes inside `arena`.
    ///
    /// # Errors
    /// [`Error::BadTensorId`], or [`Error::ArenaTooSmall`].
    pub fn tensor_bytes_mut<'b>(
        &self,
        arena: &'b mut [u8],
        id: u16,
    ) -> Result<&'b mut [u8], Error> {
        let t = self.tensor_info(id)?;
        let (a, b) = t.range();
        let got = arena.len() as u32;
        arena
            .get_mut(a as usize..b as usize)
            .ok_or(Error::ArenaTooSmall { needed: self.arena_bytes, got })
    }

    /// Tensor `id` as mutable int8 inside `arena`.
    ///
    /// # Errors
    /// As [`Model::tensor`].
    pub fn tensor_mut<'b>(&self, arena: &'b mut [u8], id: u16) -> Result<&'b mut [i8], Error> {
        if self.tensor_info(id)?.int16 {
            return Err(Error::NotInt8 { id });
        }
        Ok(crate::ops::numerics::as_i8_mut(self.tensor_bytes_mut(arena, id)?))
    }

    /// Number of tensors.
    pub fn tensor_count(&self) -> u16 {
        self.tensor_count
    }
    /// Number of ops.
    pub fn op_count(&self) -> u16 {
        self.op_count
    }
    /// Tensor id of the network input (x_t).
    pub fn input_tensor(&self) -> u16 {
        self.input
    }
    /// Tensor id of the network output (ε).
    pub fn output_tensor(&self) -> u16 {
        self.output
    }
    /// Bytes of network arena `forward` needs.
    pub fn arena_bytes(&self) -> u32 {
        self.arena_bytes
    }
    /// Training timesteps T.
    pub fn timesteps(&self) -> u32 {
        self.timesteps
    }
    /// Fractional bits F of the sampler state.
    pub fn state_frac_bits(&self) -> u32 {
        self.state_frac_bits
    }
    /// `(input_multiplier, input_shift)`: state → network input.
    pub fn input_requant(&self) -> (i32, i32) {
        (self.input_multiplier, self.input_shift)
    }
    /// `eps_to_state_q16`: network output → state.
    pub fn eps_to_state_q16(&self) -> i64 {
        self.eps_to_state_q16
    }
    /// Image `[h, w, c]`.
    pub fn image_shape(&self) -> [u32; 3] {
        self.image
    }
    /// Image element count `h·w·c`.
    pub fn image_len(&self) -> usize {
        self.image.iter().map(|&d| d as usize).product()
    }
    /// Schedule kind (0 linear, 1 cosine, 2 quadratic).
    pub fn schedule_kind(&self) -> u32 {
        self.schedule_kind
    }
    /// Fractional bits of schedule table `k`.
    pub fn schedule_frac_bits(&self, k: usize) -> Option<u8> {
        self.frac_bits.get(k).copied()
    }
    /// Value of schedule table `k` at network timestep `i`.
    pub fn sched(&self, k: usize, i: u32) -> Option<i32> {
        if k >= SCHEDULE_TABLES || i >= self.timesteps {
            return None;
        }
        let off = SCHEDULE_HEADER_SIZE + (k * self.timesteps as usize + i as usize) * 4;
        read_i32(self.schedule, off)
    }
    /// The PROVENANCE JSON, if present and valid UTF-8.
    pub fn provenance(&self) -> Option<&'a str> {
        self.provenance.and_then(|p| core::str::from_utf8(p).ok())
    }
    /// The WEIGHTS section.
    pub fn weights(&self) -> &'a [u8] {
        self.weights
    }
    /// Iterates over the ops in execution order.
    pub fn ops(&self) -> Ops<'a> {
        Ops { ops: self.ops, off: 0, index: 0, count: self.op_count }
    }

    /// Multiply-accumulates op `op` performs per forward pass (0 for data movement).
    pub fn op_macs(&self, op: &Op<'_>) -> u64 {
        let out = op.output(0).and_then(|o| self.tensor_info(o).ok());
        let outn = out.map(|t| t.elems() as u64).unwrap_or(0);
        let p = |i| op.p(i).max(0) as u64;
        match op.opcode {
            opcode::CONV2D => {
                let ic = op
                    .input(0)
                    .and_then(|i| self.tensor_info(i).ok())
                    .map(|t| t.c as u64)
                    .unwrap_or(0);
                outn.saturating_mul(p(0)).saturating_mul(p(1)).saturating_mul(ic)
            }
            opcode::MATMUL => p(0).saturating_mul(p(1)).saturating_mul(p(2)).saturating_mul(p(3)),
            _ => 0,
        }
    }

    /// Weight bytes referenced by params `(off, len)` at `pi`, with alignment checks.
    pub(crate) fn weight_ref(&self, op: &Op<'_>, pi: usize, align: u32) -> Option<&'a [u8]> {
        let off = op.param(pi)?;
        let len = op.param(pi + 1)?;
        if off < 0 || len < 0 || off as u32 % align != 0 {
            return None;
        }
        let a = off as usize;
        self.weights.get(a..a.checked_add(len as usize)?)
    }

    fn validate_op(&self, op: &Op<'_>) -> Result<(), Error> {
        let bad = |what| Error::BadOp { index: op.index, opcode: op.opcode, what };
        let (n_in_ok, n_out) = match op.opcode {
            opcode::CONV2D
            | opcode::GROUP_NORM
            | opcode::LUT
            | opcode::LUT16
            | opcode::UPSAMPLE_NEAREST
            | opcode::SOFTMAX
            | opcode::REQUANT => (op.n_inputs() == 1, 1),
            opcode::ADD | opcode::MUL | opcode::MATMUL => (op.n_inputs() == 2, 1),
            opcode::CONCAT => (op.n_inputs() >= 1, 1),
            opcode::TIMESTEP_EMBED => (op.n_inputs() == 0, 1),
            _ => return Err(Error::UnknownOpcode { index: op.index, opcode: op.opcode }),
        };
        if !n_in_ok || op.n_outputs() != n_out {
            return Err(bad("wrong number of inputs or outputs"));
        }
        if Some(op.n_params()) != param_count(op.opcode, op.n_inputs()) {
            return Err(bad("wrong number of params"));
        }
        let tinfo = |id: Option<u16>| -> Result<TensorInfo, Error> {
            self.tensor_info(id.ok_or(bad("missing tensor id"))?)
                .map_err(|_| bad("tensor id out of range"))
        };
        let y = tinfo(op.output(0))?;
        // Scratch.
        let mut in_shapes = [[0u16; 3]; 4];
        for (i, s) in in_shapes.iter_mut().enumerate().take(op.n_inputs()) {
            *s = tinfo(op.input(i))?.shape();
        }
        let mut params = [0i32; 20];
        for (i, p) in params.iter_mut().enumerate().take(op.n_params()) {
            *p = op.p(i);
        }
        let need = crate::format::scratch_bytes(
            op.opcode,
            in_shapes.get(..op.n_inputs().min(4)).unwrap_or(&[]),
            y.shape(),
            params.get(..op.n_params().min(20)).unwrap_or(&[]),
        );
        if op.scratch_len < need {
            return Err(bad("scratch_len smaller than the kernel needs"));
        }
        let scratch = (op.scratch_offset as u64, op.scratch_offset as u64 + op.scratch_len as u64);
        if scratch.1 > self.arena_bytes as u64 {
            return Err(bad("scratch extends past arena_bytes"));
        }
        if overlaps(scratch, y.range()) {
            return Err(bad("scratch overlaps the output"));
        }
        for i in 0..op.n_inputs() {
            let x = tinfo(op.input(i))?;
            if overlaps(x.range(), y.range()) {
                return Err(bad("output overlaps an input in the arena"));
            }
            if overlaps(x.range(), scratch) {
                return Err(bad("scratch overlaps an input"));
            }
        }
        let same = |a: &TensorInfo, b: &TensorInfo| a.shape() == b.shape();
        let zp = |i: usize| -> Result<(), Error> {
            if zp_ok(op.p(i)) {
                Ok(())
            } else {
                Err(bad("zero point not in -128..=127"))
            }
        };
        // Zero point param `i` of tensor `t`: 0 for int16, int8 range otherwise.
        let zpt = |t: &TensorInfo, i: usize| -> Result<(), Error> {
            match (t.int16, op.p(i)) {
                (true, 0) => Ok(()),
                (true, _) => Err(bad("zero point of an int16 tensor is not 0")),
                (false, v) if zp_ok(v) => Ok(()),
                _ => Err(bad("zero point not in -128..=127")),
            }
        };
        let act = |i: usize| -> Result<(), Error> {
            let (lo, hi) = (op.p(i), op.p(i + 1));
            if zp_ok(lo) && zp_ok(hi) && lo <= hi {
                Ok(())
            } else {
                Err(bad("act_min/act_max not an ordered int8 range"))
            }
        };
        // act_min/act_max at `i` within the element range of `t`.
        let act_t = |t: &TensorInfo, i: usize| -> Result<(), Error> {
            let (lo, hi) = (op.p(i), op.p(i + 1));
            let (a, b) = t.value_range();
            if a <= lo && lo <= hi && hi <= b {
                Ok(())
            } else {
                Err(bad("act_min/act_max not an ordered range of the output type"))
            }
        };
        let int8_only = |ts: &[TensorInfo]| -> Result<(), Error> {
            if ts.iter().any(|t| t.int16) {
                Err(bad("this op takes int8 tensors only"))
            } else {
                Ok(())
            }
        };
        let shift = |i: usize| -> Result<(), Error> {
            if (-31..=30).contains(&op.p(i)) {
                Ok(())
            } else {
                Err(bad("shift not in -31..=30"))
            }
        };
        let wref = |pi: usize, align: u32, len: u64| -> Result<&'a [u8], Error> {
            let w = self
                .weight_ref(op, pi, align)
                .ok_or(bad("weight reference out of bounds or misaligned"))?;
            if w.len() as u64 != len {
                return Err(bad("weight reference has the wrong length"));
            }
            Ok(w)
        };
        let shifts_ok = |w: &[u8]| {
            w.chunks_exact(4).all(|c| {
                let v = i32::from_le_bytes(c.try_into().unwrap_or([0; 4]));
                (-31..=30).contains(&v)
            })
        };
        match op.opcode {
            opcode::CONV2D => {
                let x = tinfo(op.input(0))?;
                let (kh, kw, sh, sw) = (op.p(0), op.p(1), op.p(2), op.p(3));
                let (pt, pl, pb, pr) = (op.p(4), op.p(5), op.p(6), op.p(7));
                if kh < 1 || kw < 1 || sh < 1 || sw < 1 || kh > 64 || kw > 64 || sh > 64 || sw > 64
                {
                    return Err(bad("kernel/stride not in 1..=64"));
                }
                if [pt, pl, pb, pr].iter().any(|&p| !(0..=64).contains(&p)) {
                    return Err(bad("padding not in 0..=64"));
                }
                zpt(&x, 8)?;
                zpt(&y, 9)?;
                act_t(&y, 10)?;
                if x.int16 && kh as u64 * kw as u64 * x.c as u64 > CONV_I16_MAX_K as u64 {
                    return Err(bad("kh·kw·ic above 511 with an int16 input (i32 accumulator)"));
                }
                let eh = x.h as i64 + pt as i64 + pb as i64 - kh as i64;
                let ew = x.w as i64 + pl as i64 + pr as i64 - kw as i64;
                if eh < 0 || ew < 0 {
                    return Err(bad("kernel larger than the padded input"));
                }
                if y.h as i64 != eh / sh as i64 + 1 || y.w as i64 != ew / sw as i64 + 1 {
                    return Err(bad("output h/w inconsistent with input, kernel, stride, padding"));
                }
                if kh as u64 * kw as u64 * x.c as u64 > 32768 {
                    return Err(bad("kh·kw·ic above 32768 (i32 accumulator range)"));
                }
                let oc = y.c as u64;
                wref(12, 1, oc * kh as u64 * kw as u64 * x.c as u64)?;
                if op.p(15) != 0 {
                    wref(14, 4, oc * 4)?;
                }
                wref(16, 4, oc * 4)?;
                let s = wref(18, 4, oc * 4)?;
                if !shifts_ok(s) {
                    return Err(bad("per-channel shift not in -31..=30"));
                }
            }
            opcode::GROUP_NORM => {
                let x = tinfo(op.input(0))?;
                if !same(&x, &y) {
                    return Err(bad("output shape differs from input"));
                }
                let g = op.p(0);
                if g < 1 || x.c as i32 % g != 0 {
                    return Err(bad("groups does not divide the channel count"));
                }
                if x.elems() as u64 / g as u64 > GN_MAX_GROUP {
                    return Err(bad("group has more than 2^24 elements"));
                }
                zpt(&x, 1)?;
                zpt(&y, 2)?;
                let eps = (op.p(3) as u32 as u64) | ((op.p(4) as u32 as u64) << 32);
                if eps > GN_MAX_EPS {
                    return Err(bad("eps_q32 above 2^56"));
                }
                let c = x.c as u64 * 4;
                wref(5, 4, c)?;
                let s = wref(7, 4, c)?;
                if !shifts_ok(s) {
                    return Err(bad("per-channel shift not in -31..=30"));
                }
                wref(9, 4, c)?;
            }
            opcode::LUT => {
                let x = tinfo(op.input(0))?;
                if !same(&x, &y) {
                    return Err(bad("output shape differs from input"));
                }
                int8_only(&[x, y])?;
                wref(0, 1, 256)?;
            }
            opcode::LUT16 => {
                let x = tinfo(op.input(0))?;
                if !same(&x, &y) {
                    return Err(bad("output shape differs from input"));
                }
                if !x.int16 || !y.int16 {
                    return Err(bad("LUT16 input and output must be int16"));
                }
                wref(0, 2, LUT16_ENTRIES as u64 * 2)?;
            }
            opcode::ADD | opcode::MUL => {
                let a = tinfo(op.input(0))?;
                let b = tinfo(op.input(1))?;
                if !same(&a, &y) {
                    return Err(bad("output shape differs from input a"));
                }
                match op.p(0) {
                    0 if same(&a, &b) => {}
                    1 if b.h == 1 && b.w == 1 && b.c == a.c => {}
                    0 | 1 => return Err(bad("input b shape does not match the broadcast mode")),
                    _ => return Err(bad("broadcast not 0 or 1")),
                }
                zpt(&a, 1)?;
                zpt(&b, 2)?;
                zpt(&y, 3)?;
                if op.opcode == opcode::ADD {
                    let max_ls = if a.int16 || b.int16 { 15 } else { 23 };
                    if !(0..=max_ls).contains(&op.p(4)) {
                        return Err(bad("left_shift not in 0..=23 (0..=15 with an int16 input)"));
                    }
                    shift(6)?;
                    shift(8)?;
                    shift(10)?;
                    act_t(&y, 11)?;
                } else {
                    int8_only(&[a, b, y])?;
                    shift(5)?;
                    act(6)?;
                }
            }
            opcode::CONCAT => {
                zpt(&y, 0)?;
                let mut c = 0u32;
                for i in 0..op.n_inputs() {
                    let x = tinfo(op.input(i))?;
                    if x.h != y.h || x.w != y.w {
                        return Err(bad("input h/w differs from output"));
                    }
                    c += x.c as u32;
                    zpt(&x, 1 + 3 * i)?;
                    shift(3 + 3 * i)?;
                }
                if c != y.c as u32 {
                    return Err(bad("input channels do not sum to output channels"));
                }
            }
            opcode::UPSAMPLE_NEAREST => {
                let x = tinfo(op.input(0))?;
                let (fh, fw) = (op.p(0), op.p(1));
                if !(1..=64).contains(&fh) || !(1..=64).contains(&fw) {
                    return Err(bad("factor not in 1..=64"));
                }
                if y.h as i64 != x.h as i64 * fh as i64
                    || y.w as i64 != x.w as i64 * fw as i64
                    || y.c != x.c
                {
                    return Err(bad("output shape is not input × factor"));
                }
                if x.int16 != y.int16 {
                    return Err(bad("input and output element types differ"));
                }
            }
            opcode::MATMUL => {
                let a = tinfo(op.input(0))?;
                let b = tinfo(op.input(1))?;
                int8_only(&[a, b, y])?;
                let dims = [op.p(0), op.p(1), op.p(2), op.p(3)];
                if dims.iter().any(|&d| d < 1) {
                    return Err(bad("batch, m, k, n must be ≥ 1"));
                }
                zp(4)?;
                zp(5)?;
                zp(6)?;
                shift(8)?;
                act(9)?;
                let st: [i32; 9] = core::array::from_fn(|i| op.p(11 + i));
                if st.iter().any(|&s| s < 0) {
                    return Err(bad("negative stride"));
                }
                let d = |i: usize| dims.get(i).map(|&v| v as u64 - 1).unwrap_or(0);
                let s = |i: usize| st.get(i).map(|&v| v as u64).unwrap_or(0);
                // Largest element index touched; every index is ≤ it (strides ≥ 0).
                let last = |sb, s1, s2, d1, d2| {
                    d(0).checked_mul(s(sb))?
                        .checked_add(d(d1).checked_mul(s(s1))?)?
                        .checked_add(d(d2).checked_mul(s(s2))?)
                };
                let check = |t: &TensorInfo, l: Option<u64>| match l {
                    Some(l) if l < t.size as u64 => Ok(()),
                    _ => Err(bad("strides address past the end of an operand")),
                };
                check(&a, last(0, 1, 2, 1, 2))?;
                check(&b, last(3, 4, 5, 2, 3))?;
                check(&y, last(6, 7, 8, 1, 3))?;
                // Bound the work: no more outputs than y holds, k no longer than
                // either operand (strides may be 0, so addresses alone do not).
                let outs = (d(0) + 1).checked_mul(d(1) + 1).and_then(|v| v.checked_mul(d(3) + 1));
                if outs.is_none_or(|o| o > y.size as u64)
                    || d(2) + 1 > a.size as u64
                    || d(2) + 1 > b.size as u64
                {
                    return Err(bad("batch·m·n exceeds the output or k exceeds an operand"));
                }
                if (d(2) + 1) * 255 * 255 > i32::MAX as u64 {
                    return Err(bad("k too large for an i32 accumulator"));
                }
            }
            opcode::SOFTMAX => {
                let x = tinfo(op.input(0))?;
                if !same(&x, &y) {
                    return Err(bad("output shape differs from input"));
                }
                int8_only(&[x, y])?;
                let (rows, l) = (op.p(0), op.p(1));
                if rows < 1 || l < 1 || rows as u64 * l as u64 != x.size as u64 {
                    return Err(bad("rows × len is not the tensor size"));
                }
                wref(2, 4, 1024)?;
            }
            opcode::TIMESTEP_EMBED => {
                int8_only(&[y])?;
                let (ts, dim) = (op.p(0), op.p(1));
                if ts as u32 != self.timesteps {
                    return Err(bad("timesteps differs from MODEL.timesteps"));
                }
                if dim < 1 || dim as u32 != y.size {
                    return Err(bad("dim is not the output size"));
                }
                wref(2, 1, ts as u64 * dim as u64)?;
            }
            opcode::REQUANT => {
                let x = tinfo(op.input(0))?;
                if !same(&x, &y) {
                    return Err(bad("output shape differs from input"));
                }
                zpt(&x, 0)?;
                zpt(&y, 1)?;
                shift(3)?;
            }
            _ => return Err(Error::UnknownOpcode { index: op.index, opcode: op.opcode }),
        }
        Ok(())
    }
}
