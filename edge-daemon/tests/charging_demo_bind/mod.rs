//! The dispatcher binds a bus to a connector on the Charging page (and through the API
//! the page uses), against the running demo: the binding shows on the page attributed
//! to the dispatcher and moves the plan to the new bus; a bus already on another
//! connector, a bus the fleet does not know, a page that is out of date and two
//! dispatchers binding the same bus at once are all refused with the right answer.

use super::*;

/// PUT of a binding; the status and the body.
pub async fn bind(
    edge: &Edge,
    t: &str,
    charger: &str,
    connector: i64,
    tx: i64,
    vehicle: Option<&str>,
) -> (u16, Value) {
    let r = reqwest::Client::new()
        .put(format!(
            "{}/api/v1/charging/chargers/{charger}/connectors/{connector}/vehicle",
            edge.http
        ))
        .bearer_auth(t)
        .json(&serde_json::json!({"transaction_id": tx, "vehicle": vehicle}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// The running transactions: (charger, connector) -> (transaction, bus).
async fn running(edge: &Edge, t: &str) -> Vec<(String, i64, i64, Option<String>)> {
    let s = get(edge, t, "/api/v1/charging/sessions").await;
    s["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["stop_ms"].is_null() && x["origin"] == "start")
        .map(|x| {
            (
                x["charger_id"].as_str().unwrap().to_string(),
                x["connector_id"].as_i64().unwrap(),
                x["transaction_id"].as_i64().unwrap(),
                x["vehicle_id"].as_str().map(str::to_string),
            )
        })
        .collect()
}

type Running = (String, i64, i64, String);

/// The transactions on CP-01 and CP-02's first connectors, with their buses.
fn first_two(open: &[(String, i64, i64, Option<String>)]) -> (Running, Running) {
    let on = |c: &str| {
        let x = open.iter().find(|x| x.0 == c && x.1 == 1).cloned().unwrap();
        (x.0, x.1, x.2, x.3.unwrap())
    };
    (on("CP-01"), on("CP-02"))
}

/// Through the API: what the page's form relies on.
pub async fn through_the_api(edge: &Edge, t: &str) {
    let open = running(edge, t).await;
    let ((c1, k1, tx1, bus1), (c2, k2, tx2, bus2)) = first_two(&open);
    // A page rendered for an earlier transaction: refused, nothing changes.
    assert_eq!(
        bind(edge, t, &c1, k1, tx1 + 1000, Some("bus-030")).await.0,
        409
    );
    // No transaction on that connector.
    assert_eq!(bind(edge, t, "CP-01", 9, tx1, Some("bus-030")).await.0, 404);
    // Not a bus of the fleet, a hostile id, an unknown field, no sign-in.
    assert_eq!(bind(edge, t, &c1, k1, tx1, Some("bus-999")).await.0, 400);
    assert_eq!(
        bind(edge, t, &c1, k1, tx1, Some("bus 1; DROP")).await.0,
        400
    );
    let r = reqwest::Client::new()
        .put(format!(
            "{}/api/v1/charging/chargers/{c1}/connectors/{k1}/vehicle",
            edge.http
        ))
        .bearer_auth(t)
        .json(&serde_json::json!({"transaction_id": tx1, "vehicle": "bus-030", "by": "boss"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422, "a body with a field of its own is refused");
    let r = reqwest::Client::new()
        .put(format!(
            "{}/api/v1/charging/chargers/{c1}/connectors/{k1}/vehicle",
            edge.http
        ))
        .json(&serde_json::json!({"transaction_id": tx1, "vehicle": "bus-030"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A bus already charging elsewhere.
    let (code, body) = bind(edge, t, &c1, k1, tx1, Some(&bus2)).await;
    assert_eq!(code, 409, "{body}");
    assert!(
        body.to_string().contains(&format!("{c2} connector {k2}")),
        "{body}"
    );
    // Two dispatchers free both connectors' buses and bind one bus to both at once:
    // exactly one wins, every time.
    for round in 0..5 {
        assert_eq!(bind(edge, t, &c1, k1, tx1, None).await.0, 200);
        assert_eq!(bind(edge, t, &c2, k2, tx2, None).await.0, 200);
        let (a, b) = tokio::join!(
            bind(edge, t, &c1, k1, tx1, Some(&bus1)),
            bind(edge, t, &c2, k2, tx2, Some(&bus1))
        );
        let mut codes = [a.0, b.0];
        codes.sort_unstable();
        assert_eq!(codes, [200, 409], "round {round}: {a:?} {b:?}");
        let now = running(edge, t).await;
        let holders = now
            .iter()
            .filter(|x| x.3.as_deref() == Some(bus1.as_str()))
            .count();
        assert_eq!(
            holders, 1,
            "round {round}: the bus is on one connector: {now:?}"
        );
    }
    // Put things back as the demo had them.
    assert_eq!(bind(edge, t, &c1, k1, tx1, None).await.0, 200);
    assert_eq!(bind(edge, t, &c2, k2, tx2, None).await.0, 200);
    assert_eq!(bind(edge, t, &c1, k1, tx1, Some(&bus1)).await.0, 200);
    assert_eq!(bind(edge, t, &c2, k2, tx2, Some(&bus2)).await.0, 200);
    // The same binding again changes nothing and is still fine.
    assert_eq!(bind(edge, t, &c1, k1, tx1, Some(&bus1)).await.0, 200);
}

async fn row_of(d: &WebDriver, charger: &str, connector: i64) -> WebElement {
    d.find(By::Css(format!(
        "tr[data-charger='{charger}'][data-connector='{connector}']"
    )))
    .await
    .unwrap()
}

async fn submit(d: &WebDriver, charger: &str, connector: i64, bus: &str) {
    let fold = row_of(d, charger, connector)
        .await
        .find(By::Css("details.bind"))
        .await
        .unwrap();
    if fold.attr("open").await.unwrap().is_none() {
        fold.find(By::Css("summary"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }
    let input = row_of(d, charger, connector)
        .await
        .find(By::Css("form.bind input"))
        .await
        .unwrap();
    input.clear().await.unwrap();
    input.send_keys(bus).await.unwrap();
    row_of(d, charger, connector)
        .await
        .find(By::Css("form.bind button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// The refusal the row's form shows, once it says `want` (or whatever it said last).
async fn refusal(d: &WebDriver, charger: &str, connector: i64, want: &str) -> String {
    let mut last = String::new();
    for _ in 0..40 {
        let row = row_of(d, charger, connector).await;
        last = row
            .find(By::Css(".bind-error"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap_or_default();
        if last == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    last
}

/// On the page (English), signed in as the demo's dispatcher.
pub async fn on_the_page(d: &WebDriver, edge: &Edge, t: &str) {
    let open = running(edge, t).await;
    let ((c1, k1, tx1, bus1), (_, _, _, bus2)) = first_two(&open);
    // A bus of the fleet with no transaction (the demo plugs in fewer than it has).
    let free = (1..=30)
        .map(|n| format!("bus-{n:03}"))
        .find(|b| open.iter().all(|x| x.3.as_deref() != Some(b.as_str())))
        .unwrap();
    let free = free.as_str();
    submit(d, &c1, k1, free).await;
    let shown = eventually(Duration::from_secs(15), || async {
        let row = row_of(d, &c1, k1).await;
        let text = row.find(By::Css("td.bus")).await.ok()?.text().await.ok()?;
        (row.attr("data-vehicle").await.ok()?.as_deref() == Some(free)).then_some(text)
    })
    .await
    .expect("the page shows the bus it bound");
    assert!(shown.contains("bound by dispatcher"), "{shown}");
    // The session says who, and the plan follows the new bus.
    let after = running(edge, t).await;
    assert!(
        after
            .iter()
            .any(|x| x.2 == tx1 && x.3.as_deref() == Some(free)),
        "{after:?}"
    );
    let planned = eventually(Duration::from_secs(15), || async {
        let v = get(edge, t, "/api/v1/charging/chargers").await;
        v["plan"]
            .as_array()?
            .iter()
            .any(|p| p["charger"] == c1.as_str() && p["connector"] == k1 && p["vehicle"] == free)
            .then_some(())
    })
    .await;
    assert!(
        planned.is_some(),
        "the plan is made again for the bus bound"
    );
    // A bus on another connector, and one the fleet does not know: told on the page.
    submit(d, &c1, k1, &bus2).await;
    let e409 = "That bus is already charging on another connector, or the bus on this connector changed. Unbind it there first, or reload the page.";
    assert_eq!(refusal(d, &c1, k1, e409).await, e409);
    submit(d, &c1, k1, "bus-999").await;
    let e400 = "That is not a bus of this depot's fleet; choose one from the list.";
    assert_eq!(refusal(d, &c1, k1, e400).await, e400);
    assert_eq!(
        row_of(d, &c1, k1)
            .await
            .attr("data-vehicle")
            .await
            .unwrap()
            .as_deref(),
        Some(free),
        "a refused binding changes nothing"
    );
    // And back to the demo's bus.
    assert_eq!(bind(edge, t, &c1, k1, tx1, Some(&bus1)).await.0, 200);
}
