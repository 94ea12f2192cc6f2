//! The template module (what `cargo xtask new-module` copies) runs in a real node: its
//! migration, routes, page and OpenAPI fragment work, writes need a signed-in person and
//! name them, and bad input is refused. So a scaffolded module starts from working code.

#![allow(clippy::unwrap_used)]

use futures::FutureExt;
use garasi_edge::config::Settings;
use garasi_edge::modules::auth::service::{upsert_local, NewPerson};
use garasi_edge::modules::framework::{CliContext, Module, StoreArgs};
use garasi_edge::modules::template::TemplateModule;
use garasi_edge::node::{self, Node};
use garasi_edge::store::{DataDir, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_module_runs_with_auth_attribution_and_limits() {
    let tmp = tempfile::tempdir().unwrap();
    let dd = DataDir::new(tmp.path(), None);
    dd.init().unwrap();
    let store = Store::open(&dd).unwrap();
    node::migrate_all(&store).unwrap();
    upsert_local(
        &store,
        &NewPerson {
            id: "disp-1",
            name: "Dewi",
            roles: &["dispatcher".to_string()],
            password: Some("correct horse 42"),
            pin: None,
            badge: None,
        },
    )
    .unwrap();
    drop(store);
    let settings = Settings {
        http_listen: Some("127.0.0.1:0".into()),
        mqtt_listen: Some("127.0.0.1:0".into()),
        mqtt5_listen: Some("127.0.0.1:0".into()),
        ..Default::default()
    };
    let cfg = settings.resolve(tmp.path()).unwrap();
    let bound = node::bind(&cfg).unwrap();
    let mut modules = node::all_modules();
    modules.push(Box::new(TemplateModule));
    let node = Node::start_with(cfg, bound, modules).await.unwrap();
    let base = format!("http://{}", node.http_addr);
    // A failed assertion must still stop the node: its blocking threads would otherwise
    // keep the runtime (and the test) from ever finishing.
    let checks = std::panic::AssertUnwindSafe(checks(base))
        .catch_unwind()
        .await;
    assert!(node.stop(std::time::Duration::from_secs(10)).await);
    if let Err(p) = checks {
        std::panic::resume_unwind(p);
    }

    // Its own command, as `garasi-edge template list --data-dir DIR` parses it.
    let command = TemplateModule.commands().remove(0);
    let dir = tmp.path().to_string_lossy().into_owned();
    let args = command.get_matches_from(["template", "list", "--data-dir", dir.as_str()]);
    let open = |s: &StoreArgs| {
        Ok(Store::open(&DataDir::new(
            &s.data_dir,
            s.key_file.as_deref(),
        ))?)
    };
    TemplateModule
        .run_command("template", &args, &CliContext { open: &open })
        .unwrap();
}

async fn checks(base: String) {
    let http = reqwest::Client::new();
    let item = |id: &str| format!("{base}/api/v1/template/items/{id}");

    // No session: refused, nothing stored.
    let r = http
        .put(item("a"))
        .json(&serde_json::json!({"label": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = get(&http, format!("{base}/api/v1/template/items"), None).await;
    assert_eq!(r.status(), 401);

    let login: serde_json::Value = http
        .post(format!("{base}/api/v1/session"))
        .json(
            &serde_json::json!({"person": "disp-1", "password": "correct horse 42", "token": true}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap().to_string();
    let put = |id: String, body: serde_json::Value| {
        http.put(item(&id)).bearer_auth(&token).json(&body).send()
    };

    // The writer is the session's person; a body cannot name someone else.
    let r = put("bay-1".into(), serde_json::json!({"label": "Bay one"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let stored: serde_json::Value = r.json().await.unwrap();
    assert_eq!(stored["set_by"], "disp-1");
    let r = put(
        "bay-2".into(),
        serde_json::json!({"label": "x", "set_by": "boss"}),
    )
    .await
    .unwrap();
    assert_eq!(
        r.status(),
        422,
        "unknown fields are refused like every edge JSON body"
    );

    // Hostile ids and labels get a clear 400 and are not stored.
    for (id, label) in [
        ("x".repeat(200), "ok".to_string()),
        ("bad%20id".to_string(), "ok".to_string()),
        ("bay-3".to_string(), "a\u{202e}b".to_string()),
        ("bay-3".to_string(), "a\u{0}b".to_string()),
        ("bay-4".to_string(), "y".repeat(121)),
        ("bay-5".to_string(), "   ".to_string()),
    ] {
        let r = put(id.clone(), serde_json::json!({"label": label}))
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "id {id:?} label {label:?}");
    }
    let list: serde_json::Value = get(&http, format!("{base}/api/v1/template/items"), Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["label"], "Bay one");

    // The page, in Indonesian by default and English on request; escaped, signed in only.
    put(
        "bay-6".into(),
        serde_json::json!({"label": "<script>x</script>"}),
    )
    .await
    .unwrap();
    let page =
        |lang: &'static str| get(&http, format!("{base}/template?lang={lang}"), Some(&token));
    let id_page = page("id").await.text().await.unwrap();
    assert!(
        id_page.contains("Diubah oleh") && id_page.contains("Bay one"),
        "{id_page}"
    );
    assert!(
        id_page.contains("&lt;script&gt;") && !id_page.contains("<script>x"),
        "{id_page}"
    );
    let en_page = page("en").await.text().await.unwrap();
    assert!(en_page.contains("Changed by"), "{en_page}");
    let anon = get(&http, format!("{base}/template"), None)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        anon.contains("Silakan masuk") && !anon.contains("Bay one"),
        "{anon}"
    );

    // The module's own OpenAPI fragment is served with the shared document.
    let spec: serde_json::Value = get(&http, format!("{base}/api/openapi.json"), None)
        .await
        .json()
        .await
        .unwrap();
    assert!(spec["paths"]["/api/v1/template/items/{id}"]["put"].is_object());
    assert!(spec["paths"]["/api/v1/vehicles"]["get"].is_object());

    // Its own metric, registered at start: the two stored writes, not the refusals.
    let metrics = get(&http, format!("{base}/metrics"), None)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("garasi_template_items_written_total 2"),
        "{metrics}"
    );
}

/// GET `url`, signed in when `token` is given.
async fn get(http: &reqwest::Client, url: String, token: Option<&str>) -> reqwest::Response {
    let mut request = http.get(url);
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    request.send().await.unwrap()
}
