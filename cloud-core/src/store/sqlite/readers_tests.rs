//! The SQLite store's reader connections: a read waits for whichever reader frees first,
//! not for one picked in turn that may be in a long query while another is free.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::mpsc;
use std::time::Duration;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_takes_the_first_reader_freed() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("cloud.db")).unwrap();
    s.migrate().await.unwrap();
    // Every reader held by a read of its own, taken one after the other (read i holds
    // reader i), each until it is let go.
    let mut holds = Vec::new();
    let mut release = Vec::new();
    for _ in 0..READERS {
        let (inside, entered) = tokio::sync::oneshot::channel();
        let (go, wait) = mpsc::channel::<()>();
        let store = s.clone();
        holds.push(tokio::spawn(async move {
            store
                .read(move |c| {
                    let n: i64 = c.query_row("SELECT count(*) FROM changes", [], |r| r.get(0))?;
                    let _ = inside.send(());
                    let _ = wait.recv();
                    Ok(n)
                })
                .await
        }));
        entered.await.unwrap();
        release.push(go);
    }
    let store = s.clone();
    let waiting = tokio::spawn(async move {
        store
            .read(|c| Ok(c.query_row("SELECT 7", [], |r| r.get::<_, i64>(0))?))
            .await
    });
    // Not before a reader is free.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished(), "a read ran with every reader held");
    // The last reader frees; the first three stay held.
    release.pop().unwrap().send(()).unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the read waited for a reader still held instead of the free one")
        .unwrap()
        .unwrap();
    assert_eq!(got, 7);
    for go in release {
        go.send(()).unwrap();
    }
    for h in holds {
        assert_eq!(h.await.unwrap().unwrap(), 0);
    }
}
