//! template's HTTP routes. Writes need a signed-in person with a role; reads too, since
//! items name who wrote them.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;

use super::service::{Item, TemplateApi, TemplateError};
use crate::http::ApiError;
use crate::modules::auth::service::People;

pub(super) const WRITERS: &[&str] = &["dispatcher", "depot_manager"];

#[derive(Clone)]
pub(super) struct AppState {
    pub(super) api: Arc<TemplateApi>,
    pub(super) people: Arc<People>,
}

impl From<TemplateError> for ApiError {
    fn from(e: TemplateError) -> Self {
        match e {
            TemplateError::Store(e) => ApiError::internal(e),
            e => ApiError::bad_request(e.to_string()),
        }
    }
}

async fn list(State(s): State<AppState>, headers: HeaderMap) -> Result<Json<Vec<Item>>, ApiError> {
    s.people.require(&headers, WRITERS).await?;
    Ok(Json(s.api.list().await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemBody {
    label: String,
}

async fn put_item(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<ItemBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Item>, ApiError> {
    let who = s.people.require(&headers, WRITERS).await?;
    let Json(b) = body.map_err(ApiError::from_json_rejection)?;
    Ok(Json(s.api.put(&id, &b.label, &who.id).await?))
}

pub(super) fn routes(api: Arc<TemplateApi>, people: Arc<People>) -> Router {
    Router::new()
        .route("/api/v1/template/items", get(list))
        .route("/api/v1/template/items/{id}", put(put_item))
        .merge(super::pages::routes())
        .with_state(AppState { api, people })
}
