//! The `garasi-cloud` program, built inside this package so fleet tests can run it as a
//! separate process (`CARGO_BIN_EXE_fleet-cloud`); the code is `garasi_cloud::cli`.

fn main() -> std::process::ExitCode {
    garasi_cloud::cli::main()
}
