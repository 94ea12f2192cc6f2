//! Every admin route documented in `schemas/cloud-openapi.json`
//! refuses a request without the admin token, with a depot's secret, with a prefix of
//! the admin token, and with `Bearer` spelled differently, and answers 401 (never 404
//! for an unknown depot: that would let an anonymous caller probe depot ids). Push from
//! depot A with a batch naming depot B is refused and stores nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::ADMIN;

fn admin_routes() -> Vec<(String, String)> {
    let doc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../schemas/cloud-openapi.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if op["security"].to_string().contains("adminBearer") {
                out.push((method.clone(), path.clone()));
            }
        }
    }
    assert!(out.len() >= 15, "{out:?}");
    out
}

#[tokio::test]
async fn every_admin_route_is_401_without_the_admin_token() {
    let c = common::start().await;
    let (depot, secret) = c.depot("review").await;
    for unknown in [false, true] {
        for (method, path) in admin_routes() {
            let d = if unknown {
                "depot-nope"
            } else {
                depot.as_str()
            };
            let url = format!(
                "{}{}",
                c.base,
                path.replace("{depot}", d)
                    .replace("{record_type}", "vehicle")
                    .replace("{record_id}", "bus-1")
                    .replace("{id}", "1")
                    .replace("{date}", "2025-01-01")
            );
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let auths: Vec<Option<(String, String)>> = vec![
                None,
                Some(("authorization".into(), format!("Bearer {secret}"))),
                Some((
                    "authorization".into(),
                    format!("Bearer {}", &ADMIN[..ADMIN.len() - 1]),
                )),
                Some(("authorization".into(), format!("Bearer {ADMIN}x"))),
                Some(("authorization".into(), format!("bearer {ADMIN}"))),
                Some(("authorization".into(), format!("Bearer  {ADMIN}"))),
                Some(("authorization".into(), "Bearer ".into())),
            ];
            for auth in auths {
                let mut r = c
                    .http
                    .request(m.clone(), &url)
                    .header("x-garasi-depot", &depot)
                    .header("content-type", "application/json")
                    .body("{}");
                if let Some((k, v)) = &auth {
                    r = r.header(k, v);
                }
                let status = r.send().await.unwrap().status();
                assert_eq!(
                    status, 401,
                    "{method} {url} with {auth:?} answered {status} (expected 401)"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_depot_cannot_push_for_another_depot() {
    let c = common::start().await;
    let (a, sa) = c.depot("a").await;
    let (b, _) = c.depot("b").await;
    let body = common::batch_of(&b, 1, common::change(1), common::sample(1));
    let r = c.push(&a, &sa, body).await;
    assert!(r.status().is_client_error(), "{}", r.status());
    assert_eq!(
        c.store
            .stream_len(&b, garasi_sync_protocol::streams::TELEMETRY_V1)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        c.store
            .stream_len(&a, garasi_sync_protocol::streams::TELEMETRY_V1)
            .await
            .unwrap(),
        0
    );
}
