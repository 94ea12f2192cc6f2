//! `garasi-cloud`: the fleet's central service (the command line is `garasi_cloud::cli`).

fn main() -> std::process::ExitCode {
    garasi_cloud::cli::main()
}
