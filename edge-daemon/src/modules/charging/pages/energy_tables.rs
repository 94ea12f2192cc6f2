//! The Energy page's tables besides the panels: each charger's kWh and cost today, the
//! month per panel and per charger, and energy per km per bus (measured beside what
//! dispatch assumes).

use serde_json::Value;

use super::energy_view::{bands, kwh};
use crate::http::i18n::Lang;
use crate::util::esc;

/// Energy per km per bus: those that drove or charged.
pub(super) fn efficiency_html(lang: Lang, v: &Value, t: &dyn Fn(&str) -> String) -> String {
    let empty = Vec::new();
    let rows: Vec<&Value> = v["buses"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .filter(|b| b["km"].as_f64().is_some_and(|k| k > 0.0) || b["charged_wh"].as_i64() > Some(0))
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let opt = |x: &Value, d: usize| {
        x.as_f64().map_or_else(
            || "–".to_string(),
            |f| {
                let text = format!("{f:.d$}");
                if lang == Lang::Id {
                    text.replace('.', ",")
                } else {
                    text
                }
            },
        )
    };
    let mut out = format!(
        "<h2>{}</h2><table id=\"efficiency\"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
        t("efficiency_title"), t("col_bus"), t("col_km"), t("col_charged"), t("col_kwh_per_km"), t("col_assumed")
    );
    for b in rows {
        out.push_str(&format!(
            "<tr data-vehicle=\"{id}\"><td>{id}</td><td class=\"num\">{km}</td><td class=\"num\">{kwh}</td><td class=\"num per-km\">{per}</td><td class=\"num\">{assumed}</td></tr>",
            id = esc(b["vehicle"].as_str().unwrap_or("")),
            km = opt(&b["km"], 1),
            kwh = kwh(lang, b["charged_wh"].as_i64().unwrap_or(0)),
            per = opt(&b["kwh_per_km"], 2),
            assumed = opt(&b["assumed_kwh_per_km"], 2),
        ));
    }
    out.push_str("</tbody></table>");
    out
}

/// Each charger's kWh and cost today.
pub(super) fn chargers_html(lang: Lang, list: &Value, t: &dyn Fn(&str) -> String) -> String {
    let empty = Vec::new();
    let list = list.as_array().unwrap_or(&empty);
    if list.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "<h2>{}</h2><table id=\"chargers\"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
        t("chargers_today"),
        t("col_charger_id"),
        t("col_today_kwh"),
        t("col_today_cost"),
        t("col_bands")
    );
    for c in list {
        out.push_str(&format!(
            "<tr data-charger=\"{id}\"><td><b>{id}</b></td><td class=\"num kwh\">{kwh}</td><td class=\"num cost\">{cost}</td><td class=\"bands\">{bands}</td></tr>",
            id = esc(c["charger"].as_str().unwrap_or("")),
            kwh = kwh(lang, c["wh"].as_i64().unwrap_or(0)),
            cost = esc(c["cost"].as_str().unwrap_or("")),
            bands = bands(lang, &c["bands"]),
        ));
    }
    out.push_str("</tbody></table>");
    out
}

/// The month's kWh and cost per panel and per charger.
pub(super) fn month_sources_html(lang: Lang, month: &Value, t: &dyn Fn(&str) -> String) -> String {
    let empty = Vec::new();
    let rows: Vec<(&str, &Value)> = month["panels"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|p| (p["panel"].as_str().unwrap_or(""), p))
        .chain(
            month["chargers"]
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .map(|c| (c["charger"].as_str().unwrap_or(""), c)),
        )
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "<h2>{}</h2><table id=\"month-sources\"><thead><tr><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
        t("month_by_source"),
        t("col_source"),
        t("col_month_kwh"),
        t("col_month_cost")
    );
    for (name, v) in rows {
        out.push_str(&format!(
            "<tr data-source=\"{id}\"><td>{id}</td><td class=\"num\">{kwh}</td><td class=\"num\">{cost}</td></tr>",
            id = esc(name),
            kwh = kwh(lang, v["wh"].as_i64().unwrap_or(0)),
            cost = esc(v["cost"].as_str().unwrap_or("")),
        ));
    }
    out.push_str("</tbody></table>");
    out
}
