//! The depot board at `/`: every bus with state of charge, status, speed and last seen,
//! plus depot totals. Rendered on the server (usable without JavaScript), then kept live
//! by `board.js` from the SSE stream and a periodic refresh of statuses.

use axum::extract::State;
use axum::response::Html;

use super::api::AppState;
use crate::modules::fleet::service::{with_live, VehicleView};
use crate::util::now_ms;

const PAGE: &str = include_str!("board.html");
const SCRIPT: &str = include_str!("board.js");

use crate::util::esc;

fn num(v: &serde_json::Value, key: &str) -> Option<f64> {
    v.get("sample")?.get(key)?.as_f64()
}

fn row(v: &VehicleView) -> String {
    let live = v.live.clone().unwrap_or_default();
    let status = live
        .get("status")
        .and_then(|s| s.as_str())
        .unwrap_or("unknown");
    let soc = num(&live, "soc_pct");
    let speed = num(&live, "speed_kmh");
    let charging = live
        .get("sample")
        .and_then(|s| s.get("charging"))
        .and_then(|c| c.as_bool())
        .unwrap_or(false);
    let faults = live
        .get("active_faults")
        .and_then(|f| f.as_array())
        .map(|a| a.len())
        .unwrap_or(0);
    let seen = live.get("last_seen_ms").and_then(|x| x.as_i64());
    format!(
        concat!(
            "<tr data-vehicle=\"{id}\" data-last-seen=\"{seen}\">",
            "<td class=\"id\"><b>{label}</b><br><small>{id} {plate}</small></td>",
            "<td class=\"status\"><span class=\"pill {status}\">{status}</span></td>",
            "<td class=\"soc\"><div class=\"bar\"><div style=\"width:{socw}%\"></div></div><span>{soc}</span>{chg}</td>",
            "<td class=\"speed\">{speed}</td>",
            "<td class=\"faults\">{faults}</td>",
            "<td class=\"seen\">{seen_txt}</td></tr>"
        ),
        id = esc(&v.vehicle.id),
        label = esc(&v.vehicle.label),
        plate = esc(v.vehicle.plate.as_deref().unwrap_or("")),
        status = status,
        socw = soc.unwrap_or(0.0).clamp(0.0, 100.0),
        soc = soc.map(|s| format!("{s:.0}%")).unwrap_or_else(|| "–".into()),
        chg = if charging { " <span class=\"chg\" title=\"charging\">⚡</span>" } else { "" },
        speed = speed.map(|s| format!("{s:.0} km/h")).unwrap_or_else(|| "–".into()),
        faults = if faults > 0 { format!("<span class=\"fault\">{faults}</span>") } else { String::new() },
        seen = seen.map(|s| s.to_string()).unwrap_or_default(),
        seen_txt = seen.map(crate::util::rfc3339).unwrap_or_else(|| "never".into()),
    )
}

pub(crate) async fn page(State(s): State<AppState>) -> Html<String> {
    let fleet = s.fleet.clone();
    let vehicles = tokio::task::spawn_blocking(move || fleet.list())
        .await
        .unwrap_or_default();
    let views = with_live(&s.services, vehicles);
    let rows: String = views.iter().map(row).collect();
    let body = PAGE
        .replace("{{ROWS}}", &rows)
        .replace("{{COUNT}}", &views.len().to_string())
        .replace("{{NOW}}", &now_ms().to_string())
        .replace("{{STALE_MS}}", &s.live.stale_after_ms.to_string())
        .replace("{{OFFLINE_MS}}", &s.live.offline_after_ms.to_string())
        .replace("{{SCRIPT}}", SCRIPT);
    Html(body)
}
