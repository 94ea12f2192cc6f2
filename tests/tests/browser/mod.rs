//! Headless Debian Chromium for the tests (never a downloaded browser): chromedriver on
//! a free port, killed when the session is dropped.

use std::process::{Command, Stdio};
use std::time::Duration;

use thirtyfour::prelude::*;

/// Whether `tool` is on PATH (in CI it must be: `.ci/run` installs it).
pub fn have(tool: &str) -> bool {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "{tool} is required in CI");
        eprintln!("SKIPPED: {tool} not installed");
    }
    ok
}

/// A child process killed and reaped when dropped.
struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A browser session; chromedriver goes with it.
pub struct Browser {
    pub driver: WebDriver,
    _chromedriver: Kill,
}

/// Starts chromedriver and a headless Chromium session; None (skipped) where either is
/// not installed outside CI.
pub async fn start() -> Option<Browser> {
    if !have("chromium") || !have("chromedriver") {
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let chromedriver = Kill(
        Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
    );
    let mut caps = DesiredCapabilities::chrome();
    caps.set_binary("/usr/bin/chromium").expect("capability");
    for arg in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ] {
        caps.add_arg(arg).expect("capability");
    }
    for _ in 0..100 {
        if let Ok(driver) = WebDriver::new(format!("http://127.0.0.1:{port}"), caps.clone()).await {
            return Some(Browser {
                driver,
                _chromedriver: chromedriver,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not start");
}
