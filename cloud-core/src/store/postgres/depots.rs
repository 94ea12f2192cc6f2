//! Depot credentials in PostgreSQL: creating a depot with an expiring enrolment token,
//! trading a token for a new secret, issuing a new token, revoking both. Only hashes are
//! stored.

use tokio_postgres::Client;

use super::*;

pub(super) async fn create(
    client: &Client,
    name: &str,
    expires_ms: i64,
) -> Result<NewDepot, StoreError> {
    let (id, token) = (new_depot_id(), random_token());
    client
        .execute(
            "INSERT INTO depots (id, name, token_hash, token_expires_ms, created_ms) VALUES ($1, $2, $3, $4, $5)",
            &[&id, &name, &hash_secret(&token), &expires_ms, &now_ms()],
        )
        .await?;
    Ok(NewDepot {
        id,
        enrolment_token: token,
        expires_ms,
    })
}

pub(super) async fn enroll(
    client: &mut Client,
    token: &str,
) -> Result<DepotCredentials, StoreError> {
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            "SELECT id, token_expires_ms FROM depots WHERE token_hash = $1 FOR UPDATE",
            &[&hash_secret(token)],
        )
        .await?;
    let Some(row) = row else {
        return Err(StoreError::BadToken);
    };
    let depot_id: String = row.get(0);
    let expires: Option<i64> = row.get(1);
    if expires.is_none_or(|e| e <= now_ms()) {
        return Err(StoreError::TokenExpired);
    }
    let secret = random_token();
    tx.execute(
        "UPDATE depots SET token_hash = NULL, token_expires_ms = NULL, secret_hash = $1 WHERE id = $2",
        &[&hash_secret(&secret), &depot_id],
    )
    .await?;
    tx.commit().await?;
    Ok(DepotCredentials { depot_id, secret })
}

pub(super) async fn issue_token(
    client: &Client,
    depot: &str,
    expires_ms: i64,
) -> Result<String, StoreError> {
    let token = random_token();
    let n = client
        .execute(
            "UPDATE depots SET token_hash = $1, token_expires_ms = $2 WHERE id = $3",
            &[&hash_secret(&token), &expires_ms, &depot],
        )
        .await?;
    if n == 0 {
        return Err(StoreError::NoSuchDepot(depot.into()));
    }
    Ok(token)
}

pub(super) async fn revoke(client: &Client, depot: &str) -> Result<(), StoreError> {
    let n = client
        .execute(
            "UPDATE depots SET secret_hash = NULL, token_hash = NULL, token_expires_ms = NULL WHERE id = $1",
            &[&depot],
        )
        .await?;
    if n == 0 {
        return Err(StoreError::NoSuchDepot(depot.into()));
    }
    Ok(())
}
