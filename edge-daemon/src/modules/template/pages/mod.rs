//! template's page (`/template`): server-rendered, in Bahasa Indonesia or English
//! (`?lang=en`), readable without JavaScript. Items name people, so the page asks for
//! a sign-in instead of showing them to anyone on the LAN.

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::api::AppState;
use crate::util::esc;

const PAGE: &str = include_str!("page.html");

/// The page's words, one entry per language (Indonesian first: the depot's language).
const WORDS: &[(&str, [&str; 4])] = &[
    (
        "id",
        ["Contoh", "Butir", "Diubah oleh", "Silakan masuk dulu."],
    ),
    (
        "en",
        ["Template", "Item", "Changed by", "Please sign in first."],
    ),
];

#[derive(serde::Deserialize)]
struct LangQuery {
    lang: Option<String>,
}

async fn page(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LangQuery>,
) -> Response {
    let (lang, w) = WORDS
        .iter()
        .find(|(l, _)| Some(*l) == q.lang.as_deref())
        .unwrap_or(&WORDS[0]);
    let body = match s.people.require(&headers, super::api::WRITERS).await {
        Err(_) => format!("<p>{}</p>", w[3]),
        Ok(_) => match s.api.list().await {
            Ok(items) => {
                let rows: String = items
                    .iter()
                    .map(|i| {
                        format!(
                            "<tr><td>{}</td><td>{}</td></tr>",
                            esc(&i.label),
                            esc(&i.set_by)
                        )
                    })
                    .collect();
                format!("<table><thead><tr><th>{}</th><th>{}</th></tr></thead><tbody>{rows}</tbody></table>", w[1], w[2])
            }
            Err(e) => return crate::http::ApiError::from(e).into_response(),
        },
    };
    Html(
        PAGE.replace("{lang}", lang)
            .replace("{title}", w[0])
            .replace("{body}", &body),
    )
    .into_response()
}

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/template", get(page))
}
