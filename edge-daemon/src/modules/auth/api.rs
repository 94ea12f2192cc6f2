//! auth's HTTP routes: sign in and out, who am I, the people list.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::people::Person;
use super::people::{People, SESSION_COOKIE};
use super::sessions::ABSOLUTE;
use crate::http::{ApiError, ClientIp};

pub(super) fn token_of(headers: &HeaderMap) -> Option<String> {
    if let Some(t) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(t.trim().to_string());
    }
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    cookies.split(';').find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == SESSION_COOKIE).then(|| v.to_string())
    })
}

/// `Set-Cookie` for a session: not readable by scripts, same-site only, a shift long.
pub fn session_cookie(token: &str) -> String {
    format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        ABSOLUTE.as_secs()
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LoginBody {
    person: String,
    password: String,
    /// A program that sends `authorization: Bearer` asks for the token in the body; a
    /// browser gets it only as an HttpOnly cookie, out of reach of scripts.
    #[serde(default)]
    token: bool,
}

pub(super) async fn login(
    State(p): State<Arc<People>>,
    ClientIp(ip): ClientIp,
    body: Result<Json<LoginBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) = body.map_err(ApiError::from_json_rejection)?;
    let (person, token) = p
        .sign_in_password(ip, b.person.trim(), &b.password)
        .await
        .map_err(|r| ApiError::new(r.status(), r.to_string()))?;
    let body = if b.token {
        serde_json::json!({ "person": person, "token": token })
    } else {
        serde_json::json!({ "person": person })
    };
    Ok(([(header::SET_COOKIE, session_cookie(&token))], Json(body)).into_response())
}

pub(super) async fn whoami(
    State(p): State<Arc<People>>,
    headers: HeaderMap,
) -> Result<Json<Person>, ApiError> {
    p.session_of(&headers)
        .await
        .map(|s| Json(s.person))
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "not signed in"))
}

pub(super) async fn logout(State(p): State<Arc<People>>, headers: HeaderMap) -> Response {
    if let Some(t) = token_of(&headers) {
        p.end_session(&t).await;
    }
    (
        [(
            header::SET_COOKIE,
            format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        )],
        StatusCode::NO_CONTENT,
    )
        .into_response()
}

pub(super) async fn list(
    State(p): State<Arc<People>>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    p.require(&headers, &["dispatcher", "depot_manager"])
        .await?;
    let people = p.list().await.map_err(ApiError::internal)?;
    Ok(Json(serde_json::json!({ "people": people })))
}

pub(super) fn routes(people: Arc<People>) -> Router {
    Router::new()
        .route("/api/v1/session", get(whoami).post(login).delete(logout))
        .route("/api/v1/people", get(list))
        .with_state(people)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_come_from_cookie_or_bearer() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=b; garasi_session=abc123; c=d".parse().unwrap(),
        );
        assert_eq!(token_of(&h).as_deref(), Some("abc123"));
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Bearer t0k".parse().unwrap());
        assert_eq!(token_of(&h).as_deref(), Some("t0k"));
        assert_eq!(token_of(&HeaderMap::new()), None);
    }
}
