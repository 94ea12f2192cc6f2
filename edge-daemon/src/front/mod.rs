//! The edge's front doors: listeners that outside devices connect to, each checking who
//! is knocking (auth's `DeviceAuth`) before anything reaches the broker or a module.
//! Today: MQTT for vehicles and scanners (`mqtt.rs`, in front of rumqttd; `admit.rs` its
//! connection caps, `mqtt_io.rs` its packet reading, `mqtt_acl.rs` its namespace rule, `mqtt_down.rs` the
//! broker's side, `to_broker.rs` the CONNECT it forwards). The next door
//! (OCPP 1.6J chargers over WebSocket) goes beside it as `ocpp.rs`, started by the node
//! the same way: bound listener in, `serve(listener, cancel)` out.

pub mod admit;
pub mod mqtt;
mod mqtt_acl;
mod mqtt_down;
mod mqtt_io;
mod mqtt_packets;
pub mod sessions;
pub mod tls;
mod to_broker;
