//! Ingest: the ONNX model through tract ([`load`]), lowered ([`lower`]) to the
//! runtime's op set as a float IR ([`ir`]), and tract's own float model ([`float`]).
//! Depends on nothing else in the crate.

pub mod float;
pub mod ir;
pub mod load;
pub mod lower;
