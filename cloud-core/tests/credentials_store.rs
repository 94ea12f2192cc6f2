//! Depot credentials in both stores (SQLite always; PostgreSQL with
//! `GARASI_TEST_POSTGRES`, required in CI): an enrolment token stops working when it
//! expires; a new token replaces an unused one and rotates the depot's secret when
//! used, the old secret working until then; revoking ends the secret and any unused
//! token; migrating twice keeps everything.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use garasi_cloud::store::{CloudStore, StoreError};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn credentials_rotate_expire_and_revoke<S: CloudStore>(s: &S) {
    // Expired.
    let late = s.create_depot_until("late", now_ms() - 1).await.unwrap();
    assert!(matches!(
        s.enroll(&late.enrolment_token).await,
        Err(StoreError::TokenExpired)
    ));

    // Enrolled, then a new token: the old secret works until the token is used.
    let d = s.create_depot("rotating").await.unwrap();
    assert!(
        d.expires_ms > now_ms() + 6 * 24 * 3600 * 1000,
        "about a week by default"
    );
    let first = s.enroll(&d.enrolment_token).await.unwrap();
    let t1 = s
        .issue_enrolment_token(&d.id, now_ms() + 60_000)
        .await
        .unwrap();
    let t2 = s
        .issue_enrolment_token(&d.id, now_ms() + 60_000)
        .await
        .unwrap();
    assert!(s.authenticate(&d.id, &first.secret).await.unwrap());
    assert!(
        matches!(s.enroll(&t1).await, Err(StoreError::BadToken)),
        "replaced by t2"
    );
    let second = s.enroll(&t2).await.unwrap();
    assert_eq!(second.depot_id, d.id);
    assert!(!s.authenticate(&d.id, &first.secret).await.unwrap());
    assert!(s.authenticate(&d.id, &second.secret).await.unwrap());
    assert!(
        matches!(s.enroll(&t2).await, Err(StoreError::BadToken)),
        "one-time"
    );

    // Revoked with a token pending: neither works.
    let t3 = s
        .issue_enrolment_token(&d.id, now_ms() + 60_000)
        .await
        .unwrap();
    s.revoke_depot(&d.id).await.unwrap();
    assert!(!s.authenticate(&d.id, &second.secret).await.unwrap());
    assert!(matches!(s.enroll(&t3).await, Err(StoreError::BadToken)));
    let listed = s.depots().await.unwrap();
    assert!(!listed.iter().find(|x| x.id == d.id).unwrap().enrolled);

    for missing in [
        s.issue_enrolment_token("depot-nope", now_ms() + 1)
            .await
            .err(),
        s.revoke_depot("depot-nope").await.err(),
    ] {
        assert!(matches!(missing, Some(StoreError::NoSuchDepot(_))));
    }
    s.migrate().await.unwrap();
    let t4 = s
        .issue_enrolment_token(&d.id, now_ms() + 60_000)
        .await
        .unwrap();
    assert!(s.enroll(&t4).await.is_ok(), "a new token after revocation");
}

#[tokio::test]
async fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let s = garasi_cloud::store::sqlite::SqliteStore::open(&dir.path().join("cloud.db")).unwrap();
    s.migrate().await.unwrap();
    credentials_rotate_expire_and_revoke(&s).await;
}

#[tokio::test]
async fn postgres() {
    let Some((s, _, schema)) = common::fresh_postgres("credentials").await else {
        return;
    };
    credentials_rotate_expire_and_revoke(&s).await;
    s.drop_schema(&schema).await.unwrap();
}
