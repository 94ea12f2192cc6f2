//! Developer commands, run as `cargo xtask ...` (alias in `.cargo/config.toml`).
//! `new-module NAME` copies the compiled, tested template module
//! (`edge-daemon/src/modules/template/`) to `modules/NAME/`, renames it, and registers it
//! with one line in `modules/mod.rs`. Nothing else in the tree is touched.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["new-module", name] => match new_module(&root, name) {
            Ok(dir) => {
                println!(
                    "created {} and registered it in edge-daemon/src/modules/mod.rs",
                    dir.display()
                );
                println!("next: write its tables in store.rs, its API in service.rs, its routes in api.rs (documented in openapi.json), then `cargo test -p garasi-edge`");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("new-module: {e}");
                ExitCode::from(1)
            }
        },
        _ => {
            eprintln!("usage: cargo xtask new-module NAME   (NAME: lowercase letters, digits and '_', starting with a letter)");
            ExitCode::from(64)
        }
    }
}

/// `snake_case` -> `CamelCase`.
fn camel(name: &str) -> String {
    name.split('_')
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Rust keywords (strict, reserved and 2018+), which cannot name a module.
const KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern",
    "false", "fn", "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub",
    "ref", "return", "self", "static", "struct", "super", "trait", "true", "type", "unsafe", "use",
    "where", "while", "abstract", "become", "box", "do", "final", "gen", "macro", "override",
    "priv", "try", "typeof", "unsized", "virtual", "yield", "union",
];

/// Why `name` cannot be a module, if it cannot. `routes` are the edge's route literals:
/// the module's page is `/NAME`, so a name an existing route starts with would make axum
/// refuse the router at start.
fn refusal(name: &str, routes: &[String], deps: &[String]) -> Option<String> {
    let shape = name.chars().next().is_some_and(|f| f.is_ascii_lowercase())
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.ends_with('_')
        && !name.contains("__");
    if !shape {
        return Some(
            "use 1-32 lowercase letters, digits and single '_', starting with a letter".into(),
        );
    }
    if KEYWORDS.contains(&name) {
        return Some("it is a Rust keyword".into());
    }
    if [
        "template",
        "framework",
        "mod",
        "modules",
        "all",
        "target",
        "node_modules",
    ]
    .contains(&name)
    {
        return Some("the name is taken by the project's own files".into());
    }
    // A module named like a crate (`std`, `tokio`, ...) would shadow it in `use` paths.
    if ["std", "core", "alloc", "proc_macro", "test"].contains(&name)
        || deps.iter().any(|d| d == name)
    {
        return Some("it is the name of a crate the edge uses".into());
    }
    // The module's command is `garasi-edge NAME`: the node's own commands are taken.
    if [
        "init", "run", "demo", "enroll", "db", "device", "person", "vehicle", "help",
    ]
    .contains(&name)
    {
        return Some(format!("`garasi-edge {name}` is already a command"));
    }
    if name.starts_with("sqlite") {
        return Some("SQLite reserves table names starting with sqlite".into());
    }
    let page = format!("/{name}");
    if let Some(r) = routes.iter().find(|r| {
        let api = format!("/api/v1/{name}");
        **r == page
            || r.starts_with(&format!("{page}/"))
            || **r == api
            || r.starts_with(&format!("{api}/"))
    }) {
        return Some(format!("the edge already serves {r}"));
    }
    None
}

/// The dependency names of a Cargo manifest, as Rust paths (`-` becomes `_`).
fn dependencies(manifest: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_deps = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_deps = line.ends_with("dependencies]");
        } else if in_deps {
            if let Some((key, _)) = line.split_once('=') {
                out.push(key.trim().split('.').next().unwrap_or("").replace('-', "_"));
            }
        }
    }
    out
}

/// Every `.route("...")` literal under `dir`.
fn route_literals(dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            route_literals(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path)?;
            for part in text.split(".route(\"").skip(1) {
                if let Some(end) = part.find('"') {
                    out.push(part[..end].to_string());
                }
            }
        }
    }
    Ok(())
}

/// The template's registration, commented out so the template itself never runs.
const UNREGISTERED: &str = "// The template is never registered; `cargo xtask new-module` uncomments this in the copy.\n// inventory::submit!";

fn copy_renamed(from: &Path, to: &Path, name: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_renamed(&entry.path(), &target, name)?;
        } else {
            let mut text = std::fs::read_to_string(entry.path())?;
            if entry.file_name() == "mod.rs" && from.ends_with("template") {
                // The template's own description does not describe the copy: leave the
                // developer a first line to write.
                let body = text.find("\n\n").map_or("", |i| &text[i..]);
                text = format!("//! {name} module: say what it owns (its tables, routes and service API).{body}");
                if !text.contains(UNREGISTERED) {
                    return Err(std::io::Error::other(
                        "the template's commented registration line is missing",
                    ));
                }
                text = text.replace(UNREGISTERED, "inventory::submit!");
            }
            let text = text
                .replace("Template", &camel(name))
                .replace("template", name);
            std::fs::write(target, text)?;
        }
    }
    Ok(())
}

fn new_module(root: &Path, name: &str) -> Result<PathBuf, String> {
    let modules = root.join("edge-daemon/src/modules");
    let mut routes = Vec::new();
    route_literals(&root.join("edge-daemon/src"), &mut routes).map_err(|e| e.to_string())?;
    let manifest = std::fs::read_to_string(root.join("edge-daemon/Cargo.toml")).unwrap_or_default();
    if let Some(why) = refusal(name, &routes, &dependencies(&manifest)) {
        return Err(format!("{name:?} cannot name a module: {why}"));
    }
    let dir = modules.join(name);
    if dir.exists() {
        return Err(format!("{} already exists", dir.display()));
    }
    let registry = modules.join("mod.rs");
    let text =
        std::fs::read_to_string(&registry).map_err(|e| format!("{}: {e}", registry.display()))?;
    // Registration outside the folder is the `pub mod NAME;` rustfmt needs, in its sorted
    // place among the module declarations; the copy registers itself in its `mod.rs`.
    let block = text
        .find("// Registration")
        .ok_or("modules/mod.rs has no `// Registration` block")?;
    // Positions of the newline before each `pub mod` line of the block.
    let decls: Vec<usize> = text[block..]
        .match_indices("\npub mod ")
        .map(|(i, _)| block + i)
        .collect();
    let decl = decls
        .iter()
        .copied()
        .find(|&i| text[i + 9..].split(';').next().is_some_and(|m| m > name))
        .or_else(|| {
            decls
                .last()
                .and_then(|&i| text[i + 1..].find('\n').map(|j| i + 1 + j))
        })
        .ok_or("modules/mod.rs declares no module")?;
    let updated = format!("{}\npub mod {name};{}", &text[..decl], &text[decl..]);
    // Copied beside the target first, then renamed: a failed copy leaves nothing behind.
    let staging = modules.join(format!(".{name}.new"));
    let _ = std::fs::remove_dir_all(&staging);
    if let Err(e) = copy_renamed(&modules.join("template"), &staging, name) {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(format!("copying the template: {e}"));
    }
    std::fs::rename(&staging, &dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::write(&registry, updated).map_err(|e| format!("{}: {e}", registry.display()))?;
    // The renamed copy may have longer lines than the template: format it as CI checks it.
    let formatted = std::process::Command::new("rustfmt")
        .args(["--edition", "2021"])
        .arg(dir.join("mod.rs"))
        .arg(&registry)
        .status();
    if !formatted.is_ok_and(|s| s.success()) {
        eprintln!("note: rustfmt did not run; run `cargo fmt --all` before committing");
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_would_break_the_build_or_the_node_are_refused() {
        let routes = vec![
            "/metrics".to_string(),
            "/tablet/card".to_string(),
            "/api/v1/vehicles".to_string(),
        ];
        let deps = dependencies("[package]\nname = \"x\"\n[dependencies]\ntokio.workspace = true\nserde = \"1\"\ntokio-util = { workspace = true }\n[dev-dependencies]\ntempfile = \"3\"\n");
        assert_eq!(deps, ["tokio", "serde", "tokio_util", "tempfile"]);
        for bad in [
            "run",
            "person",
            "std",
            "tokio",
            "tokio_util",
            "all",
            "modules",
            "fn",
            "async",
            "loop",
            "Parts",
            "9x",
            "a__b",
            "x_",
            "",
            "sqlite_stat",
            "target",
            "template",
            "metrics",
            "tablet",
            "vehicles",
            &"a".repeat(33),
        ] {
            assert!(refusal(bad, &routes, &deps).is_some(), "{bad:?} accepted");
        }
        for good in ["parts", "charging", "passenger_info", "incidents2"] {
            assert_eq!(refusal(good, &routes, &deps), None, "{good:?} refused");
        }
    }

    /// Scaffolds into a copy of the edge's sources: outside the new folder exactly one line
    /// changes, and the copy registers itself.
    #[test]
    fn scaffold_adds_one_line_outside_its_folder() {
        let real = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let tmp = std::env::temp_dir().join(format!("garasi-xtask-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        copy_tree(&real.join("edge-daemon/src"), &tmp.join("edge-daemon/src"));
        std::fs::copy(
            real.join("edge-daemon/Cargo.toml"),
            tmp.join("edge-daemon/Cargo.toml"),
        )
        .unwrap();
        let before = std::fs::read_to_string(tmp.join("edge-daemon/src/modules/mod.rs")).unwrap();
        let dir = new_module(&tmp, "parts").unwrap();
        let after = std::fs::read_to_string(tmp.join("edge-daemon/src/modules/mod.rs")).unwrap();
        let (b, a): (Vec<&str>, Vec<&str>) = (before.lines().collect(), after.lines().collect());
        assert_eq!(a.len(), b.len() + 1, "one line added");
        let added: Vec<&&str> = a.iter().filter(|l| !b.contains(l)).collect();
        assert_eq!(added, [&"pub mod parts;"]);
        let module = std::fs::read_to_string(dir.join("mod.rs")).unwrap();
        assert!(module.contains("\ninventory::submit! { crate::modules::framework::Registration(|| Box::new(PartsModule)) }"), "{module}");
        assert!(!module.contains("template") && !module.contains("Template"));
        // Nothing else in the copied tree changed.
        let mut files = Vec::new();
        list(&tmp.join("edge-daemon/src"), &mut files);
        for f in files
            .iter()
            .filter(|f| !f.starts_with(&dir) && !f.ends_with("modules/mod.rs"))
        {
            let rel = f.strip_prefix(&tmp).unwrap();
            assert_eq!(
                std::fs::read(f).unwrap(),
                std::fs::read(real.join(rel)).unwrap(),
                "{}",
                rel.display()
            );
        }
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    fn copy_tree(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                copy_tree(&e.path(), &to.join(e.file_name()));
            } else {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }

    fn list(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                list(&p, out);
            } else {
                out.push(p);
            }
        }
    }
}
