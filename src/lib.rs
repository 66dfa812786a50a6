//! skeleton

pub mod platforms;
pub mod sandbox;
