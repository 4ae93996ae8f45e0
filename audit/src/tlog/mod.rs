//! The transparency-log parts of the audit log: the RFC 9162 Merkle tree, C2SP
//! signed notes and checkpoints, witness cosignatures.

pub mod checkpoint;
pub mod cosignature;
pub mod note;
pub mod tree;
