//! skeleton

pub mod sandbox;
