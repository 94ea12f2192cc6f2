//! OCPP 1.6J central system: the WebSocket door chargers connect to (`door.rs`), one
//! connection's loop (`conn.rs`), the frames (`frame.rs`), the official schemas every
//! payload is checked against (`schema.rs`) and the answers to chargers' CALLs
//! (`handle.rs`).

mod conn;
pub mod door;
pub mod frame;
mod handle;
pub mod schema;
