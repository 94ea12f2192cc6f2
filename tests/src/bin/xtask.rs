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

fn valid(name: &str) -> bool {
    let mut c = name.chars();
    c.next().is_some_and(|f| f.is_ascii_lowercase())
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.ends_with('_')
        && !matches!(
            name,
            "template"
                | "framework"
                | "mod"
                | "self"
                | "super"
                | "crate"
                | "type"
                | "match"
                | "move"
                | "static"
        )
}

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
    if !valid(name) {
        return Err(format!("{name:?} is not a module name: use lowercase letters, digits and '_', starting with a letter"));
    }
    let modules = root.join("edge-daemon/src/modules");
    let dir = modules.join(name);
    if dir.exists() {
        return Err(format!("{} already exists", dir.display()));
    }
    let registry = modules.join("mod.rs");
    let text =
        std::fs::read_to_string(&registry).map_err(|e| format!("{}: {e}", registry.display()))?;
    // The one registration line goes at the end of the `modules! { ... }` list.
    let start = text
        .find("modules! {\n")
        .ok_or("modules/mod.rs has no `modules! {` list")?;
    let end = start
        + text[start..]
            .find("\n}\n")
            .ok_or("the `modules!` list is not closed")?;
    let line = format!("\n    {name} => {}Module,", camel(name));
    let updated = format!("{}{line}{}", &text[..end], &text[end..]);
    copy_renamed(&modules.join("template"), &dir, name)
        .map_err(|e| format!("copying the template: {e}"))?;
    std::fs::write(&registry, updated).map_err(|e| format!("{}: {e}", registry.display()))?;
    Ok(dir)
}
