//! The Energy page's view: one row per panel meter (online or offline, kW now, today's
//! kWh and cost in Rupiah, the split by tariff band), the day's totals, and the month's
//! days as embedded JSON for the bar chart, with the month's total.

use serde_json::{json, Value};

use super::{hm, script_json, St};
use crate::http::i18n::{Catalogue, Lang};
use crate::http::ApiError;
use crate::util::esc;

/// Message keys this view uses (checked against the catalogue by the tests).
pub(super) const KEYS: &[&str] = &[
    "col_panel",
    "col_status",
    "col_kw_now",
    "col_today_kwh",
    "col_today_cost",
    "col_bands",
    "online",
    "offline",
    "total",
    "no_panels",
    "month_total",
    "series_kwh",
    "last_reading",
    "never",
    // energy_tables.rs
    "chargers_today",
    "col_charger_id",
    "efficiency_title",
    "col_bus",
    "col_km",
    "col_charged",
    "col_kwh_per_km",
    "col_assumed",
    "month_by_source",
    "col_source",
    "col_month_kwh",
    "col_month_cost",
];

/// How long the month's bars are reused.
const MONTH_TTL_MS: i64 = 5 * 60_000;

pub(super) fn kwh(lang: Lang, wh: i64) -> String {
    super::num(lang, wh as f64 / 1000.0)
}

pub(super) fn bands(lang: Lang, v: &Value) -> String {
    let empty = Vec::new();
    v.as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|b| {
            format!(
                "<span class=\"band\">{}: {} kWh · {}</span>",
                esc(b["band"].as_str().unwrap_or("?")),
                kwh(lang, b["wh"].as_i64().unwrap_or(0)),
                esc(&super::super::energy::rupiah(
                    b["cost_sen"].as_i64().unwrap_or(0)
                ))
            )
        })
        .collect::<Vec<_>>()
        .join("<br>")
}

pub(super) async fn render(
    s: &St,
    w: &Catalogue,
    lang: Lang,
    date: Option<&str>,
    month: Option<&str>,
) -> Result<String, ApiError> {
    let api = &s.api;
    let (tz, day, _, _) = super::super::api::day_bounds(api, date).await?;
    let today = super::super::energy_api::day_json(api, Some(&day.to_string())).await?;
    let month = match month {
        Some(m) => m.to_string(),
        None => day.strftime("%Y-%m").to_string(),
    };
    let now = crate::util::now_ms();
    let cached = s
        .months
        .lock()
        .get(&month)
        .filter(|(at, _)| now - at < MONTH_TTL_MS)
        .map(|(_, v)| v.clone());
    let days = match cached {
        Some(v) => v,
        None => {
            let v = super::super::energy_api::month_json(api, &month).await?;
            let mut m = s.months.lock();
            // A few months at most: the month shown, and any a person looked back at.
            m.retain(|_, (at, _)| now - *at < MONTH_TTL_MS);
            if m.len() < 24 {
                m.insert(month.clone(), (now, v.clone()));
            }
            v
        }
    };
    let t = |k: &str| esc(w.t(lang, k));
    let mut out = format!(
        "<table id=\"panels\"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
        t("col_panel"), t("col_status"), t("col_kw_now"), t("col_today_kwh"), t("col_today_cost"), t("col_bands")
    );
    let empty = Vec::new();
    let panels = today["panels"].as_array().unwrap_or(&empty);
    if panels.is_empty() {
        out.push_str(&format!(
            "<tr><td colspan=\"6\" class=\"muted\">{}</td></tr>",
            t("no_panels")
        ));
    }
    for p in panels {
        let online = p["online"].as_bool() == Some(true);
        let last = p["last_ms"].as_i64().filter(|ms| *ms > 0);
        out.push_str(&format!(
            "<tr data-panel=\"{id}\"><td><b>{id}</b></td><td><span class=\"pill {on}\">{ontext}</span><br><span class=\"muted\">{lastlabel} {last}</span></td>\
<td class=\"num kw\">{kw}</td><td class=\"num kwh\">{kwh}</td><td class=\"num cost\">{cost}</td><td class=\"bands\">{bands}</td></tr>",
            id = esc(p["panel"].as_str().unwrap_or("")),
            on = if online { "online" } else { "offline" },
            ontext = t(if online { "online" } else { "offline" }),
            lastlabel = t("last_reading"),
            last = last.map_or_else(|| t("never"), |ms| hm(ms, &tz, day)),
            kw = p["power_w"].as_i64().map_or_else(|| "–".into(), |w| super::num(lang, w as f64 / 1000.0)),
            kwh = kwh(lang, p["wh"].as_i64().unwrap_or(0)),
            cost = esc(p["cost"].as_str().unwrap_or("")),
            bands = bands(lang, &p["bands"]),
        ));
    }
    out.push_str(&format!(
        "</tbody><tfoot><tr><th>{}</th><th></th><th></th><th class=\"num\" id=\"total-kwh\">{}</th><th class=\"num\" id=\"total-cost\">{}</th><th></th></tr></tfoot></table>",
        t("total"), kwh(lang, today["wh"].as_i64().unwrap_or(0)), esc(today["cost"].as_str().unwrap_or(""))
    ));
    out.push_str(&super::energy_tables::chargers_html(
        lang,
        &today["chargers"],
        &t,
    ));
    let eff = super::super::efficiency::efficiency_json(api, &s.services, 7).await?;
    out.push_str(&super::energy_tables::efficiency_html(lang, &eff, &t));
    out.push_str(&format!(
        "<p id=\"month-total\"><b>{}</b> ({}): {} kWh · {}</p>",
        t("month_total"),
        esc(&month),
        kwh(lang, days["wh"].as_i64().unwrap_or(0)),
        esc(days["cost"].as_str().unwrap_or(""))
    ));
    out.push_str(&super::energy_tables::month_sources_html(lang, &days, &t));
    let mut ts = Vec::new();
    let mut values = Vec::new();
    for d in days["days"].as_array().unwrap_or(&empty) {
        let start = d["date"]
            .as_str()
            .and_then(|x| x.parse::<jiff::civil::Date>().ok())
            .and_then(|x| x.to_zoned(tz.clone()).ok())
            .map(|z| z.timestamp().as_millisecond());
        if let Some(ms) = start {
            ts.push(ms);
            values.push(d["wh"].as_i64().unwrap_or(0) as f64 / 1000.0);
        }
    }
    let data = json!({"kind": "month", "t": ts, "kwh": values, "labels": {"kwh": w.t(lang, "series_kwh")}});
    out.push_str(&format!(
        "<script type=\"application/json\" id=\"chart-data\">{}</script>",
        script_json(&data)
    ));
    Ok(out)
}
