//! fleet's bus reactions: a critical fault takes the vehicle out of service.

use std::sync::Arc;

use super::service::{FleetApi, StatusBody};
use super::status::get_status;
use crate::bus::Event;

/// A critical fault takes a vehicle out of service (a dispatcher puts it back). The
/// status record says why and syncs like any dispatcher's change.
pub(super) async fn take_faulty_out_of_service(
    api: Arc<FleetApi>,
    mut events: tokio::sync::broadcast::Receiver<Event>,
    cancel: tokio_util::sync::CancellationToken,
) {
    loop {
        let ev = tokio::select! {
            _ = cancel.cancelled() => return,
            ev = events.recv() => ev,
        };
        let vehicle_id = match ev {
            Ok(Event::FaultsChanged {
                vehicle_id,
                critical,
                ..
            }) if critical > 0 => vehicle_id,
            Ok(_) => continue,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "fleet fell behind the event bus");
                continue;
            }
            Err(_) => return,
        };
        let id = vehicle_id.clone();
        let current = api
            .store
            .read(move |c| get_status(c, &id))
            .await
            .ok()
            .flatten()
            .and_then(|s| s.status);
        if current.as_deref() == Some("out_of_service") {
            continue;
        }
        let body = StatusBody {
            status: "out_of_service".into(),
            note: Some("critical fault reported by the vehicle".into()),
            set_by: "telemetry".into(),
        };
        match api.set_status(&vehicle_id, body).await {
            Ok(_) => {
                tracing::warn!(vehicle = %vehicle_id, "critical fault: vehicle taken out of service")
            }
            Err(e) => {
                tracing::error!(vehicle = %vehicle_id, error = %e, "could not take a faulty vehicle out of service")
            }
        }
    }
}
