//! `loadgen`: see `loadgen --help`.

use std::io::IsTerminal;

use clap::Parser;

fn main() {
    // goose logs a WARN line per failed request; loadgen counts failures by cause
    // (`http_errors`) instead, so goose's own lines stay off unless LOADGEN_LOG asks for them.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LOADGEN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,goose=off")),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let cli = loadgen::cli::Cli::parse();
    std::process::exit(loadgen::cmd::main(cli));
}
