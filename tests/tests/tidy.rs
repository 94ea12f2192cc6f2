//! Tidy: workspace rules no compiler or linter enforces (issue 10), run by `cargo test` as
//! in rust-analyzer. The checkers are pure functions over (path, text): `checks_can_fail`
//! shows each failing on synthetic input, the tests over the real tree (walked from
//! `CARGO_MANIFEST_DIR/..`) list every offender. Tidy reads the edge and cloud as text.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::BTreeSet, fs, path::Path, path::PathBuf};

/// Files allowed over `MAX_LINES`, each `(path from the repo root, one-line reason)`.
/// Empty on purpose: issue 10 splits the big files; add an entry only with a real reason.
const LONG_FILES: &[(&str, &str)] = &[];
const MAX_LINES: usize = 600;
/// Issue 10, acceptance 2: the median `.rs` file of the workspace is at most this long.
const MAX_MEDIAN: usize = 180;
/// The axum method routers the route check reads HTTP methods from.
const ROUTER_METHODS: &[&str] = &[
    "get", "post", "put", "delete", "patch", "head", "options", "trace", "connect", "any",
];
/// Router calls whose routes the literal-path check cannot see: refused outright.
const HIDDEN_ROUTERS: &[&str] = &["nest", "nest_service", "route_service", "fallback_service"];
/// Keys of an OpenAPI path item that are not operations; every other key is one.
const NOT_OPERATIONS: &[&str] = &["parameters", "summary", "description", "servers"];

type Ops = BTreeSet<(String, String)>;

// ---------------------------------------------------------------- the tree
/// The workspace root; this crate is `tests/` in it.
fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    root.canonicalize().unwrap_or(root)
}

/// Every `.rs` file of the workspace as (path from the root with `/`, text), sorted.
fn rust_files() -> Vec<(String, String)> {
    let root = repo_root();
    let mut out = Vec::new();
    walk(&root, &root, &mut out);
    out.sort();
    out
}

fn walk(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for path in entries.map(|e| e.expect("directory entry").path()) {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        // Build output (only the workspace's own `target/`), vendored JS, vendored
        // crates (`vendor/`: outside code with its own conventions, see
        // edge-daemon/vendor/README.md) and hidden directories (.git, .ci) are not our
        // source; a module folder named `target` deeper down is.
        let top = dir == root;
        let skipped = (top && (name == "target" || name == "node_modules")) || name == "vendor";
        if skipped || name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            walk(&path, root, out);
        } else if name.ends_with(".rs") {
            let rel = path.strip_prefix(root).expect("under the root");
            let rel: Vec<_> = rel.iter().map(|c| c.to_string_lossy()).collect();
            // A file someone is rewriting this second may briefly not be UTF-8.
            let text = fs::read(&path).unwrap_or_default();
            out.push((rel.join("/"), String::from_utf8_lossy(&text).into_owned()));
        }
    }
}

/// Fails with every problem at once and what to do about them.
fn report(problems: &[String], what: &str, fix: &str) {
    if !problems.is_empty() {
        let list: String = problems.iter().map(|p| format!("\n  - {p}")).collect();
        panic!("tidy: {what} ({} found):{list}\n{fix}", problems.len());
    }
}

// ---------------------------------------------------------------- a small Rust lexer
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ident, // identifiers, keywords and numbers (a number never passes for a name)
    Str,   // a string literal (plain, byte, C or raw); `text` is what the quotes hold
    Punct, // punctuation; char literals and lifetimes are a lone `'`
}

#[derive(Debug, Clone)]
struct Tok {
    kind: Kind,
    text: String,
    line: usize,
    depth: usize, // brackets open around the token; a bracket is at its outer depth
}

impl Tok {
    fn is(&self, s: &str) -> bool {
        self.kind != Kind::Str && self.text == s
    }
}

/// Whether token `i` exists and is `s`.
fn is_at(t: &[Tok], i: usize, s: &str) -> bool {
    t.get(i).is_some_and(|x| x.is(s))
}

/// Index just past the run of chars from `i` that satisfy `f`.
fn scan(c: &[char], mut i: usize, f: impl Fn(char) -> bool) -> usize {
    while i < c.len() && f(c[i]) {
        i += 1;
    }
    i
}

/// Tokens of Rust source with comments dropped and each string literal one token, so no
/// check is triggered (or fooled) by a comment or a string. `::` is one token.
fn lex(src: &str) -> Vec<Tok> {
    let c: Vec<char> = src.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let word = |ch: char| ch.is_alphanumeric() || ch == '_';
    let (mut i, mut line, mut counted, mut depth, mut toks) = (0, 1, 0, 0, Vec::new());
    while i < c.len() {
        // Lines are counted up to each token's start, so no branch below has to.
        line += c[counted..i].iter().filter(|&&x| x == '\n').count();
        counted = i;
        let (s, ch) = (i, c[i]);
        depth -= usize::from(")]}".contains(ch) && depth > 0);
        let mut tok = |kind, text: String| {
            toks.push(Tok {
                kind,
                text,
                line,
                depth,
            })
        };
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            i = scan(&c, i, |x| x != '\n');
        } else if ch == '/' && at(i + 1) == '*' {
            // Nested block comments are not handled; this workspace has none.
            let end = (i + 2..c.len()).find(|&j| c[j] == '*' && at(j + 1) == '/');
            i = end.map_or(c.len(), |j| j + 2);
        } else if ch == '"' {
            i += 1;
            while i < c.len() && c[i] != '"' {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            tok(Kind::Str, c[s + 1..i.min(c.len())].iter().collect());
            i += 1;
        } else if ch == '\'' {
            // '\n' and 'x' are chars; 'a (no quote after one char) is a lifetime or label.
            i = match (at(i + 1), at(i + 2)) {
                ('\\', _) => scan(&c, i + 3, |x| x != '\'') + 1,
                (_, '\'') => i + 3,
                _ => scan(&c, i + 1, word),
            };
            tok(Kind::Punct, "'".into());
        } else if word(ch) {
            i = scan(&c, i, word);
            let w: String = c[s..i].iter().collect();
            let raw = matches!(w.as_str(), "r" | "br" | "cr");
            let hashes = scan(&c, i, |x| raw && x == '#') - i;
            if raw && at(i + hashes) == '"' {
                // A raw string ends at a quote followed by as many `#` as it opened with.
                let body = i + hashes + 1;
                let end = |j: usize| c[j] == '"' && (1..=hashes).all(|k| at(j + k) == '#');
                i = (body..c.len()).find(|&j| end(j)).unwrap_or(c.len());
                tok(Kind::Str, c[body..i].iter().collect());
                i += 1 + hashes;
            } else if w == "r" && hashes == 1 {
                i += 1; // r#ident, a raw identifier: lexed next round as the plain ident
            } else {
                tok(Kind::Ident, w);
            }
        } else {
            i += if ch == ':' && at(i + 1) == ':' { 2 } else { 1 };
            tok(Kind::Punct, c[s..i].iter().collect());
            depth += usize::from("([{".contains(ch));
        }
    }
    toks
}

/// Index of the token closing the bracket opened at `open` (or the end).
fn matching(t: &[Tok], open: usize) -> usize {
    let inside = |k: &usize| t[*k].depth > t[open].depth;
    (open + 1..t.len()).find(|k| !inside(k)).unwrap_or(t.len())
}

/// Starts of the comma-separated items of the `{ .. }` at `open`; `[open]` if none is there.
fn items(t: &[Tok], open: usize) -> Vec<usize> {
    let (end, first) = (matching(t, open), open + usize::from(is_at(t, open, "{")));
    let commas = (open + 1..end).filter(|&k| t[k].is(",") && t[k].depth == t[open].depth + 1);
    let starts = std::iter::once(first).chain(commas.map(|k| k + 1));
    starts.filter(|&k| k < end).collect()
}

/// The tokens outside `#[cfg(test)]` items.
fn without_test_items(t: &[Tok]) -> Vec<Tok> {
    let (mut kept, mut i) = (Vec::new(), 0);
    let cfg_test = ["#", "[", "cfg", "(", "test", ")", "]"];
    while i < t.len() {
        if !cfg_test.iter().enumerate().all(|(k, s)| is_at(t, i + k, s)) {
            kept.push(t[i].clone());
            i += 1;
            continue;
        }
        i += cfg_test.len();
        while is_at(t, i, "#") {
            i = matching(t, i + 1) + 1; // further attributes of the same item
        }
        // The item ends at its first `;` or with its first `{ ... }` body.
        while i < t.len() && !t[i].is(";") && !t[i].is("{") {
            let group = t[i].is("(") || t[i].is("[");
            i = if group { matching(t, i) + 1 } else { i + 1 };
        }
        let body = is_at(t, i, "{");
        i = if body { matching(t, i) + 1 } else { i + 1 };
    }
    kept
}

// ---------------------------------------------------------------- check 1: `//!`
/// Every file says what it is for in its first line.
fn check_doc_header(path: &str, text: &str) -> Option<String> {
    let ok = text.starts_with("//!");
    (!ok).then(|| format!("{path}: the first line is not a `//!` comment"))
}

// ---------------------------------------------------------------- check 2: file length
fn check_length(path: &str, text: &str, allow: &[(&str, &str)]) -> Option<String> {
    let n = text.lines().count();
    let allowed = allow.iter().any(|(p, _)| *p == path);
    (n > MAX_LINES && !allowed).then(|| format!("{path}: {n} lines"))
}

fn median_lines(files: &[(String, String)]) -> usize {
    let mut counts: Vec<usize> = files.iter().map(|(_, t)| t.lines().count()).collect();
    counts.sort_unstable();
    counts.get(counts.len() / 2).copied().unwrap_or(0)
}

// ---------------------------------------------------------------- check 3: routes
#[derive(Debug, Clone, PartialEq, Eq)]
struct Route {
    method: String,
    path: String,
    /// `file:line` of the `.route(` call.
    at: String,
}

fn show(r: &Route) -> String {
    format!("{} {} ({})", r.method, r.path, r.at)
}

const NOT_LITERAL: &str = "the route path is not a string literal; write it as a literal so \
                           tidy can compare it with the OpenAPI spec";
const NO_METHOD: &str = "no get/post/put/delete/patch call in the method router; use those \
                         (tidy reads the HTTP methods from them)";

/// Every `.route("PATH", get(a).post(b))` outside test items, and the calls not understood.
fn extract_routes(file: &str, text: &str) -> (Vec<Route>, Vec<String>) {
    let t = without_test_items(&lex(text));
    let (mut routes, mut problems) = (Vec::new(), Vec::new());
    for i in 0..t.len().saturating_sub(3) {
        let hidden = HIDDEN_ROUTERS.iter().find(|h| t[i + 1].is(h));
        if let Some(h) = hidden.filter(|_| t[i].is(".") && t[i + 2].is("(")) {
            let at = format!("{file}:{}", t[i + 1].line);
            problems.push(format!(
                "{at}: `.{h}(..)` hides routes from this check; use `.route(\"/full/path\", ..)`"
            ));
            continue;
        }
        if !(t[i].is(".") && t[i + 1].is("route") && t[i + 2].is("(")) {
            continue;
        }
        let at = format!("{file}:{}", t[i + 1].line);
        if t[i + 3].kind != Kind::Str || !is_at(&t, i + 4, ",") {
            problems.push(format!("{at}: {NOT_LITERAL}"));
            continue;
        }
        let before = routes.len();
        // The methods are the calls chained at the top level of the second argument,
        // `get(h).put(h2)`, `axum::routing::post(x::<S>)`; handler arguments are deeper.
        let top = t[i + 2].depth + 1;
        for k in i + 5..matching(&t, i + 2) {
            let name = t[k].text.as_str();
            let call = t[k].kind == Kind::Ident && t[k].depth == top && is_at(&t, k + 1, "(");
            if call && ROUTER_METHODS.contains(&name) {
                let (method, path) = (name.to_uppercase(), t[i + 3].text.clone());
                let at = at.clone();
                routes.push(Route { method, path, at });
            }
        }
        if routes.len() == before {
            problems.push(format!("{at}: {NO_METHOD}"));
        }
    }
    (routes, problems)
}

/// The (METHOD, path) operations of an OpenAPI document.
fn spec_operations(spec: &str) -> Result<Ops, String> {
    let doc: serde_json::Value = serde_json::from_str(spec).map_err(|e| e.to_string())?;
    let paths = doc.get("paths").and_then(|p| p.as_object());
    let mut ops = BTreeSet::new();
    for (path, item) in paths.ok_or("no `paths` object")? {
        let bad = || format!("path item {path} is not an object");
        let keys = item.as_object().ok_or_else(bad)?.keys();
        let keys = keys.filter(|k| !NOT_OPERATIONS.contains(&k.as_str()));
        ops.extend(keys.map(|k| (k.to_uppercase(), path.clone())));
    }
    Ok(ops)
}

/// Both directions: routes the spec does not document, documented operations not routed.
fn compare_routes(routes: &[Route], spec: &Ops, spec_name: &str) -> Vec<String> {
    let (mut problems, mut routed) = (Vec::new(), BTreeSet::new());
    for Route { method, path, at } in routes {
        let key = (method.clone(), path.clone());
        if routed.insert(key.clone()) && !spec.contains(&key) {
            let msg = format!("is routed but not in {spec_name}");
            problems.push(format!("{method} {path} ({at}) {msg}"));
        }
    }
    for (method, path) in spec.difference(&routed) {
        let msg = format!("is in {spec_name} but no router serves it");
        problems.push(format!("{method} {path} {msg}"));
    }
    problems
}

/// Test code registers routes of its own; those are not the service's API. A
/// `#[cfg(test)] mod tests;` file is `tests.rs`, by this workspace's convention.
fn is_test_path(path: &str) -> bool {
    let test = |c: &str| matches!(c, "tests" | "benches" | "tests.rs");
    path.split('/').any(test)
}

/// Compares the routes of the production files under `src_dir` with the spec.
fn check_routes_against(src_dir: &str, spec_name: &str) {
    let (mut routes, mut problems) = (Vec::new(), Vec::new());
    for (path, text) in rust_files() {
        if path.starts_with(src_dir) && !is_test_path(&path) {
            let (r, p) = extract_routes(&path, &text);
            routes.extend(r);
            problems.extend(p);
        }
    }
    let Ok(spec) = fs::read_to_string(repo_root().join(spec_name)) else {
        let (n, list) = (routes.len(), routes.iter().map(show).collect::<Vec<_>>());
        let list = list.join("\n  - ");
        panic!("tidy: {spec_name} does not exist; create it documenting these {n}:\n  - {list}");
    };
    // A module documents its own routes in its folder (`modules/NAME/openapi.json`,
    // served merged with the shared spec), so a new module never edits `schemas/`.
    let mut fragments = vec![(spec_name.to_string(), spec)];
    if src_dir == "edge-daemon/src/" {
        for m in edge_modules() {
            let f = format!("edge-daemon/src/modules/{m}/openapi.json");
            if let Ok(text) = fs::read_to_string(repo_root().join(&f)) {
                fragments.push((f, text));
            }
        }
    }
    let mut ops = Ops::new();
    for (name, text) in &fragments {
        match spec_operations(text) {
            Ok(o) => ops.extend(o),
            Err(e) => problems.push(format!("{name}: {e}")),
        }
    }
    problems.extend(compare_routes(&routes, &ops, spec_name));
    let what = format!("the routes of {src_dir} and {spec_name} differ");
    let fix = "Document each routed operation in the spec, and remove from it what no router \
               serves (or add the route). Test-only routes belong in #[cfg(test)] or tests/.";
    report(&problems, &what, fix);
}

// ---------------------------------------------------------------- check 4: module seams
/// The edge's domain modules: the directories directly under `edge-daemon/src/modules/`.
fn edge_modules() -> BTreeSet<String> {
    let dir = repo_root().join("edge-daemon/src/modules");
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let dirs = entries.filter_map(|e| Some(e.ok()?.path()).filter(|p| p.is_dir()));
    let names = dirs.filter_map(|p| Some(p.file_name()?.to_string_lossy().into_owned()));
    names.filter(|n| !n.starts_with('.')).collect()
}

/// After `modules::` (at `j`), each (module Y, segment after `Y::` if any) the path
/// names, looking into `{a, b::{c, d}}` groups.
fn named_after(t: &[Tok], j: usize) -> Vec<(&Tok, Option<&Tok>)> {
    let mut out = Vec::new();
    for k in items(t, j).into_iter().filter(|&k| k < t.len()) {
        let tail = is_at(t, k + 1, "::");
        let tails = if tail { items(t, k + 2) } else { vec![t.len()] };
        out.extend(tails.into_iter().map(|m| (&t[k], t.get(m))));
    }
    out
}

/// Inside module X's folder, a path to another module Y must go through `Y::service`.
fn check_module_imports(path: &str, text: &str, modules: &BTreeSet<String>) -> Vec<String> {
    let rest = path.strip_prefix("edge-daemon/src/").unwrap_or_default();
    let segs = rest.trim_end_matches(".rs").split('/');
    let mut segs: Vec<String> = segs.map(String::from).collect();
    // Only files in a module's folder are bound; node.rs, cli.rs etc. do the wiring.
    if segs.len() < 3 || segs[0] != "modules" || !modules.contains(&segs[1]) {
        return vec![];
    }
    if segs.last().is_some_and(|s| s == "mod") {
        segs.pop();
    }
    let own = segs[1].clone();
    let t = lex(text);
    // Inline `mod x { .. }` blocks around the token (name, depth of the brace), so that
    // `super` resolves where it is written.
    let (mut inline, mut problems) = (Vec::<(String, usize)>::new(), Vec::new());
    for i in 0..t.len() {
        inline.retain(|(_, d)| t[i].depth > *d);
        if t[i].is("{") && i >= 2 && t[i - 2].is("mod") {
            inline.push((t[i - 1].text.clone(), t[i].depth));
        }
        let path_start = i == 0 || !t[i - 1].is("::");
        let start = if t[i].is("modules") && is_at(&t, i + 1, "::") {
            Some(i + 2)
        } else if t[i].is("super") && path_start {
            let supers = (i..t.len()).step_by(2).take_while(|&k| t[k].is("super"));
            let n = supers.take_while(|&k| is_at(&t, k + 1, "::")).count();
            let mut here = segs.clone();
            here.extend(inline.iter().map(|(name, _)| name.clone()));
            here.truncate(here.len().saturating_sub(n));
            (here == ["modules"]).then_some(i + 2 * n)
        } else {
            None
        };
        // `use crate::modules as m;` (or `super::super as m`) would let `m::y::x` past.
        let mut alias = t[i].is("modules") && is_at(&t, i + 1, "as");
        if t[i].is("super") && path_start {
            let chain = (i..t.len())
                .step_by(2)
                .take_while(|&k| t[k].is("super"))
                .count();
            let mut here = segs.clone();
            here.extend(inline.iter().map(|(name, _)| name.clone()));
            here.truncate(here.len().saturating_sub(chain));
            alias |= here == ["modules"] && is_at(&t, i + 2 * chain - 1, "as");
        }
        if alias {
            let msg = "aliases the modules tree; name other modules' `service` directly";
            problems.push(format!("{path}:{}: {msg}", t[i].line));
        }
        for (y, z) in start.map_or(vec![], |s| named_after(&t, s)) {
            let (y, line, z) = (&y.text, y.line, z.map(|z| z.text.as_str()));
            if *y != own && modules.contains(y) && z != Some("service") {
                let z = z.map(|z| format!("::{z}")).unwrap_or_default();
                let msg = format!("module `{own}` uses `{y}{z}`, an internal of module `{y}`");
                problems.push(format!("{path}:{line}: {msg}"));
            }
        }
    }
    problems
}

// ---------------------------------------------------------------- the real tree
#[test]
fn every_file_opens_with_a_doc_comment() {
    let files = rust_files();
    let check = |(p, t): &(String, String)| check_doc_header(p, t);
    let problems: Vec<_> = files.iter().filter_map(check).collect();
    let fix = "Start each file with a `//!` comment saying what the file is for.";
    report(&problems, "files not opening with a `//!` line", fix);
}

#[test]
fn no_file_over_600_lines() {
    let files = rust_files();
    let m = median_lines(&files);
    eprintln!("tidy: the median .rs file is {m} lines");
    let check = |(p, t): &(String, String)| check_length(p, t, LONG_FILES);
    let mut problems: Vec<_> = files.iter().filter_map(check).collect();
    // An allowlist entry that no longer applies goes, so the list stays honest.
    for (allowed, _) in LONG_FILES {
        let text = files.iter().find(|(p, _)| p == allowed).map(|(_, t)| t);
        if text.map_or(0, |t| t.lines().count()) <= MAX_LINES {
            problems.push(format!("{allowed}: listed but not over {MAX_LINES} lines"));
        }
    }
    let fix = "Split each file along its concerns (issue 10), or list it in LONG_FILES in \
               tests/tests/tidy.rs with a one-line reason; drop entries that no longer apply.";
    report(&problems, &format!("files over {MAX_LINES} lines"), fix);
}

#[test]
fn median_file_is_small() {
    let files = rust_files();
    let m = median_lines(&files);
    let n = files.len();
    eprintln!("tidy: the median .rs file is {m} lines over {n} files");
    assert!(
        m <= MAX_MEDIAN,
        "tidy: the median .rs file is {m} lines over {n} files; issue 10 wants at most \
         {MAX_MEDIAN}. Split files that carry several concerns into one file per concern."
    );
}

#[test]
fn edge_routes_match_openapi() {
    check_routes_against("edge-daemon/src/", "schemas/openapi.json");
}

#[test]
fn cloud_routes_match_openapi() {
    check_routes_against("cloud-core/src/", "schemas/cloud-openapi.json");
}

#[test]
fn modules_use_only_each_others_service() {
    let modules = edge_modules();
    let files = rust_files();
    let check = |(p, t): &(String, String)| check_module_imports(p, t, &modules);
    let mut found: Vec<String> = files.iter().flat_map(check).collect();
    // A module's own openapi.json counts for the route check only if the node serves it.
    for m in &modules {
        let dir = format!("edge-daemon/src/modules/{m}");
        let served = files
            .iter()
            .any(|(p, t)| p == &format!("{dir}/mod.rs") && t.contains("fn openapi("));
        if repo_root().join(&dir).join("openapi.json").exists() && !served {
            found.push(format!(
                "{dir}/openapi.json is not served: return it from `fn openapi` in {dir}/mod.rs"
            ));
        }
    }
    let found = found.into_iter();
    let fix = "Go through the other module's typed public API, \
               `modules::<name>::service::...`; move what is needed into its service.rs.";
    let what = "modules reaching into another module's internals";
    report(&found.collect::<Vec<_>>(), what, fix);
}

// ---------------------------------------------------------------- each check can fail
#[cfg(test)]
#[path = "tidy/checks_can_fail.rs"]
mod checks_can_fail;
