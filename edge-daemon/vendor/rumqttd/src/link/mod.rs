//! Vendored from rumqttd 0.20.0 (Apache-2.0); see edge-daemon/vendor/README.md for the patches.
pub mod alerts;
pub mod bridge;
pub mod console;
pub mod local;
pub mod meters;
pub mod network;
pub mod remote;
pub mod timer;
