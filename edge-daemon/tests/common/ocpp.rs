//! OCPP test helpers: the Python with an outside charge point library, and chargers
//! registered through the CLI.

use std::process::Command;

use super::cli;

/// A Python with `ocpp` and `websockets` (`GARASI_TEST_PYTHON`); None (skipped) outside CI.
pub fn ocpp_python() -> Option<String> {
    let py = std::env::var("GARASI_TEST_PYTHON").ok();
    let ok = py.as_ref().is_some_and(|p| {
        Command::new(p)
            .args(["-c", "import ocpp.v16, websockets"])
            .status()
            .is_ok_and(|s| s.success())
    });
    if !ok {
        if std::env::var_os("CI").is_some() {
            panic!(
                "GARASI_TEST_PYTHON with ocpp and websockets is required in CI (.ci/run makes it)"
            );
        }
        eprintln!("SKIPPED: set GARASI_TEST_PYTHON to a python with ocpp==2.1.0 and websockets (run .ci/run)");
        return None;
    }
    py
}

/// Registers a charger with the CLI; returns the password it printed once.
pub fn add_charger(dir: &std::path::Path, id: &str, connectors: &str) -> String {
    let out = cli(&[
        "charging",
        "add",
        "--data-dir",
        dir.to_str().unwrap(),
        "--id",
        id,
        "--connectors",
        connectors,
        "--max-kw",
        "150",
    ]);
    assert!(
        out.status.success(),
        "charging add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("Password"))
        .expect("password line");
    line.rsplit(' ').next().unwrap().trim().to_string()
}
