//! charging's pages: `/charging` (chargers and connectors with status, bus, kW now,
//! session energy, plan against actual, ready-by time; the site load against the cap
//! over the day) and `/energy` (panels online or offline, today's kWh and cost by band,
//! the month's days as bars). Rendered on the server in Bahasa Indonesia or English
//! from `messages.toml`, times in the depot's zone; `charging.js` refreshes the view
//! (`/charging/view`, `/energy/view`) and draws the charts with the vendored uPlot.
//! Signed-in dispatchers and depot managers only, as the API they read.

use std::sync::{Arc, LazyLock};

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

mod bus_cell;
mod charging_view;
mod energy_tables;
mod energy_view;

use super::api::PEOPLE;
use super::service::ChargingApi;
use crate::http::i18n::{Catalogue, Lang};
use crate::http::ApiError;
use crate::modules::auth::service::People;
use crate::util::esc;

const PAGE: &str = include_str!("page.html");
const SIGN_IN: &str = include_str!("signin.html");
const SCRIPT: &str = include_str!("charging.js");
const MESSAGES: &str = include_str!("messages.toml");

/// The pages' words. Checked by the unit tests (and at start by `check`), so this
/// cannot fail in a build that passed them; an empty catalogue shows keys, not a crash.
static WORDS: LazyLock<Catalogue> = LazyLock::new(|| {
    Catalogue::parse(MESSAGES).unwrap_or_else(|e| {
        tracing::error!(error = %e, "charging page messages are invalid");
        Catalogue::empty()
    })
});

/// The catalogue's problems (a message without both languages, a key the pages use
/// that it lacks), for the module's start.
pub(super) fn check() -> Result<(), String> {
    let c = Catalogue::parse(MESSAGES).map_err(|e| e.to_string())?;
    let mut missing: Vec<String> = [PAGE, SIGN_IN]
        .iter()
        .flat_map(|t| c.unknown_in(t))
        .collect();
    missing.extend(
        charging_view::KEYS
            .iter()
            .chain(energy_view::KEYS)
            .chain(bus_cell::KEYS)
            .filter(|k| !c.has(k))
            .map(|k| k.to_string()),
    );
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "page messages missing from messages.toml: {}",
            missing.join(", ")
        ))
    }
}

#[derive(Clone)]
pub(super) struct St {
    pub api: Arc<ChargingApi>,
    pub people: Arc<People>,
    pub services: crate::modules::framework::Services,
    /// The month's bars, computed at most every 5 minutes per month (every tablet on
    /// the Energy page refreshes every 10 s; the bars barely move in that time).
    pub months:
        Arc<parking_lot::Mutex<std::collections::HashMap<String, (i64, serde_json::Value)>>>,
}

#[derive(serde::Deserialize)]
pub(super) struct PageQuery {
    lang: Option<String>,
    date: Option<String>,
    month: Option<String>,
}

/// A JSON value safe inside `<script type="application/json">`.
pub(super) fn script_json(v: &serde_json::Value) -> String {
    v.to_string().replace('<', "\\u003c")
}

/// A figure with one decimal as the page's language writes it (Indonesian: a comma).
pub(super) fn num(lang: Lang, x: f64) -> String {
    let text = format!("{x:.1}");
    match lang {
        Lang::Id => text.replace('.', ","),
        Lang::En => text,
    }
}

/// A time in the depot's zone as HH:MM, with the date when it is not `day`.
pub(super) fn hm(ms: i64, tz: &jiff::tz::TimeZone, day: jiff::civil::Date) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => {
            let z = t.to_zoned(tz.clone());
            if z.date() == day {
                format!("{:02}:{:02}", z.hour(), z.minute())
            } else {
                format!("{} {:02}:{:02}", z.date(), z.hour(), z.minute())
            }
        }
        Err(_) => "?".into(),
    }
}

type View =
    fn(&St, Lang, &PageQuery) -> futures::future::BoxFuture<'static, Result<String, ApiError>>;

/// A query value for a link (letters, digits and '-' as they are, the rest escaped).
fn enc(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The language switch's link: the same page, day and month in another language.
fn lang_link(l: Lang, q: &PageQuery) -> String {
    let mut href = format!("?lang={}", l.code());
    for (k, v) in [("date", &q.date), ("month", &q.month)] {
        if let Some(v) = v {
            href.push_str(&format!("&amp;{k}={}", enc(v)));
        }
    }
    href
}

/// The page's body: the view and its chart, or the sign-in form (with why, when the
/// person signed in may not see it), or what was wrong with the request.
async fn body(
    s: &St,
    headers: &HeaderMap,
    q: &PageQuery,
    page: &str,
    lang: Lang,
    view: View,
) -> (StatusCode, String) {
    let w = &*WORDS;
    match s.people.require(headers, PEOPLE).await {
        Err(e) if e.status == StatusCode::FORBIDDEN => {
            let why = format!(
                "<p class=\"error\" id=\"not-allowed\">{}</p>",
                esc(w.t(lang, "not_allowed"))
            );
            (StatusCode::FORBIDDEN, why + &w.fill(lang, SIGN_IN))
        }
        Err(_) => (StatusCode::OK, w.fill(lang, SIGN_IN)),
        Ok(_) => match view(s, lang, q).await {
            Ok(v) => {
                let chart = if page == "charging" {
                    "site_load"
                } else {
                    "month_title"
                };
                let html = format!(
                    "<div id=\"view\">{v}</div><section class=\"chart\"><h2>{}</h2><div id=\"chart\"></div></section>\
                     <p><button id=\"signout\">{}</button></p>",
                    esc(w.t(lang, chart)),
                    esc(w.t(lang, "sign_out"))
                );
                (StatusCode::OK, html)
            }
            Err(e) => {
                // Said on the page, in its language, with the detail of what was wrong.
                let html = format!(
                    "<p class=\"error\" id=\"page-error\">{}: {}</p>",
                    esc(w.t(lang, "bad_input")),
                    esc(&e.message)
                );
                (e.status, html)
            }
        },
    }
}

async fn whole(s: &St, headers: &HeaderMap, q: &PageQuery, page: &str, view: View) -> Response {
    let lang = Lang::of(q.lang.as_deref(), headers);
    let w = &*WORDS;
    let title = w.t(
        lang,
        if page == "charging" {
            "charging_title"
        } else {
            "energy_title"
        },
    );
    let (status, body) = body(s, headers, q, page, lang, view).await;
    let on = |l: Lang| if l == lang { "on" } else { "" };
    let html = w
        .fill(lang, PAGE)
        .replace("{{LANG}}", lang.code())
        .replace("{{TITLE}}", &esc(title))
        .replace("{{PAGE}}", page)
        .replace("{{ZONE}}", &esc(&s.api.tariff().await.timezone))
        .replace("{{ON_ID}}", on(Lang::Id))
        .replace("{{ON_EN}}", on(Lang::En))
        .replace("{{HREF_ID}}", &lang_link(Lang::Id, q))
        .replace("{{HREF_EN}}", &lang_link(Lang::En, q))
        .replace("{{BODY}}", &body);
    let mut resp = (status, Html(html)).into_response();
    // A language picked on the page sticks for the next pages (a year, this node only);
    // a value that is no language sets nothing.
    if let Some(l) = q.lang.as_deref().and_then(Lang::from_code) {
        let c = format!(
            "garasi_lang={}; Path=/; Max-Age=31536000; SameSite=Lax",
            l.code()
        );
        if let Ok(v) = HeaderValue::from_str(&c) {
            resp.headers_mut().insert(header::SET_COOKIE, v);
        }
    }
    resp
}

async fn fragment(
    s: &St,
    headers: &HeaderMap,
    q: &PageQuery,
    view: View,
) -> Result<Html<String>, ApiError> {
    s.people.require(headers, PEOPLE).await?;
    let lang = Lang::of(q.lang.as_deref(), headers);
    Ok(Html(view(s, lang, q).await?))
}

fn charging_view(
    s: &St,
    lang: Lang,
    q: &PageQuery,
) -> futures::future::BoxFuture<'static, Result<String, ApiError>> {
    let (s, date) = (s.clone(), q.date.clone());
    Box::pin(async move { charging_view::render(&s, &WORDS, lang, date.as_deref()).await })
}

fn energy_view(
    s: &St,
    lang: Lang,
    q: &PageQuery,
) -> futures::future::BoxFuture<'static, Result<String, ApiError>> {
    let (s, date, month) = (s.clone(), q.date.clone(), q.month.clone());
    Box::pin(async move {
        energy_view::render(&s, &WORDS, lang, date.as_deref(), month.as_deref()).await
    })
}

async fn charging_page(
    State(s): State<St>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    whole(&s, &headers, &q, "charging", charging_view).await
}

async fn charging_fragment(
    State(s): State<St>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Result<Html<String>, ApiError> {
    fragment(&s, &headers, &q, charging_view).await
}

async fn energy_page(
    State(s): State<St>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    whole(&s, &headers, &q, "energy", energy_view).await
}

async fn energy_fragment(
    State(s): State<St>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Result<Html<String>, ApiError> {
    fragment(&s, &headers, &q, energy_view).await
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

pub(super) fn routes(
    api: Arc<ChargingApi>,
    people: Arc<People>,
    services: crate::modules::framework::Services,
) -> Router {
    Router::new()
        .route("/charging", get(charging_page))
        .route("/charging/view", get(charging_fragment))
        .route("/charging/app.js", get(script))
        .route("/energy", get(energy_page))
        .route("/energy/view", get(energy_fragment))
        .with_state(St {
            api,
            people,
            services,
            months: Arc::default(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_has_both_languages_and_every_key_used_exists() {
        assert_eq!(check(), Ok(()));
        // The check can fail: a template naming an unknown key.
        let c = Catalogue::parse(MESSAGES).unwrap();
        assert_eq!(
            c.unknown_in("{{t:no_such_key}}"),
            vec!["no_such_key".to_string()]
        );
    }

    #[test]
    fn json_in_a_script_tag_cannot_close_it() {
        let v = serde_json::json!({"x": "</script><script>alert(1)</script>"});
        assert!(!script_json(&v).contains("</"));
    }
}
