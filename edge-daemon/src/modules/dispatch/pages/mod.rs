//! The dispatcher board (`/dispatch`) and the driver tablet page (`/tablet`). Both are
//! rendered on the server, so they show the day without JavaScript; `dispatch.js` keeps
//! them live (it re-fetches the server-rendered fragment every few seconds) and sends
//! the actions (sign in, assign, auto-assign, out of service, swap, PIN sign-on). Sized
//! for a 10-inch tablet: one table, large touch targets, an edit panel instead of a
//! select per row.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

mod runs;

use super::service::{driver_card, Dispatch};
use crate::http::ApiError;
use crate::util::esc;

const BOARD: &str = include_str!("board.html");
const TABLET: &str = include_str!("tablet.html");
const SCRIPT: &str = include_str!("dispatch.js");

#[derive(serde::Deserialize)]
struct DateQuery {
    date: Option<String>,
}

/// "HH:MM" in the depot's time zone, with "+1" for the next day.
fn hm(d: &Dispatch, ms: i64, date: &str) -> String {
    let Ok(t) = jiff::Timestamp::from_millisecond(ms) else {
        return "?".into();
    };
    let z = t.to_zoned(d.tz.clone());
    let next = z.date().to_string() != date;
    format!(
        "{:02}:{:02}{}",
        z.hour(),
        z.minute(),
        if next { "+1" } else { "" }
    )
}

fn s<'a>(v: &'a serde_json::Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or("")
}

/// The board's table rows for a day view.
pub(super) fn rows(d: &Dispatch, view: &serde_json::Value, staff: bool) -> String {
    let date = s(view, "date");
    let mut out = String::new();
    let empty = Vec::new();
    let blocks = view["blocks"].as_array().unwrap_or(&empty);
    if blocks.is_empty() {
        out.push_str("<tr><td colspan=\"9\" class=\"empty\">No blocks for this day yet: the cloud sends them as master data (or import them locally).</td></tr>");
    }
    for b in blocks {
        let a = &b["assignment"];
        let vehicle = a["vehicle"].as_str();
        let conflicts: Vec<String> = b["conflicts"]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .map(|c| {
                format!(
                    "<span class=\"flag {}\" title=\"{}\">{}</span>",
                    esc(s(c, "code")),
                    esc(s(c, "message")),
                    esc(s(c, "message"))
                )
            })
            .collect();
        let disrupted = b["conflicts"]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .any(|c| matches!(s(c, "code"), "disrupted" | "vehicle_out_of_service"));
        let soc = match (b["soc_pct"].as_f64(), b["forecast_soc_pct"].as_f64()) {
            (Some(now), Some(f)) => format!("{now:.0}% → {f:.0}%"),
            _ => "–".into(),
        };
        let driver = match (b["driver_name"].as_str(), a["driver"].as_str()) {
            (Some(n), _) => format!(
                "{}{}",
                esc(n),
                if b["driver_signed_on"].as_bool() == Some(true) {
                    " <span class=\"ok\">✔ signed on</span>"
                } else {
                    ""
                }
            ),
            (None, Some(id)) => esc(id),
            _ => "<span class=\"muted\">none</span>".into(),
        };
        let pulled = match (
            a["pull_out_actual_ms"].as_i64(),
            a["pull_in_actual_ms"].as_i64(),
        ) {
            (Some(o), Some(i)) => format!("out {} · in {}", hm(d, o, date), hm(d, i, date)),
            (Some(o), None) => format!("out {}", hm(d, o, date)),
            _ => String::new(),
        };
        let mut actions = format!(
            "<button class=\"edit\" data-block=\"{id}\">Assign</button>",
            id = esc(s(b, "id"))
        );
        if disrupted {
            actions.push_str(&format!(
                "<button class=\"replace\" data-block=\"{}\">Replacements</button>",
                esc(s(b, "id"))
            ));
        }
        if let Some(v) = vehicle {
            actions.push_str(&format!(
                "<button class=\"oos\" data-vehicle=\"{}\">Out of service</button>",
                esc(v)
            ));
        }
        out.push_str(&format!(
            "<tr id=\"row-{id}\" class=\"state-{state}\" data-block=\"{id}\" data-vehicle=\"{veh}\" data-driver=\"{drv}\" data-bay=\"{bay}\">\
<td><b>{block}</b><br><span class=\"muted\">{routes} · {trips} trips</span></td>\
<td>{po}</td><td>{pi}</td>\
<td>{km:.1} km<br><span class=\"muted\">{kwh:.0} kWh</span></td>\
<td class=\"vehicle\">{vlabel}{vtype}<br><span class=\"muted\">{soc}</span></td>\
<td class=\"driver\">{driver}</td>\
<td>{bayshow}</td>\
<td class=\"state\">{statetext}<br><span class=\"muted\">{pulled}</span>{flags}</td>\
<td class=\"actions\">{actions}</td></tr>\n",
            id = esc(s(b, "id")),
            state = esc(s(b, "state")),
            veh = esc(vehicle.unwrap_or("")),
            // The wall board (no session) shows names, never the ids people sign in with.
            drv = if staff { esc(a["driver"].as_str().unwrap_or("")) } else { String::new() },
            bay = esc(a["bay"].as_str().unwrap_or("")),
            block = esc(s(b, "block")),
            routes = esc(s(b, "routes")),
            trips = b["trips"].as_u64().unwrap_or(0),
            po = hm(d, b["pull_out_ms"].as_i64().unwrap_or(0), date),
            pi = hm(d, b["pull_in_ms"].as_i64().unwrap_or(0), date),
            km = b["distance_km"].as_f64().unwrap_or(0.0),
            kwh = b["energy_kwh"].as_f64().unwrap_or(0.0),
            vlabel = b["vehicle_label"]
                .as_str()
                .map(esc)
                .unwrap_or_else(|| "<span class=\"muted\">none</span>".into()),
            vtype = b["vehicle_type"]
                .as_str()
                .map(|t| format!(" <span class=\"tag\">needs {}</span>", esc(t)))
                .unwrap_or_default(),
            soc = soc,
            driver = driver,
            bayshow = esc(a["bay"].as_str().unwrap_or("–")),
            statetext = esc(&s(b, "state").replace('_', " ")),
            pulled = pulled,
            flags = if conflicts.is_empty() {
                String::new()
            } else {
                format!("<div class=\"flags\">{}</div>", conflicts.join(""))
            },
            actions = actions,
        ));
    }
    out
}

/// Alerts over the table: late pull-outs and disruptions.
fn alerts(view: &serde_json::Value) -> String {
    let empty = Vec::new();
    let mut out = String::new();
    for b in view["blocks"].as_array().unwrap_or(&empty) {
        for c in b["conflicts"].as_array().unwrap_or(&empty) {
            if matches!(s(c, "code"), "late_pull_out" | "disrupted") {
                out.push_str(&format!(
                    "<li class=\"alert {}\">Block {}: {}</li>",
                    esc(s(c, "code")),
                    esc(s(b, "block")),
                    esc(s(c, "message"))
                ));
            }
        }
    }
    out
}

fn fragment(d: &Dispatch, view: &serde_json::Value, staff: bool) -> String {
    format!(
        "<ul id=\"alerts\">{}</ul><table id=\"blocks\"><thead><tr><th>Block</th><th>Pull-out</th><th>Pull-in</th><th>Distance · energy</th><th>Vehicle · SoC now → at pull-out</th><th>Driver</th><th>Bay</th><th>State</th><th></th></tr></thead><tbody>{}</tbody></table>",
        alerts(view),
        rows(d, view, staff)
    ) + &runs::runs_table(d, view, staff)
}

/// Who sees any day and the drivers' ids; without a session the board shows today only.
const STAFF: &[&str] = &["dispatcher", "depot_manager", "mechanic"];

/// The date asked for, and whether the viewer is signed-in staff; other days than today
/// need a session.
async fn viewable(
    d: &Dispatch,
    q: &DateQuery,
    headers: &HeaderMap,
) -> Result<(String, bool), ApiError> {
    let date = date_or_today(d, q)?;
    let staff = d.people.require(headers, STAFF).await.is_ok();
    if !staff && date != d.today() {
        return Err(ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "sign in to see another day than today",
        ));
    }
    Ok((date, staff))
}

fn date_or_today(d: &Dispatch, q: &DateQuery) -> Result<String, ApiError> {
    match &q.date {
        Some(date) => {
            super::api::check_date(date)?;
            Ok(date.clone())
        }
        None => Ok(d.today()),
    }
}

async fn board(
    State(d): State<Arc<Dispatch>>,
    headers: HeaderMap,
    Query(q): Query<DateQuery>,
) -> Result<Html<String>, ApiError> {
    let (date, staff) = viewable(&d, &q, &headers).await?;
    let view = d.day_view(&date).await?;
    let count = view["blocks"].as_array().map_or(0, Vec::len);
    Ok(Html(
        BOARD
            .replace("{{DATE}}", &esc(&date))
            .replace("{{COUNT}}", &count.to_string())
            .replace("{{DAY}}", &fragment(&d, &view, staff)),
    ))
}

async fn board_fragment(
    State(d): State<Arc<Dispatch>>,
    headers: HeaderMap,
    Query(q): Query<DateQuery>,
) -> Result<Html<String>, ApiError> {
    let (date, staff) = viewable(&d, &q, &headers).await?;
    let view = d.day_view(&date).await?;
    Ok(Html(fragment(&d, &view, staff)))
}

/// The driver's card as HTML (or the PIN form when nobody is signed in here).
async fn card_html(d: &Dispatch, headers: &HeaderMap) -> Result<String, ApiError> {
    let people = d.people.clone();
    let Some(session) = people
        .session_of(headers)
        .await
        .filter(|s| s.person.has_role("driver"))
    else {
        return Ok(String::from(
            "<form id=\"pin-form\" autocomplete=\"off\">\
<label>Driver id <input id=\"pin-person\" name=\"person\" inputmode=\"text\" required></label>\
<label>PIN <input id=\"pin-pin\" name=\"pin\" type=\"password\" inputmode=\"numeric\" required></label>\
<button type=\"submit\">Sign on</button><p id=\"pin-error\" class=\"error\" role=\"alert\"></p></form>",
        ));
    };
    let card = driver_card(d, &session.person).await?;
    let today = s(&card, "today").to_string();
    let mut out = format!(
        "<h2 id=\"driver\">{}</h2><p class=\"{}\" id=\"signon-state\">{}</p>",
        esc(&session.person.name),
        if card["signed_on"].as_bool() == Some(true) {
            "ok"
        } else {
            "warn"
        },
        if card["signed_on"].as_bool() == Some(true) {
            "Signed on for today"
        } else {
            "Not signed on today: scan your badge or sign on with your PIN"
        }
    );
    let empty = Vec::new();
    let items = card["assignments"].as_array().unwrap_or(&empty);
    if items.is_empty() {
        out.push_str("<p class=\"muted\" id=\"no-assignment\">No assignment yet for today or tomorrow. Ask the dispatcher.</p>");
    }
    for a in items {
        let date = s(a, "service_date");
        let trips: String = a["trips"]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .map(|t| {
                format!(
                    "<tr><td>{}–{}</td><td>{}</td><td>{} → {}</td></tr>",
                    esc(s(t, "start")),
                    esc(s(t, "end")),
                    esc(s(t, "route")),
                    esc(s(t, "from")),
                    esc(s(t, "to"))
                )
            })
            .collect();
        out.push_str(&format!(
            "<section class=\"assignment\"><h3>{when} · block {block}</h3>\
<dl><dt>Bus</dt><dd class=\"bus\">{bus}</dd><dt>Bay</dt><dd class=\"bay\">{bay}</dd>\
<dt>Pull-out</dt><dd class=\"pullout\">{po}</dd></dl>\
<table class=\"trips\"><thead><tr><th>Time</th><th>Route</th><th>From → to</th></tr></thead><tbody>{trips}</tbody></table></section>",
            when = if date == today { "Today".to_string() } else { esc(date) },
            block = esc(s(a, "block")),
            bus = a["vehicle_label"]
                .as_str()
                .map(esc)
                .unwrap_or_else(|| "not assigned yet".into()),
            bay = esc(a["bay"].as_str().unwrap_or("ask the dispatcher")),
            po = hm(d, a["pull_out_ms"].as_i64().unwrap_or(0), date),
            trips = trips,
        ));
    }
    Ok(out)
}

async fn tablet(
    State(d): State<Arc<Dispatch>>,
    headers: HeaderMap,
) -> Result<Html<String>, ApiError> {
    let card = card_html(&d, &headers).await?;
    Ok(Html(TABLET.replace("{{CARD}}", &card)))
}

async fn tablet_fragment(
    State(d): State<Arc<Dispatch>>,
    headers: HeaderMap,
) -> Result<Html<String>, ApiError> {
    Ok(Html(card_html(&d, &headers).await?))
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

pub(super) fn routes() -> Router<Arc<Dispatch>> {
    Router::new()
        .route("/dispatch", get(board))
        .route("/dispatch/day", get(board_fragment))
        .route("/dispatch/app.js", get(script))
        .route("/tablet", get(tablet))
        .route("/tablet/card", get(tablet_fragment))
}
