//! Tessera's revocation event feed, as a resource server reads it: the parts that turn the bytes
//! of the stream into revocations.
//!
//! Guarantees: both parts are pure (no I/O, no clock), bounded in memory, and answer every input,
//! however broken, with a value or an error, never a panic.
//!
//! Submodules: [`sse`] (the event-stream parser) and [`event`] (decoding the SETs).

pub mod event;
pub mod sse;
