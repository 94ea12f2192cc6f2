//! charging's pages: `/charging` (chargers and connectors with status, bus, kW now,
//! session energy, plan against actual, ready-by time; the site load against the cap
//! over the day) and `/energy` (panels online or offline, today's kWh and cost by band,
//! the month's days as bars). Rendered on the server in Bahasa Indonesia or English
//! from `messages.toml`, times in the depot's zone; `charging.js` refreshes the view
//! (`/charging/view`, `/energy/view`) and draws the charts with the vendored uPlot.
//! Signed-in dispatchers and depot managers only, as the API they read.

use std::sync::{Arc, LazyLock};

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

mod charging_view;
mod energy_view;

use super::api::PEOPLE;
use super::service::ChargingApi;
use crate::http::i18n::{Catalogue, Lang};
use crate::http::ApiError;
use crate::modules::auth::service::People;

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
    let body = match s.people.require(headers, PEOPLE).await {
        Err(_) => w.fill(lang, SIGN_IN),
        Ok(_) => match view(s, lang, q).await {
            Ok(v) => {
                let chart = if page == "charging" {
                    "site_load"
                } else {
                    "month_title"
                };
                format!(
                    "<div id=\"view\">{v}</div><section class=\"chart\"><h2>{}</h2><div id=\"chart\"></div></section>\
                     <p><button id=\"signout\">{}</button></p>",
                    w.t(lang, chart),
                    w.t(lang, "sign_out")
                )
            }
            Err(e) => return e.into_response(),
        },
    };
    let on = |l: Lang| if l == lang { "on" } else { "" };
    let html = w
        .fill(lang, PAGE)
        .replace("{{LANG}}", lang.code())
        .replace("{{TITLE}}", &crate::util::esc(title))
        .replace("{{PAGE}}", page)
        .replace(
            "{{ZONE}}",
            &crate::util::esc(&s.api.tariff().await.timezone),
        )
        .replace("{{ON_ID}}", on(Lang::Id))
        .replace("{{ON_EN}}", on(Lang::En))
        .replace("{{BODY}}", &body);
    let mut resp = Html(html).into_response();
    // A language picked on the page sticks for the next pages (a year, this node only).
    if q.lang.is_some() {
        let c = format!(
            "garasi_lang={}; Path=/; Max-Age=31536000; SameSite=Lax",
            lang.code()
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

pub(super) fn routes(api: Arc<ChargingApi>, people: Arc<People>) -> Router {
    Router::new()
        .route("/charging", get(charging_page))
        .route("/charging/view", get(charging_fragment))
        .route("/charging/app.js", get(script))
        .route("/energy", get(energy_page))
        .route("/energy/view", get(energy_fragment))
        .with_state(St { api, people })
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
