//! garasi-edge: the depot node. An embedded MQTT broker behind an authenticating gate, a
//! SQLCipher store, and domain modules with one lifecycle. See ARCHITECTURE.md.

// Long functions hide several concerns; tests may be long (see clippy.toml).
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

pub mod broker;
pub mod bus;
pub mod cli;
pub mod config;
pub mod front;
pub mod http;
pub mod limit;
pub mod lograte;
pub mod metrics;
pub mod modules;
pub mod node;
pub mod sim;
pub mod store;
pub mod util;
