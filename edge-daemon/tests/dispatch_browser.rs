//! Browser tests of the dispatcher board and the driver tablet page (issue 4,
//! acceptance 5): headless Debian Chromium through chromedriver against the real binary,
//! at a 10-inch tablet's size (1280 x 800). The board: sign in, auto-assign proposal and
//! apply, the late pull-out alert, assign a driver in the edit panel, take a bus out of
//! service, pick a replacement and swap, all without reloading the page. The tablet: a
//! wrong PIN is refused on the page, the right one shows the bus, bay and trips.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use rumqttc::QoS;
use thirtyfour::prelude::*;

fn setup_people(dir: &Path) {
    add_person(
        dir,
        "disp",
        "Sari",
        "dispatcher",
        None,
        None,
        Some("dispatcher password"),
    );
    add_person(dir, "drv-1", "Budi", "driver", None, Some("2468"), None);
}

/// Three blocks today: one whose pull-out was 30 minutes ago (late once assigned), two
/// in an hour.
fn setup_blocks(dir: &Path, date: &str) {
    let now = now_ms();
    let trip = |n: i64, start: i64| {
        serde_json::json!({"trip": format!("t{n}"), "route": "R9", "start": "10:00:00", "end": "10:40:00",
            "start_ms": start, "end_ms": start + 2_400_000, "from": "Depot Gate", "to": "Terminal Kota", "km": 20.0})
    };
    let blocks = serde_json::json!([
        {"id": "late", "service_date": date, "block": "L1", "routes": "R9", "pull_out_ms": now - 1_800_000, "pull_in_ms": now + 7_200_000, "distance_km": 40.0,
         "trips": [trip(1, now - 1_200_000), trip(2, now + 1_800_000)]},
        {"id": "b2", "service_date": date, "block": "B2", "routes": "R9", "pull_out_ms": now + 3_600_000, "pull_in_ms": now + 9_000_000, "distance_km": 40.0,
         "trips": [trip(3, now + 4_000_000), trip(4, now + 6_500_000)]},
        {"id": "b3", "service_date": date, "block": "B3", "routes": "R9", "pull_out_ms": now + 3_600_000, "pull_in_ms": now + 9_000_000, "distance_km": 40.0,
         "trips": [trip(5, now + 4_000_000)]},
    ]);
    let f = dir.join("blocks.json");
    std::fs::write(&f, blocks.to_string()).unwrap();
    let out = cli(&[
        "dispatch",
        "import-blocks",
        "--data-dir",
        dir.to_str().unwrap(),
        "--file",
        f.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn wait_text(d: &WebDriver, css: &str, want: &str) -> String {
    let mut last = String::new();
    for _ in 0..100 {
        if let Ok(e) = d.find(By::Css(css)).await {
            last = e.text().await.unwrap_or_default();
            if last.contains(want) {
                return last;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{css} never showed {want:?}; last: {last:?}");
}

/// A row's vehicle, read in one script call (the board re-renders its table every few
/// seconds, so an element found in one call may be gone in the next).
async fn vehicle_of(d: &WebDriver, block: &str) -> WebDriverResult<String> {
    let v = d
        .execute(
            &format!("return document.querySelector('#row-{block}').dataset.vehicle;"),
            vec![],
        )
        .await?;
    Ok(v.json().as_str().unwrap_or("").to_string())
}

async fn inner_text(d: &WebDriver, css: &str) -> WebDriverResult<String> {
    let v = d
        .execute(
            &format!("return document.querySelector('{css}').innerText;"),
            vec![],
        )
        .await?;
    Ok(v.json().as_str().unwrap_or("").to_string())
}

async fn click(d: &WebDriver, css: &str) {
    for _ in 0..50 {
        if let Ok(e) = d.find(By::Css(css)).await {
            if e.is_displayed().await.unwrap_or(false) && e.click().await.is_ok() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("could not click {css}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn board_and_tablet_in_a_browser() {
    if !require_tool("chromium") || !require_tool("chromedriver") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let pw = depot(dir, &["bus-1", "bus-2", "bus-3", "bus-4", "bus-5"]);
    setup_people(dir);
    let date = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .to_string();
    setup_blocks(dir, &date);
    let edge = Edge::start(dir, &["--depot-timezone", "UTC"]);
    // Charge reports: bus-4 is nearly empty and must never be proposed; four usable
    // buses for three blocks leave one spare to swap in.
    for (i, soc) in [90.0, 85.0, 80.0, 5.0, 70.0].into_iter().enumerate() {
        let id = format!("bus-{}", i + 1);
        let (c, mut rx) = mqtt_client(edge.mqtt, &id, &id, &pw[i]).await;
        connack(&mut rx).await.unwrap();
        let payload = serde_json::json!({"ts": now_ms(), "signals": {"Vehicle.Powertrain.TractionBattery.StateOfCharge.Displayed": soc}});
        c.publish(
            format!("garasi/v1/vehicles/{id}/telemetry"),
            QoS::AtLeastOnce,
            false,
            payload.to_string(),
        )
        .await
        .unwrap();
    }
    let known = eventually(Duration::from_secs(10), || async {
        let v: serde_json::Value = edge
            .staff_get(&format!("/api/v1/dispatch/days/{date}"))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        v["vehicles"]
            .as_array()?
            .iter()
            .all(|x| x["soc_pct"].is_number())
            .then_some(())
    })
    .await;
    assert!(known.is_some(), "charge reports reach dispatch");

    let (_driver, d) = browser().await;
    let result = async {
        d.set_window_rect(0, 0, 1280, 800).await?;
        d.goto(&format!("{}/dispatch?date={date}", edge.http))
            .await?;
        assert_eq!(
            d.find_all(By::Css("#blocks tbody tr[data-block]"))
                .await?
                .len(),
            3
        );
        d.execute("window.__noReload = 7;", vec![]).await?;

        // Not signed in: the action asks for a sign-in first.
        click(&d, "#auto").await;
        assert!(d.find(By::Id("login")).await?.is_displayed().await?);
        d.find(By::Id("login-person"))
            .await?
            .send_keys("disp")
            .await?;
        d.find(By::Id("login-password"))
            .await?
            .send_keys("wrong password")
            .await?;
        d.find(By::Css("#login button")).await?.click().await?;
        wait_text(&d, "#login-error", "wrong person id or password").await;
        d.find(By::Id("login-password")).await?.clear().await?;
        d.find(By::Id("login-password"))
            .await?
            .send_keys("dispatcher password")
            .await?;
        d.find(By::Css("#login button")).await?.click().await?;
        wait_text(&d, "#who", "Sari").await;

        // Auto-assign: the proposal, then apply.
        click(&d, "#auto").await;
        wait_text(&d, "#proposal-list", "late").await;
        let items = d.find_all(By::Css("#proposal-list li.proposal")).await?;
        assert_eq!(items.len(), 3, "three blocks, three proposals");
        let list = d.find(By::Id("proposal-list")).await?.text().await?;
        assert!(
            !list.contains("bus-4"),
            "the empty bus is never proposed: {list}"
        );
        click(&d, "#proposal-apply").await;
        wait_text(&d, "#row-b2 td.vehicle", "bus-").await;
        // The block whose pull-out passed raises the late alert on the board.
        wait_text(&d, "#alerts", "not pulled out yet").await;

        // Assign a driver and a bay in the edit panel.
        // The board re-renders every 3 s: a click that lands on a row being replaced
        // opens nothing, so open the panel until its driver list is there.
        let mut option = None;
        for _ in 0..10 {
            click(&d, "#row-late button.edit").await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            if let Ok(o) = d.find(By::Css("#edit-driver option[value='drv-1']")).await {
                option = Some(o);
                break;
            }
        }
        option.expect("the edit panel lists drv-1").click().await?;
        d.find(By::Id("edit-bay")).await?.send_keys("B7").await?;
        click(&d, "#edit-save").await;
        wait_text(&d, "#row-late td.driver", "Budi").await;

        // Out of service: confirm, the row is flagged, pick a replacement, swap.
        let before = vehicle_of(&d, "late").await?;
        click(&d, "#row-late button.oos").await;
        d.accept_alert().await?;
        wait_text(&d, "#row-late", "out of service").await;
        click(&d, "#row-late button.replace").await;
        wait_text(&d, "#replace-list", "Swap").await;
        let choices = d.find(By::Id("replace-list")).await?.text().await?;
        assert!(
            !choices.contains(&before) && !choices.contains("bus-4"),
            "{choices}"
        );
        click(&d, "#replace-list button.swap").await;
        let mut after = before.clone();
        for _ in 0..50 {
            after = vehicle_of(&d, "late").await?;
            if after != before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_ne!(after, before, "the swap replaced the vehicle");
        let png = d.screenshot_as_png().await?;
        std::fs::write(std::env::temp_dir().join("garasi-dispatch-board.png"), png).ok();
        let marker = d.execute("return window.__noReload;", vec![]).await?;
        assert_eq!(
            marker.json(),
            &serde_json::json!(7),
            "everything happened without a reload"
        );

        // The tablet, as the driver.
        d.delete_all_cookies().await?;
        d.goto(&format!("{}/tablet", edge.http)).await?;
        d.find(By::Id("pin-person"))
            .await?
            .send_keys("drv-1")
            .await?;
        d.find(By::Id("pin-pin")).await?.send_keys("1111").await?;
        d.find(By::Css("#pin-form button")).await?.click().await?;
        wait_text(&d, "#pin-error", "wrong person id or PIN").await;
        d.find(By::Id("pin-pin")).await?.send_keys("2468").await?;
        d.find(By::Css("#pin-form button")).await?.click().await?;
        wait_text(&d, "#driver", "Budi").await;
        wait_text(&d, "#signon-state", "Signed on").await;
        let bus = inner_text(&d, ".assignment .bus").await?;
        assert_eq!(bus, after, "the tablet shows the swapped-in bus");
        assert_eq!(inner_text(&d, ".assignment .bay").await?, "B7");
        let trips = inner_text(&d, ".assignment .trips").await?;
        assert!(trips.contains("Depot Gate → Terminal Kota"), "{trips}");
        let png = d.screenshot_as_png().await?;
        std::fs::write(std::env::temp_dir().join("garasi-tablet.png"), png).ok();
        Ok::<(), WebDriverError>(())
    }
    .await;
    d.quit().await.ok();
    result.unwrap();
}
