use clap::Parser;
use multus_node_agent::cli::{Cli, Command};
use std::io::Read;
use std::process::ExitCode;

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Check { file } => {
            let text = if file.as_os_str() == "-" {
                let mut text = String::new();
                std::io::stdin().read_to_string(&mut text).map(|_| text)
            } else {
                std::fs::read_to_string(&file)
            };
            let result = text
                .map_err(|e| format!("cannot read {}: {e}", file.display()))
                .and_then(|t| {
                    multus_node_agent::check::check_configmap_yaml(&t).map_err(|e| e.to_string())
                });
            match result {
                Ok(report) => {
                    print!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
