//! multus-operator: parses the command line and hands it to the library.
#![forbid(unsafe_code)]

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = multus_operator::cli::Cli::parse();
    match multus_operator::cli::run(cli, &mut std::io::stdout(), &mut std::io::stderr()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
