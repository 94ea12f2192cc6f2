//! Enrolment: trading a one-time token for depot credentials, kept in the encrypted
//! store, and the HTTPS client that reaches the cloud with them.

use rusqlite::Connection;

use super::store::{state_get, state_set};
use crate::store::Store;
use std::time::Duration;

/// How this depot reaches the cloud; stored in the encrypted database by `enroll`.
#[derive(Clone)]
pub struct Enrolment {
    pub cloud_url: String,
    pub depot_id: String,
    pub secret: String,
    /// PEM of a CA to trust besides the system roots (self-hosted clouds).
    pub ca_pem: Option<String>,
}

impl std::fmt::Debug for Enrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrolment")
            .field("cloud_url", &self.cloud_url)
            .field("depot_id", &self.depot_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

pub fn save_enrolment(c: &Connection, e: &Enrolment) -> rusqlite::Result<()> {
    state_set(c, "cloud_url", &e.cloud_url)?;
    state_set(c, "depot_id", &e.depot_id)?;
    state_set(c, "depot_secret", &e.secret)?;
    match &e.ca_pem {
        Some(pem) => state_set(c, "cloud_ca_pem", pem),
        None => c
            .execute("DELETE FROM sync_state WHERE key = 'cloud_ca_pem'", [])
            .map(|_| ()),
    }
}

pub fn load_enrolment(c: &Connection) -> rusqlite::Result<Option<Enrolment>> {
    let (url, id, secret) = (
        state_get(c, "cloud_url")?,
        state_get(c, "depot_id")?,
        state_get(c, "depot_secret")?,
    );
    Ok(match (url, id, secret) {
        (Some(cloud_url), Some(depot_id), Some(secret)) => Some(Enrolment {
            cloud_url,
            depot_id,
            secret,
            ca_pem: state_get(c, "cloud_ca_pem")?,
        }),
        _ => None,
    })
}

/// An HTTPS client for the cloud: rustls, the system roots plus the enrolment's CA.
pub fn cloud_client(ca_pem: Option<&str>) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(10))
        .https_only(true);
    if let Some(pem) = ca_pem {
        b = b.add_root_certificate(
            reqwest::Certificate::from_pem(pem.as_bytes())
                .map_err(|e| format!("CA file is not a PEM certificate: {e}"))?,
        );
    }
    b.build().map_err(|e| e.to_string())
}

/// Trades a one-time token for depot credentials and stores them (encrypted database).
/// Returns the depot id.
pub async fn enroll(
    store: &Store,
    cloud: &str,
    token: &str,
    ca_pem: Option<String>,
) -> Result<String, String> {
    let cloud = cloud.trim_end_matches('/').to_string();
    if !cloud.starts_with("https://") {
        return Err(
            "the cloud URL must be https://: depot credentials never travel in clear".into(),
        );
    }
    let http = cloud_client(ca_pem.as_deref())?;
    let r = http
        .post(format!("{cloud}/api/v1/enroll"))
        .json(&serde_json::json!({ "token": token }))
        .send()
        .await
        .map_err(|e| format!("cannot reach the cloud at {cloud}: {e}"))?;
    if !r.status().is_success() {
        return Err(format!(
            "the cloud refused the enrolment ({}): {}",
            r.status(),
            r.text().await.unwrap_or_default()
        ));
    }
    let creds: serde_json::Value = r.json().await.map_err(|e| e.to_string())?;
    let (Some(depot_id), Some(secret)) = (creds["depot_id"].as_str(), creds["secret"].as_str())
    else {
        return Err("the cloud's enrolment answer is missing depot_id or secret".into());
    };
    let e = Enrolment {
        cloud_url: cloud,
        depot_id: depot_id.into(),
        secret: secret.into(),
        ca_pem,
    };
    store
        .write(move |c| save_enrolment(c, &e))
        .await
        .map_err(|e| e.to_string())?;
    Ok(depot_id.to_string())
}
