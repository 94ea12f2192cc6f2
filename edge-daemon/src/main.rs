//! `garasi-edge`: the depot node (the command line is `garasi_edge::cli`).

fn main() -> std::process::ExitCode {
    garasi_edge::cli::main()
}
