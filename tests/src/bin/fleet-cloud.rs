//! The `garasi-cloud` program, built inside this package so fleet tests can run it as a
//! separate process (`CARGO_BIN_EXE_fleet-cloud`); the code is `garasi_cloud::cli`.

fn main() -> std::process::ExitCode {
    // GARASI_FLEET_CLOUD_OWN_SESSION=1 (the storm bench): a session of its own, as a
    // service runs (Linux's autogroup shares the CPU between sessions first), and a
    // SIGTERM when the process that started it dies, as the terminal's Ctrl-C no longer
    // reaches it: an interrupted bench leaves no cloud behind.
    #[cfg(target_os = "linux")]
    if std::env::var_os("GARASI_FLEET_CLOUD_OWN_SESSION").is_some()
        && !garasi_fleet_tests::own_session()
    {
        return std::process::ExitCode::FAILURE;
    }
    garasi_cloud::cli::main()
}
