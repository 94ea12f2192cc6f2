//! template's bus reactions: here, noting vehicles added to the registry. A real module
//! reacts to the facts it needs and never blocks the bus.

use std::sync::Arc;

use super::service::TemplateApi;
use crate::bus::Event;

pub(super) async fn watch(
    _api: Arc<TemplateApi>,
    mut events: tokio::sync::broadcast::Receiver<Event>,
    cancel: tokio_util::sync::CancellationToken,
) {
    loop {
        let ev = tokio::select! {
            _ = cancel.cancelled() => return,
            ev = events.recv() => ev,
        };
        match ev {
            Ok(Event::VehicleUpserted { vehicle_id }) => {
                tracing::debug!(vehicle = %vehicle_id, "template saw a vehicle change");
            }
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "template fell behind the event bus");
            }
            Err(_) => return,
        }
    }
}
