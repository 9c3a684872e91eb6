//! synshare's control plane: who owns which bucket.
//!
//! [`layout`] computes bucket tables from members and weights, identically
//! on every node.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod availability;
pub mod directory;
pub mod driver;
pub mod layout;
pub mod protocol;
pub mod sim;
pub mod wire;
