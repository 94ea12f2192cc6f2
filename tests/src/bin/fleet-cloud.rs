//! The `garasi-cloud` program, built inside this package so fleet tests can run it as a
//! separate process (`CARGO_BIN_EXE_fleet-cloud`); the code is `garasi_cloud::cli`.

fn main() -> std::process::ExitCode {
    // GARASI_FLEET_CLOUD_OWN_SESSION=1 (the storm bench): a session of its own, as a
    // service runs (Linux's autogroup shares the CPU between sessions first), and a
    // SIGTERM when the process that started it dies, as the terminal's Ctrl-C no longer
    // reaches it: an interrupted bench leaves no cloud behind.
    #[cfg(target_os = "linux")]
    if std::env::var_os("GARASI_FLEET_CLOUD_OWN_SESSION").is_some() && !own_session() {
        return std::process::ExitCode::FAILURE;
    }
    garasi_cloud::cli::main()
}

/// False if the bench is already gone (died before the parent-death signal was set).
#[cfg(target_os = "linux")]
fn own_session() -> bool {
    if let Err(e) = rustix::process::setsid() {
        eprintln!("fleet-cloud: no session of its own: {e}");
    }
    let term = Some(rustix::process::Signal::TERM);
    if let Err(e) = rustix::process::set_parent_process_death_signal(term) {
        eprintln!("fleet-cloud: no parent-death signal: {e}");
    }
    rustix::process::getppid().is_some_and(|p| p != rustix::process::Pid::INIT)
}
