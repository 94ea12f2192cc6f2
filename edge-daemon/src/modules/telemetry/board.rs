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

fn row(v: &VehicleView) -> String {
    let live = v.live.clone().unwrap_or_default();
    let status = if live.status.is_empty() {
        "unknown"
    } else {
        live.status
    };
    let sample = live.sample.as_ref();
    let soc = sample.and_then(|s| s.soc_pct);
    let speed = sample.and_then(|s| s.speed_kmh);
    let charging = sample.and_then(|s| s.charging).unwrap_or(false);
    let faults = live.active_faults.len();
    let seen = live.last_seen_ms;
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
