//! Browser test of the depot board: headless Debian Chromium driven through chromedriver
//! (thirtyfour) against the real binary. The board must list the buses and update live
//! from MQTT without a reload.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use rumqttc::QoS;
use thirtyfour::prelude::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn board_lists_buses_and_updates_live() {
    if !require_tool("chromium") || !require_tool("chromedriver") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let pw = depot(tmp.path(), &["bus-1", "bus-2", "bus-3"]);
    let edge = Edge::start(tmp.path(), &[]);
    let (c, mut rx) = mqtt_client(edge.mqtt, "bus-1", "bus-1", &pw[0]).await;
    connack(&mut rx).await.unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _driver = Driver(
        Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let d = chrome(port).await;
    let result = async {
        d.goto(&format!("{}/", edge.http)).await?;
        let rows = d.find_all(By::Css("#board tbody tr")).await?;
        assert_eq!(rows.len(), 3, "one row per registered bus");
        let ids: Vec<String> =
            futures::future::join_all(rows.iter().map(|r| r.attr("data-vehicle")))
                .await
                .into_iter()
                .map(|a| a.unwrap().unwrap())
                .collect();
        assert_eq!(ids, ["bus-1", "bus-2", "bus-3"]);
        assert_eq!(d.find(By::Id("t-count")).await?.text().await?, "3");
        // Mark the page: a reload would lose this.
        d.execute("window.__garasiNoReload = 42;", vec![]).await?;

        // Publish over MQTT; the row must change in place.
        let payload = serde_json::json!({"ts": now_ms(), "signals": {
            "Vehicle.Speed": 37.0,
            "Vehicle.Powertrain.TractionBattery.StateOfCharge.Displayed": 64.0
        }})
        .to_string();
        c.publish(
            "garasi/v1/vehicles/bus-1/telemetry",
            QoS::AtLeastOnce,
            false,
            payload,
        )
        .await
        .unwrap();
        let row = d.find(By::Css("tr[data-vehicle='bus-1']")).await?;
        let mut soc = String::new();
        for _ in 0..100 {
            soc = row.find(By::Css("td.soc")).await?.text().await?;
            if soc.contains("64%") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(soc.contains("64%"), "SoC cell never updated: {soc:?}");
        assert_eq!(
            row.find(By::Css("td.speed")).await?.text().await?,
            "37 km/h"
        );
        assert_eq!(row.find(By::Css(".pill")).await?.text().await?, "online");
        assert_eq!(d.find(By::Id("t-online")).await?.text().await?, "1");
        let marker = d.execute("return window.__garasiNoReload;", vec![]).await?;
        assert_eq!(
            marker.json(),
            &serde_json::json!(42),
            "page reloaded instead of updating live"
        );
        let png = d.screenshot_as_png().await?;
        std::fs::write(std::env::temp_dir().join("garasi-board.png"), png).ok();
        Ok::<(), WebDriverError>(())
    }
    .await;
    d.quit().await.ok();
    result.unwrap();
}
