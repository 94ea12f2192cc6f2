//! dispatch's bus reactions: geofence crossings become pull events; a vehicle going out
//! of service disrupts its blocks.

use std::sync::Arc;

use super::events;
use super::service::Dispatch;
use crate::bus::Event;
use std::collections::HashMap;

/// Watches the bus: geofence crossings become pull events; a vehicle going out of
/// service disrupts its blocks.
pub(super) async fn watch(
    d: Arc<Dispatch>,
    mut rx: tokio::sync::broadcast::Receiver<Event>,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut inside: HashMap<String, bool> = HashMap::new();
    loop {
        let ev = tokio::select! {
            _ = cancel.cancelled() => return,
            ev = rx.recv() => ev,
        };
        match ev {
            Ok(Event::TelemetryCommitted(batch)) => {
                let Some((lat0, lon0, r)) = d.geofence else {
                    continue;
                };
                for u in batch.iter() {
                    let (Some(lat), Some(lon)) = (u.lat, u.lon) else {
                        continue;
                    };
                    let now_in = events::distance_m((lat0, lon0), (lat, lon)) <= r;
                    match inside.insert(u.vehicle_id.clone(), now_in) {
                        Some(was) if was != now_in => {
                            d.pull_event(&u.vehicle_id, !now_in, u.ts_ms).await;
                        }
                        _ => {}
                    }
                }
            }
            Ok(Event::VehicleStatusChanged { vehicle_id, status }) => {
                if let Some(s) = status
                    .as_deref()
                    .filter(|s| *s == "out_of_service" || *s == "in_maintenance")
                {
                    d.vehicle_dropped(&vehicle_id, s).await;
                }
            }
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "dispatch fell behind the event bus; pull events may be missed"
                );
            }
            Err(_) => return,
        }
    }
}
