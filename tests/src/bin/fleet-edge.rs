//! The `garasi-edge` program, built inside this package so fleet tests can run it as a
//! separate process (`CARGO_BIN_EXE_fleet-edge`); the code is `garasi_edge::cli`.

fn main() -> std::process::ExitCode {
    garasi_edge::cli::main()
}
