//! Cross-site defences in front of every route: the `Host` must be one of the node's
//! names (an IP address, `localhost`, or a name in `http_hosts`), so a DNS-rebinding
//! page cannot reach the API through a name it controls; a state-changing request from
//! a browser must come from the node's own origin; and every POST and PUT declares a
//! JSON body, which an HTML form on another site cannot send.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// Host names accepted besides IP addresses and `localhost` (lower case).
#[derive(Clone, Default)]
pub struct Hosts(pub Arc<[String]>);

/// The host part of a `Host` value or an origin's authority (no port, no brackets).
fn host_name(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        // "[v6]" or "[v6]:port", nothing else after the bracket.
        return match rest.split_once(']') {
            Some((h, tail))
                if tail.is_empty()
                    || tail
                        .strip_prefix(':')
                        .is_some_and(|p| p.chars().all(|c| c.is_ascii_digit())) =>
            {
                h
            }
            _ => "",
        };
    }
    authority.rsplit_once(':').map_or(authority, |(h, port)| {
        if port.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            authority
        }
    })
}

fn known_host(hosts: &Hosts, authority: &str) -> bool {
    let name = host_name(authority).to_ascii_lowercase();
    name.parse::<IpAddr>().is_ok() || name == "localhost" || hosts.0.contains(&name)
}

fn refuse(status: StatusCode, message: &str) -> Response {
    ApiError::new(status, message).into_response()
}

pub async fn check(State(hosts): State<Hosts>, req: Request, next: Next) -> Response {
    // Probes (load balancers' health checks often send no Host) stay open; they show
    // nothing personal and change nothing.
    if matches!(req.uri().path(), "/healthz" | "/readyz" | "/metrics")
        && req.method() == Method::GET
    {
        return next.run(req).await;
    }
    let h = req.headers();
    let authority = h
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    let Some(authority) = authority.filter(|a| known_host(&hosts, a)) else {
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "this node does not answer to that host name: use its address, or add the name to http_hosts in the configuration",
        );
    };
    let unsafe_method = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if unsafe_method {
        let cross_site = h
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("cross-site"));
        let foreign_origin = h.get(header::ORIGIN).is_some_and(|o| {
            let o = o.to_str().unwrap_or("");
            let own = o
                .split_once("://")
                .map(|(_, rest)| rest.trim_end_matches('/'));
            own.is_none_or(|a| !a.eq_ignore_ascii_case(&authority))
        });
        if cross_site || foreign_origin {
            return refuse(
                StatusCode::FORBIDDEN,
                "a request from another site was refused: use the node's own pages",
            );
        }
    }
    if matches!(*req.method(), Method::POST | Method::PUT) {
        let json = h
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the request as JSON (content-type: application/json), even when it has no fields",
            );
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        let hosts = Hosts(Arc::from(vec!["garasi.depot".to_string()]));
        for ok in [
            "127.0.0.1:8080",
            "192.168.1.20",
            "[::1]:8080",
            "localhost:8080",
            "Garasi.Depot:8443",
        ] {
            assert!(known_host(&hosts, ok), "{ok}");
        }
        for bad in [
            "attacker.example:8080",
            "garasi.depot.attacker.example",
            "",
            "[::1]evil.example",
        ] {
            assert!(!known_host(&hosts, bad), "{bad}");
        }
    }
}
