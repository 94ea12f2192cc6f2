//! telemetry's public API for other modules: the live view of each vehicle.

use std::sync::Arc;

use super::live;
use crate::modules::fleet::service::{LiveState, LiveView};
use crate::util::now_ms;

/// Telemetry's public API: the live view (fleet shows it next to each vehicle).
pub struct TelemetryApi {
    pub live: Arc<live::Live>,
}

impl LiveState for TelemetryApi {
    fn live(&self, vehicle_id: &str) -> Option<LiveView> {
        Some(self.live.view(vehicle_id, now_ms()))
    }
}
