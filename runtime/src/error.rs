//! The runtime's error type.

use core::fmt;

/// Everything that can go wrong loading an artifact or running it.
///
/// Small and `Copy`; `what` strings name the offending field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Error {
    /// The byte slice is shorter than the header or than a structure it announces.
    Truncated {
        /// Bytes needed.
        needed: u32,
        /// Bytes available.
        got: u32,
    },
    /// The first 8 bytes are not `DDPMEDGE`.
    BadMagic,
    /// The artifact was written for a newer format version than this runtime reads.
    FutureVersion {
        /// Version found in the header.
        found: u16,
    },
    /// The version is older than any this runtime reads (0).
    UnsupportedVersion {
        /// Version found in the header.
        found: u16,
    },
    /// A header field (header size, flags, reserved bytes) is invalid.
    BadHeader {
        /// The field.
        what: &'static str,
    },
    /// The header's file size differs from the slice length.
    FileSizeMismatch {
        /// Size stored in the header.
        header: u32,
        /// Length of the slice.
        actual: u32,
    },
    /// The payload CRC-32 does not match.
    CrcMismatch {
        /// CRC stored in the header.
        stored: u32,
        /// CRC computed over the payload.
        computed: u32,
    },
    /// A section-table entry is invalid (alignment, bounds, overlap, duplicate, kind).
    BadSection {
        /// Section kind of the entry.
        kind: u32,
        /// What is wrong.
        what: &'static str,
    },
    /// A required section is absent.
    MissingSection {
        /// The missing kind.
        kind: u32,
    },
    /// A MODEL field is invalid.
    BadModel {
        /// The field.
        what: &'static str,
    },
    /// A tensor record is invalid.
    BadTensor {
        /// Tensor id.
        index: u16,
        /// What is wrong.
        what: &'static str,
    },
    /// An op record has an opcode this runtime does not know.
    UnknownOpcode {
        /// Op index.
        index: u16,
        /// The opcode.
        opcode: u16,
    },
    /// An op record is invalid (arity, params, shapes, weights, scratch).
    BadOp {
        /// Op index.
        index: u16,
        /// Opcode.
        opcode: u16,
        /// What is wrong.
        what: &'static str,
    },
    /// The SCHEDULE section is invalid.
    BadSchedule {
        /// What is wrong.
        what: &'static str,
    },
    /// The arena passed in is smaller than the artifact needs.
    ArenaTooSmall {
        /// Bytes needed.
        needed: u32,
        /// Bytes given.
        got: u32,
    },
    /// A timestep is outside `0..T`.
    BadTimestep {
        /// The timestep.
        t: u32,
        /// T.
        timesteps: u32,
    },
    /// A tensor id is outside the model's tensor table.
    BadTensorId {
        /// The id.
        id: u32,
    },
    /// A caller buffer has the wrong length.
    BufferSize {
        /// Length needed.
        needed: u32,
        /// Length given.
        got: u32,
    },
    /// A sampler configuration value is out of range.
    BadConfig {
        /// The field.
        what: &'static str,
    },
    /// An int8 view was asked of an int16 tensor.
    NotInt8 {
        /// The tensor id.
        id: u16,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Error::*;
        match *self {
            Truncated { needed, got } => write!(
                f,
                "artifact truncated: needs {needed} bytes, got {got}; re-copy or re-convert it"
            ),
            BadMagic => write!(f, "not a ddpm-edge artifact (magic is not DDPMEDGE)"),
            FutureVersion { found } => write!(
                f,
                "artifact format version {found} is newer than this runtime (reads {}); update the runtime",
                crate::format::VERSION
            ),
            UnsupportedVersion { found } => {
                write!(f, "artifact format version {found} is not supported; re-convert it")
            }
            BadHeader { what } => write!(f, "invalid artifact header: {what}; re-convert it"),
            FileSizeMismatch { header, actual } => write!(
                f,
                "artifact size is {actual} bytes but the header says {header}; the file is truncated or padded"
            ),
            CrcMismatch { stored, computed } => write!(
                f,
                "artifact CRC-32 mismatch (stored {stored:#010x}, computed {computed:#010x}); the file is corrupted"
            ),
            BadSection { kind, what } => {
                write!(f, "invalid section table entry (kind {kind}): {what}; re-convert it")
            }
            MissingSection { kind } => {
                write!(f, "required section kind {kind} is missing; re-convert it")
            }
            BadModel { what } => write!(f, "invalid MODEL section: {what}; re-convert it"),
            BadTensor { index, what } => {
                write!(f, "invalid tensor {index}: {what}; re-convert it")
            }
            UnknownOpcode { index, opcode } => write!(
                f,
                "op {index} has unknown opcode {opcode}; update the runtime or re-convert"
            ),
            BadOp { index, opcode, what } => write!(
                f,
                "invalid op {index} ({}): {what}; re-convert it",
                crate::format::opcode_name(opcode)
            ),
            BadSchedule { what } => write!(f, "invalid SCHEDULE section: {what}; re-convert it"),
            ArenaTooSmall { needed, got } => write!(
                f,
                "arena too small: needs {needed} bytes, got {got}; enlarge the arena buffer"
            ),
            BadTimestep { t, timesteps } => {
                write!(f, "timestep {t} out of range 0..{timesteps}")
            }
            BadTensorId { id } => write!(f, "tensor id {id} is not in the model"),
            BufferSize { needed, got } => {
                write!(f, "buffer has {got} elements, expected {needed}")
            }
            BadConfig { what } => write!(f, "invalid sampler configuration: {what}"),
            NotInt8 { id } => {
                write!(f, "tensor {id} is int16; read it as bytes (Model::tensor_bytes)")
            }
        }
    }
}

impl core::error::Error for Error {}
