//! Publishing as a vehicle over MQTT with an outside client (rumqttc), shared by the
//! fleet tests that drive a depot the way its buses do.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Publishes one JSON message as `vehicle` on its own topic `kind` (QoS 1, waits for
/// the acknowledgement; a refused connection is retried for up to 20 s, since device
/// credentials may still be on their way by sync).
pub(crate) async fn publish(
    mqtt_port: u16,
    vehicle: &str,
    password: &str,
    kind: &str,
    payload: serde_json::Value,
) {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    static N: AtomicU64 = AtomicU64::new(0);
    let id = format!(
        "{vehicle}-{kind}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let mut opts = MqttOptions::new(id, "127.0.0.1", mqtt_port);
    opts.set_credentials(vehicle, password);
    let (client, mut events) = AsyncClient::new(opts, 8);
    client
        .publish(
            format!("garasi/v1/vehicles/{vehicle}/{kind}"),
            QoS::AtLeastOnce,
            false,
            payload.to_string(),
        )
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no PUBACK for {vehicle} {kind}"
        );
        match tokio::time::timeout(Duration::from_secs(5), events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => break,
            Ok(Ok(_)) => {}
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let _ = client.disconnect().await;
}
