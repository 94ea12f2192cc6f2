//! The Charging page's view: alarms, then one row per connector (charger online or
//! offline, connector status, bus, kW now, session energy, planned against drawn kW,
//! energy needed and planned, ready-by against pull-out), then the site load series
//! for the chart as embedded JSON.

use std::collections::HashMap;

use serde_json::json;

use super::{hm, script_json, St};
use crate::http::i18n::{Catalogue, Lang};
use crate::http::ApiError;
use crate::util::esc;

/// Message keys this view uses (checked against the catalogue by the tests).
pub(super) const KEYS: &[&str] = &[
    "col_charger",
    "col_status",
    "col_bus",
    "col_kw_now",
    "col_session",
    "col_plan",
    "col_ready",
    "online",
    "offline",
    "no_chargers",
    "pull_out",
    "at_risk",
    "need",
    "planned",
    "no_plan",
    "no_cap",
    "alarms",
    "alarm_over_profile",
    "alarm_profile_rejected",
    "plan_made",
    "updated",
    "series_actual",
    "series_planned",
    "series_cap",
    "status_Unknown",
    "cap_site",
    "cap_other",
    "cap_charging",
    "cap_stale",
];

fn kw(lang: Lang, w: Option<f64>) -> String {
    w.map_or_else(|| "–".into(), |w| super::num(lang, w / 1000.0))
}

fn kwh(lang: Lang, wh: Option<i64>) -> String {
    wh.map_or_else(
        || "–".into(),
        |wh| format!("{} kWh", super::num(lang, wh as f64 / 1000.0)),
    )
}

/// A connector status in the page's language (OCPP's own word when the catalogue has none).
fn status<'a>(w: &'a Catalogue, lang: Lang, s: &'a str) -> String {
    let key = format!("status_{s}");
    let t = w.t(lang, &key);
    if t == key {
        s.to_string()
    } else {
        t.to_string()
    }
}

/// The last day's alarms (the newest 20).
fn alarms_html(
    alarms: &[crate::modules::charging::store::Alarm],
    tz: &jiff::tz::TimeZone,
    day: jiff::civil::Date,
    t: &dyn Fn(&str) -> String,
    lang: Lang,
) -> String {
    let mut out = String::new();
    if alarms.is_empty() {
        return out;
    }
    {
        out.push_str(&format!(
            "<h2>{}</h2><ul class=\"alarms\" id=\"alarm-list\">",
            t("alarms")
        ));
        for a in alarms.iter().take(20) {
            let what = if a.kind == "over_profile" {
                "alarm_over_profile"
            } else {
                "alarm_profile_rejected"
            };
            out.push_str(&format!(
                "<li>{} · {} #{}: {} ({} / {} kW)</li>",
                hm(a.ts_ms, tz, day),
                esc(&a.charger_id),
                a.connector_id,
                t(what),
                kw(lang, a.drawn_w.map(|x| x as f64)),
                kw(lang, a.limit_w.map(|x| x as f64))
            ));
        }
        out.push_str("</ul>");
    }
    out
}

pub(super) async fn render(
    s: &St,
    w: &Catalogue,
    lang: Lang,
    date: Option<&str>,
) -> Result<String, ApiError> {
    let api = &s.api;
    let now = crate::util::now_ms();
    let (tz, day, _, _) = super::super::api::day_bounds(api, date).await?;
    let chargers = api.chargers().await.map_err(ApiError::internal)?;
    let connectors = api.connectors().await.map_err(ApiError::internal)?;
    let open: Vec<_> = api
        .sessions(now)
        .await
        .map_err(ApiError::internal)?
        .into_iter()
        .filter(|x| x.stop_ms.is_none() && x.origin == "start")
        .collect();
    let plan = api.board.plan.read().clone();
    let made = *api.board.made_ms.read();
    let alarms = api
        .alarms(now - 86_400_000)
        .await
        .map_err(ApiError::internal)?;
    let status_of: HashMap<(&str, i64), &str> = connectors
        .iter()
        .map(|k| ((k.charger_id.as_str(), k.connector_id), k.status.as_str()))
        .collect();
    let t = |k: &str| esc(w.t(lang, k));
    let mut out = String::new();
    if api.cfg.site_cap_kw.is_none() {
        out.push_str(&format!("<p class=\"note\">{}</p>", t("no_cap")));
    }
    let cap = api.board.cap.read().clone();
    if !api.cfg.other_load_panels.is_empty() && cap.site_w > 0 {
        let stale = if cap.stale.is_empty() {
            String::new()
        } else {
            format!(" · {}: {}", esc(&cap.stale.join(", ")), t("cap_stale"))
        };
        out.push_str(&format!(
            "<p id=\"cap\">{} {} kW − {} {} kW = <b>{} kW</b> {}{stale}</p>",
            t("cap_site"),
            kw(lang, Some(cap.site_w as f64)),
            t("cap_other"),
            kw(lang, Some(cap.other_w as f64)),
            kw(lang, Some(cap.charging_w as f64)),
            t("cap_charging")
        ));
    }
    out.push_str(&alarms_html(&alarms, &tz, day, &t, lang));
    out.push_str(&format!(
        "<table id=\"connectors\"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
        t("col_charger"), t("col_status"), t("col_bus"), t("col_kw_now"), t("col_session"), t("col_plan"), t("col_ready")
    ));
    if chargers.is_empty() {
        out.push_str(&format!(
            "<tr><td colspan=\"7\" class=\"muted\">{}</td></tr>",
            t("no_chargers")
        ));
    }
    for c in &chargers {
        let online = api.online(&c.id);
        for k in 1..=c.connectors {
            let st = status_of
                .get(&(c.id.as_str(), k))
                .copied()
                .unwrap_or("Unknown");
            let sess = open
                .iter()
                .find(|x| x.charger_id == c.id && x.connector_id == k);
            let sched = plan.iter().find(|p| p.charger == c.id && p.connector == k);
            let (bus, now_w, energy) = match sess {
                Some(x) => {
                    let p = api.latest_power(&c.id, x.transaction_id).await;
                    let e = x.energy_wh.or_else(|| Some(x.last_wh? - x.meter_start_wh?));
                    (
                        x.vehicle_id
                            .clone()
                            .or_else(|| x.id_tag.clone())
                            .unwrap_or_default(),
                        p,
                        e,
                    )
                }
                None => (String::new(), None, None),
            };
            let (plan_cell, ready_cell, risk) = match sched {
                Some(p) => {
                    let ready = p.ready_ms.map_or_else(|| "–".into(), |r| hm(r, &tz, day));
                    (
                        format!(
                            "{} / {} kW<br><span class=\"muted\">{} {} · {} {}</span>",
                            kw(lang, Some(p.limit_at(now) as f64)),
                            kw(lang, now_w),
                            t("need"),
                            kwh(lang, Some(p.need_wh)),
                            t("planned"),
                            kwh(lang, Some(p.planned_wh))
                        ),
                        format!(
                            "{ready}<br><span class=\"muted\">{} {}</span>{}",
                            t("pull_out"),
                            hm(p.deadline_ms, &tz, day),
                            if p.at_risk() {
                                format!("<br><span class=\"risk\">{}</span>", t("at_risk"))
                            } else {
                                String::new()
                            }
                        ),
                        p.at_risk(),
                    )
                }
                None if sess.is_some() => (
                    format!("<span class=\"muted\">{}</span>", t("no_plan")),
                    "–".into(),
                    false,
                ),
                None => ("–".into(), "–".into(), false),
            };
            out.push_str(&format!(
                "<tr data-charger=\"{id}\" data-connector=\"{k}\" data-vehicle=\"{bus}\" class=\"{risk}\"><td><b>{id}</b> · {k}<br><span class=\"pill {on}\">{ontext}</span></td>\
<td><span class=\"pill {st}\">{sttext}</span></td>{bus_cell}<td class=\"num kw\">{kwnow}</td><td class=\"num energy\">{energy}</td><td class=\"plan\">{plan_cell}</td><td class=\"ready\">{ready_cell}</td></tr>",
                id = esc(&c.id), bus = esc(&bus), risk = if risk { "at-risk" } else { "" },
                on = if online { "online" } else { "offline" }, ontext = t(if online { "online" } else { "offline" }),
                bus_cell = super::bus_cell::render(w, lang, sess),
                st = esc(st), sttext = esc(&status(w, lang, st)), kwnow = kw(lang, now_w), energy = kwh(lang, energy),
            ));
        }
    }
    out.push_str("</tbody></table>");
    out.push_str(&super::bus_cell::datalist(w, lang, &api.bus_ids().await));
    out.push_str(&format!(
        "<p class=\"muted\">{} {} · {} {}</p>",
        t("plan_made"),
        if made > 0 {
            hm(made, &tz, day)
        } else {
            "–".into()
        },
        t("updated"),
        hm(now, &tz, day)
    ));
    // A given day shows that day; otherwise the 24 hours around now.
    let load = super::super::api::load_json(api, date).await?;
    let series = &load["series"];
    let data = json!({"kind": "load", "t": series["t"], "actual_w": series["actual_w"],
        "planned_w": series["planned_w"], "cap_w": series["cap_w"],
        "labels": {"actual": w.t(lang, "series_actual"), "planned": w.t(lang, "series_planned"), "cap": w.t(lang, "series_cap")}});
    out.push_str(&format!(
        "<script type=\"application/json\" id=\"chart-data\">{}</script>",
        script_json(&data)
    ));
    Ok(out)
}
