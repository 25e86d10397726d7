//! Artifact: the `.ddq` bytes. Writing ([`write`]), the conversion pipeline that
//! produces them ([`convert`]: ingest → quantize → write) and reading one back
//! ([`inspect`]). Depends on [`crate::quantize`] and [`crate::ingest`].

pub mod convert;
pub mod inspect;
pub mod tensors;
pub mod write;
