//! Who a request is, as extractors: a handler that takes [`Admin`] runs only for the
//! admin bearer token, one that takes [`Depot`] only for an enrolled depot's credentials
//! (and gets the depot id), and [`KnownDepot`] answers 404 for a depot path segment that
//! names no depot. Handlers list the extractor after their path and query extractors and
//! before their body, so a malformed path or query is refused before authentication, as
//! it was when handlers checked credentials themselves. Two exceptions, where `KnownDepot`
//! (which parses the `{depot}` segment itself) follows `Admin`: the quarantine and
//! telemetry routes now answer an unauthenticated request with a malformed depot segment
//! 401 where they answered 400. Every handler with a body authenticates before reading
//! it (axum runs the parts extractors first), so nobody unauthenticated makes the cloud
//! buffer one; a body declared longer than its route takes is refused even before that
//! (413, `body.rs`). Refusals are counted (`garasi_cloud_refusals_total{reason=
//! "unauthenticated"}`).

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{ApiError, AppState};
use crate::store::{CloudStore, ReadModel, StoreError};

/// The request carries `authorization: Bearer <admin token>`.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl<S: Send + Sync> FromRequestParts<AppState<S>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState<S>,
    ) -> Result<Self, Self::Rejection> {
        // Constant time (`AdminToken::matches`).
        let ok = bearer(&parts.headers).is_some_and(|t| state.admin_token.matches(t));
        if ok {
            authenticated(parts);
            Ok(Admin)
        } else {
            state.metrics.refused("unauthenticated");
            Err(ApiError::unauthorized(
                "admin routes need authorization: Bearer <admin token>",
            ))
        }
    }
}

/// Tells the connection layer that this request's connection carries an authenticated
/// client: its responses keep it busy until they are written out.
fn authenticated(parts: &Parts) {
    if let Some(a) = parts.extensions.get::<crate::net::ConnActivity>() {
        a.authenticated();
    }
}

/// The enrolled depot a sync request authenticated as (`x-garasi-depot` +
/// `authorization: Bearer <depot secret>`); routes act only on this depot's data.
#[derive(Debug, Clone)]
pub struct Depot(pub String);

impl<S: CloudStore> FromRequestParts<AppState<S>> for Depot {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState<S>,
    ) -> Result<Self, Self::Rejection> {
        let unauthorized = || {
            state.metrics.refused("unauthenticated");
            ApiError::unauthorized(
                "authenticate with x-garasi-depot and authorization: Bearer <depot secret>",
            )
        };
        let depot = parts
            .headers
            .get("x-garasi-depot")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(unauthorized)?;
        let secret = bearer(&parts.headers).ok_or_else(unauthorized)?;
        if state.store.authenticate(depot, secret).await? {
            authenticated(parts);
            Ok(Depot(depot.to_string()))
        } else {
            Err(unauthorized())
        }
    }
}

/// The `{depot}` path segment, checked to name an existing depot (404 otherwise).
#[derive(Debug, Clone)]
pub struct KnownDepot(pub String);

#[derive(Deserialize)]
struct DepotSegment {
    depot: String,
}

impl KnownDepot {
    /// The same check for handlers that validate their body first (a bad body is a 400
    /// even for an unknown depot), so it cannot run as an extractor there.
    pub async fn check(store: &impl ReadModel, depot: &str) -> Result<KnownDepot, ApiError> {
        if store.depot_exists(depot).await? {
            Ok(KnownDepot(depot.to_string()))
        } else {
            Err(StoreError::NoSuchDepot(depot.into()).into())
        }
    }
}

impl<S: ReadModel> FromRequestParts<AppState<S>> for KnownDepot {
    // A malformed path keeps axum's own answer, as `Path` gives it everywhere else.
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState<S>,
    ) -> Result<Self, Self::Rejection> {
        let Path(DepotSegment { depot }) = Path::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        KnownDepot::check(&*state.store, &depot)
            .await
            .map_err(IntoResponse::into_response)
    }
}

pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}
