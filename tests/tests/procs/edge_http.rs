//! Requests to an [`EdgeProc`]'s HTTP API, signed in as a dispatcher defined at the
//! cloud once [`EdgeProc::sign_in`] has run (writes and personal reads need a session).

use super::{CloudProc, EdgeProc};

impl EdgeProc {
    /// A request to the edge's API, signed in when [`EdgeProc::sign_in`] was called.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = reqwest::Client::new().request(method, format!("{}{path}", self.http()));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// Defines dispatcher `id` at the cloud and signs them in here once synced.
    pub async fn sign_in(&mut self, cloud: &CloudProc, depot: &str, id: &str) {
        let token = garasi_fleet_tests::dispatcher_token(
            &cloud.https,
            &cloud.base(),
            depot,
            &self.http(),
            id,
        )
        .await;
        self.token = Some(token);
    }

    pub async fn get(&self, path: &str) -> Option<serde_json::Value> {
        let r = self.request(reqwest::Method::GET, path).send().await.ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.json().await.ok()
    }

    pub async fn put(&self, path: &str, body: serde_json::Value) -> bool {
        match self
            .request(reqwest::Method::PUT, path)
            .json(&body)
            .send()
            .await
        {
            Ok(r) => r.status().is_success(),
            Err(_) => false,
        }
    }
}
