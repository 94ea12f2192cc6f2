//! charging's energy routes: the panel meters' and chargers' day (kWh and cost by band
//! per panel and per charger) and the panels' month (day by day), for signed-in dispatchers and depot managers. Money is integer
//! sen (Rupiah x 100) and the text Indonesia writes (`Rp 146.044,98`).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::PEOPLE;
use super::energy::{rupiah, totals, Tariff};
use super::service::ChargingApi;
use crate::http::ApiError;
use crate::modules::auth::service::People;

/// A panel is online when its newest reading is this recent.
const ONLINE_MS: i64 = 5 * 60_000;

#[derive(Clone)]
struct St {
    api: Arc<ChargingApi>,
    people: Arc<People>,
    services: crate::modules::framework::Services,
}

/// A panel as read for a period: its name, newest reading time and power, and its
/// readings over the period (with the margin).
type PanelReadings = (String, i64, Option<i64>, Vec<(i64, i64)>);

async fn load(api: &ChargingApi, from_ms: i64, to_ms: i64) -> Result<Vec<PanelReadings>, ApiError> {
    api.store
        .read(move |c| {
            let mut out = Vec::new();
            for (panel, last, power) in super::meters::panels(c)? {
                let r = super::meters::readings(c, &panel, from_ms, to_ms)?;
                out.push((panel, last, power, r));
            }
            Ok(out)
        })
        .await
        .map_err(ApiError::internal)
}

/// The tariff and its zone; the start of a date there in ms.
fn zone(t: &Tariff) -> Result<jiff::tz::TimeZone, ApiError> {
    jiff::tz::TimeZone::get(&t.timezone).map_err(ApiError::internal)
}

fn start_ms(d: jiff::civil::Date, tz: &jiff::tz::TimeZone) -> Result<i64, ApiError> {
    // A date jiff cannot place in the zone (the far past or future) is the caller's.
    Ok(d.to_zoned(tz.clone())
        .map_err(|_| ApiError::bad_request("that date is out of range"))?
        .timestamp()
        .as_millisecond())
}

fn next(d: jiff::civil::Date) -> Result<jiff::civil::Date, ApiError> {
    d.tomorrow()
        .map_err(|_| ApiError::bad_request("that date is out of range"))
}

/// Sums of `wh` and `cost_sen` over JSON rows.
fn sum(rows: &[Value]) -> (i64, i64) {
    rows.iter().fold((0, 0), |a, r| {
        (
            a.0 + r["wh"].as_i64().unwrap_or(0),
            a.1 + r["cost_sen"].as_i64().unwrap_or(0),
        )
    })
}

#[derive(Deserialize)]
struct DayQuery {
    date: Option<String>,
}

async fn day(
    State(s): State<St>,
    headers: HeaderMap,
    Query(q): Query<DayQuery>,
) -> Result<Json<Value>, ApiError> {
    s.people.require(&headers, PEOPLE).await?;
    Ok(Json(day_json(&s.api, q.date.as_deref()).await?))
}

/// Each charger's energy and cost by band over `[from, to)`, from its sessions'
/// registers, costed the same way as the panels'.
async fn chargers_json(
    api: &ChargingApi,
    from: i64,
    to: i64,
    tariff: &Tariff,
    tz: &jiff::tz::TimeZone,
) -> Result<Vec<Value>, ApiError> {
    let list: Vec<(String, i64)> = api
        .chargers()
        .await
        .map_err(ApiError::internal)?
        .into_iter()
        .map(|c| (c.id, c.connectors))
        .collect();
    let (t2, tz2) = (tariff.clone(), tz.clone());
    let per_charger = api
        .store
        .read(move |c| super::charger_energy::day(c, &list, from, to, &t2, &tz2))
        .await
        .map_err(ApiError::internal)?;
    Ok(per_charger
        .into_iter()
        .map(|(id, t)| {
            json!({"charger": id, "wh": t.wh, "cost_sen": t.cost_sen, "cost": rupiah(t.cost_sen), "bands": t.bands})
        })
        .collect())
}

/// A day's energy and cost per panel and band (today in the tariff's zone by default).
pub(super) async fn day_json(api: &ChargingApi, date: Option<&str>) -> Result<Value, ApiError> {
    let tariff = api.tariff().await;
    let tz = zone(&tariff)?;
    let now = crate::util::now_ms();
    let date = match date {
        Some(d) => d
            .parse::<jiff::civil::Date>()
            .map_err(|_| ApiError::bad_request("date is YYYY-MM-DD"))?,
        None => jiff::Timestamp::from_millisecond(now)
            .map_err(ApiError::internal)?
            .to_zoned(tz.clone())
            .date(),
    };
    let (from, to) = (start_ms(date, &tz)?, start_ms(next(date)?, &tz)?);
    let panels: Vec<Value> = load(api, from, to)
        .await?
        .into_iter()
        .map(|(panel, last, power, r)| {
            let t = totals(&r, from, to, &tariff, &tz);
            json!({"panel": panel, "online": now - last <= ONLINE_MS, "last_ms": last, "power_w": power,
                   "wh": t.wh, "cost_sen": t.cost_sen, "cost": rupiah(t.cost_sen), "bands": t.bands})
        })
        .collect();
    let (wh, sen) = sum(&panels);
    // Per charger too: its sessions' registers, costed the same way.
    let chargers = chargers_json(api, from, to, &tariff, &tz).await?;
    Ok(
        json!({"date": date.to_string(), "timezone": tariff.timezone, "panels": panels,
              "wh": wh, "cost_sen": sen, "cost": rupiah(sen), "chargers": chargers}),
    )
}

#[derive(Deserialize)]
struct MonthQuery {
    month: String,
}

async fn month(
    State(s): State<St>,
    headers: HeaderMap,
    Query(q): Query<MonthQuery>,
) -> Result<Json<Value>, ApiError> {
    s.people.require(&headers, PEOPLE).await?;
    Ok(Json(month_json(&s.api, &q.month).await?))
}

/// A month's energy and cost day by day (`month` is YYYY-MM).
pub(super) async fn month_json(api: &ChargingApi, month: &str) -> Result<Value, ApiError> {
    let first = format!("{month}-01")
        .parse::<jiff::civil::Date>()
        .map_err(|_| ApiError::bad_request("month is YYYY-MM"))?;
    let tariff = api.tariff().await;
    let tz = zone(&tariff)?;
    let (from, to) = (
        start_ms(first, &tz)?,
        start_ms(next(first.last_of_month())?, &tz)?,
    );
    let all = load(api, from, to).await?;
    let mut days = Vec::new();
    let mut d = first;
    while d <= first.last_of_month() {
        let (a, b) = (start_ms(d, &tz)?, start_ms(next(d)?, &tz)?);
        let t: Vec<_> = all
            .iter()
            .map(|p| totals(&p.3, a, b, &tariff, &tz))
            .collect();
        days.push(
            json!({"date": d.to_string(), "wh": t.iter().map(|x| x.wh).sum::<i64>(),
                         "cost_sen": t.iter().map(|x| x.cost_sen).sum::<i64>()}),
        );
        d = next(d)?;
    }
    let (wh, sen) = sum(&days);
    // The month per panel and per charger too (the summary the issue asks for).
    let panels: Vec<Value> = all
        .iter()
        .map(|p| {
            let t = totals(&p.3, from, to, &tariff, &tz);
            json!({"panel": p.0, "wh": t.wh, "cost_sen": t.cost_sen, "cost": rupiah(t.cost_sen)})
        })
        .collect();
    let chargers = chargers_json(api, from, to, &tariff, &tz).await?;
    Ok(
        json!({"month": month, "days": days, "wh": wh, "cost_sen": sen, "cost": rupiah(sen),
              "panels": panels, "chargers": chargers}),
    )
}

#[derive(Deserialize)]
struct DaysQuery {
    days: Option<i64>,
}

/// Energy per km per bus over the last `days` (7).
async fn efficiency(
    State(s): State<St>,
    headers: HeaderMap,
    Query(q): Query<DaysQuery>,
) -> Result<Json<Value>, ApiError> {
    s.people.require(&headers, PEOPLE).await?;
    let days = q.days.unwrap_or(7);
    Ok(Json(
        super::efficiency::efficiency_json(&s.api, &s.services, days).await?,
    ))
}

pub(super) fn routes<S: Clone + Send + Sync + 'static>(
    api: Arc<ChargingApi>,
    people: Arc<People>,
    services: crate::modules::framework::Services,
) -> Router<S> {
    Router::new()
        .route("/api/v1/charging/energy", get(day))
        .route("/api/v1/charging/energy/month", get(month))
        .route("/api/v1/charging/efficiency", get(efficiency))
        .with_state(St {
            api,
            people,
            services,
        })
}
