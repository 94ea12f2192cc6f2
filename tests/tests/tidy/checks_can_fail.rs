//! Each tidy check fed synthetic bad input, to show it can fail, and good input it
//! must pass.

use super::*;

#[test]
fn doc_header() {
    for bad in ["use std::fs;\n", "// a plain comment\n", "", "\n//! late\n"] {
        assert!(check_doc_header("a.rs", bad).is_some(), "{bad:?}");
    }
    let good = "//! What this is.\nuse std::fs;\n";
    assert_eq!(check_doc_header("a.rs", good), None);
}

#[test]
fn length() {
    let (long, short) = ("x\n".repeat(601), "x\n".repeat(600));
    let found = check_length("big.rs", &long, &[]);
    assert_eq!(found.as_deref(), Some("big.rs: 601 lines"));
    assert_eq!(check_length("big.rs", &long, &[("big.rs", "why")]), None);
    assert_eq!(check_length("big.rs", &short, &[]), None);
    let files = [5, 1, 900].map(|n| (String::new(), "x\n".repeat(n)));
    assert_eq!(median_lines(&files), 5);
}

const ROUTER: &str = r#"//! A router.
    Router::new()
        .route("/a", get(list).post(create::<S>))
        .route(
            "/b/{id}",
            axum::routing::put(put_b::<S>).layer(x(get(nope))),
        )
        // .route("/commented", get(h))
        .route("/s", get(|| async { ".route(\"/in-string\", get(h))" }))
    #[cfg(test)]
    mod tests { fn r() -> Router { Router::new().route("/test-only", get(h)) } }"#;
const SPEC: &str = r#"{"paths": {"/a": {"get": {}, "post": {}}, "/s": {"get": {}},
    "/b/{id}": {"parameters": [], "put": {}}, "/c": {"delete": {}}}}"#;
const FOUND: &str = "GET /a (r.rs:3), POST /a (r.rs:3), PUT /b/{id} (r.rs:4), \
                     GET /s (r.rs:9)";

fn routes(text: &str) -> Vec<Route> {
    let (routes, problems) = extract_routes("r.rs", text);
    assert_eq!(problems, [""; 0]);
    routes
}

#[test]
fn routes_extracted() {
    let found: Vec<String> = routes(ROUTER).iter().map(show).collect();
    assert_eq!(found.join(", "), FOUND);
    let dynamic = r#".route(&format!("/{x}"), get(h)).route(P, get(h))"#;
    assert_eq!(extract_routes("d.rs", dynamic).1.len(), 2);
    let unknown = r#".route("/x", on(MethodFilter::GET, h))"#;
    assert_eq!(extract_routes("m.rs", unknown).1.len(), 1);
    assert!(is_test_path("edge-daemon/src/modules/sync/tests.rs"));
    assert!(!is_test_path("edge-daemon/src/modules/sync/api.rs"));
}

#[test]
fn routes_compared_both_ways() {
    let spec = spec_operations(SPEC).unwrap();
    let extra = format!("{ROUTER}\nfn more() {{ r.route(\"/new\", patch(h)) }}");
    let want = [
        "PATCH /new (r.rs:12) is routed but not in spec.json",
        "DELETE /c is in spec.json but no router serves it",
    ];
    assert_eq!(compare_routes(&routes(&extra), &spec, "spec.json"), want);
    let good = spec_operations(&SPEC.replace(r#", "/c": {"delete": {}}"#, "")).unwrap();
    assert_eq!(good.len(), 4, "`parameters` is not an operation: {good:?}");
    assert_eq!(compare_routes(&routes(ROUTER), &good, "spec.json"), [""; 0]);
}

fn imports(path: &str, text: &str) -> Vec<String> {
    let modules = BTreeSet::from(["auth", "dispatch", "fleet", "sync"].map(String::from));
    check_module_imports(&format!("edge-daemon/src/{path}"), text, &modules)
}

/// `path under modules/ | problems expected | text`, one case a line.
const BAD_IMPORTS: &str = "
    dispatch/a.rs | 2 | use crate::modules::{fleet::a, sync::service::T, auth};
    dispatch/a.rs | 1 | use crate::modules::fleet::{service::A, registry::B};
    dispatch/a.rs | 1 | use crate::modules::fleet::VehicleView;
    dispatch/a.rs | 1 | use crate::modules::fleet::{self, service::A};
    dispatch/a.rs | 1 | fn f() { crate::modules::sync::outbox::append(x) }
    dispatch/store.rs | 1 | fn f() { super::super::sync::apply(tx) }
    dispatch/mod.rs | 1 | use super::fleet::Registry;
    dispatch/a.rs | 1 | mod t { fn f() { super::super::super::fleet::x() } }";

#[test]
fn module_internals() {
    let text = "//! x\nuse crate::modules::fleet::registry::Thing;";
    let want = "edge-daemon/src/modules/dispatch/assign.rs:2: module `dispatch` uses \
                `fleet::registry`, an internal of module `fleet`";
    assert_eq!(imports("modules/dispatch/assign.rs", text), [want]);
    for case in BAD_IMPORTS.trim().lines() {
        let [path, n, text] = [0, 1, 2].map(|k| case.split(" | ").nth(k).unwrap().trim());
        let found = imports(&format!("modules/{path}"), text);
        assert_eq!(found.len().to_string(), n, "{case}: {found:?}");
    }
}

#[test]
fn module_service_and_own_paths_pass() {
    let good = r#"//! x
        use crate::modules::fleet::service::{FleetApi, VehicleView};
        use crate::modules::{fleet::service::A, dispatch::store::Row, framework::Module};
        use super::store::Row2;
        // crate::modules::fleet::registry::Thing is not used, this is a comment
        /* crate::modules::sync::outbox::append */
        const S: &str = "crate::modules::sync::outbox::append";
        mod tests { fn f() { super::super::MIGRATIONS; } }
        fn g() { super::super::sync::service::status() }"#;
    assert_eq!(imports("modules/dispatch/assign.rs", good), [""; 0]);
    let wiring = "use crate::modules::fleet::registry::Thing;";
    assert_eq!(imports("node.rs", wiring), [""; 0]);
    assert_eq!(imports("modules/framework.rs", wiring), [""; 0]);
}

#[test]
fn bypasses_found_in_review_are_caught() {
    let modules: BTreeSet<String> = ["dispatch", "fleet"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let file = "edge-daemon/src/modules/dispatch/x.rs";
    for bad in [
        "//! x\nuse crate::modules as m;\nfn f() { m::fleet::store::load_all(); }\n",
        "//! x\nuse super::super as m;\n",
    ] {
        assert!(
            !check_module_imports(file, bad, &modules).is_empty(),
            "{bad}"
        );
    }
    let (routes, problems) = extract_routes(
        "a.rs",
        r#"fn r() { R::new().route("/a", get(h).options(o)) }"#,
    );
    assert!(routes.iter().any(|r| r.method == "OPTIONS"), "{routes:?}");
    assert!(problems.is_empty(), "{problems:?}");
    for hidden in [
        r#"fn r() { R::new().nest("/p", inner()) }"#,
        r#"fn r() { R::new().route_service("/p", svc) }"#,
        r#"fn r() { R::new().nest_service("/p", svc) }"#,
    ] {
        let (_, problems) = extract_routes("a.rs", hidden);
        assert!(!problems.is_empty(), "{hidden}");
    }
}
