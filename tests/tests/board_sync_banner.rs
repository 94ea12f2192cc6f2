//! The depot board in headless Chromium while the cloud link is down and after it
//! returns: an offline banner with the number of changes waiting, then drain progress
//! reaching 100% and "synced".
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod browser;

use std::time::Duration;

use garasi_fleet_tests::{depot, eventually, have_openssl, Cloud};
use thirtyfour::prelude::*;

async fn banner(d: &WebDriver) -> (bool, String, String, String) {
    let b = d.find(By::Id("sync-banner")).await.unwrap();
    let shown = b.is_displayed().await.unwrap();
    let state = b.attr("data-state").await.unwrap().unwrap_or_default();
    let progress = b.attr("data-progress").await.unwrap().unwrap_or_default();
    let text = d
        .find(By::Id("sync-text"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    (shown, state, progress, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn board_shows_offline_banner_and_drain_progress() {
    if !have_openssl() || !browser::have("chromium") || !browser::have("chromedriver") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cloud = Cloud::start(tmp.path()).await;
    let token = cloud.new_depot_token("Depot A").await;
    let (edge, depot_id) = depot(
        &tmp.path().join("edge"),
        &cloud,
        &token,
        &["bus-1", "bus-2", "bus-3"],
    )
    .await;
    let http = reqwest::Client::new();
    let status = format!("http://{}/api/v1/sync/status", edge.http_addr);
    let link_is = |want: &'static str| {
        let (http, status) = (http.clone(), status.clone());
        async move {
            http.get(&status)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()["link"]
                == want
        }
    };
    eventually("link up", || link_is("online")).await;

    let tok = garasi_fleet_tests::dispatcher_token(
        &cloud.https,
        &cloud.admin_base,
        &depot_id,
        &format!("http://{}", edge.http_addr),
        "dispatcher",
    )
    .await;
    cloud.cut_link();
    for bus in ["bus-1", "bus-2", "bus-3"] {
        let r = http
            .put(format!(
                "http://{}/api/v1/vehicles/{bus}/status",
                edge.http_addr
            ))
            .bearer_auth(&tok)
            .json(&serde_json::json!({"status": "in_maintenance", "set_by": "dispatcher"}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    eventually("link down", || link_is("offline")).await;

    let Some(browser) = browser::start().await else {
        return;
    };
    let d = browser.driver.clone();
    let result = async {
        d.goto(&format!("http://{}/", edge.http_addr)).await?;
        let mut seen = (false, String::new(), String::new(), String::new());
        for _ in 0..100 {
            seen = banner(&d).await;
            if seen.1 == "offline" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(seen.0, "banner visible while offline");
        assert_eq!(seen.1, "offline");
        assert!(
            seen.3.contains("Offline") && seen.3.contains("3 change"),
            "banner text: {}",
            seen.3
        );
        assert_eq!(seen.2, "0", "nothing drained yet");

        cloud.restore_link().await;
        for _ in 0..150 {
            seen = banner(&d).await;
            if seen.1 == "synced" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            seen.1, "synced",
            "banner after the link returns: {}",
            seen.3
        );
        assert_eq!(seen.2, "100", "drain progress complete");
        let png = d.screenshot_as_png().await?;
        std::fs::write(std::env::temp_dir().join("garasi-board-synced.png"), png).ok();
        Ok::<(), WebDriverError>(())
    }
    .await;
    d.quit().await.ok();
    result.unwrap();
    assert!(edge.stop(Duration::from_secs(5)).await);
}
