//! OCPP 1.6J central system: the WebSocket door chargers connect to (`door.rs`), one
//! connection's loop (`conn.rs`), the frames (`frame.rs`), the official schemas every
//! payload is checked against (`schema.rs`), the answers to chargers' CALLs
//! (`handle.rs`) and what their meter values become (`readings.rs`).

mod conn;
pub mod door;
pub mod frame;
mod handle;
mod readings;
pub mod schema;
