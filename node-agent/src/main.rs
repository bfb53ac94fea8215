use clap::Parser;
use multus_node_agent::cli::{Cli, Command, RunArgs};
use std::io::Read;
use std::process::ExitCode;

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Check { file } => check(&file),
        Command::Run(args) => run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check(file: &std::path::Path) -> Result<(), String> {
    let text = if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map(|_| text)
    } else {
        std::fs::read_to_string(file)
    }
    .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let report =
        multus_node_agent::check::check_configmap_yaml(&text).map_err(|e| e.to_string())?;
    print!("{report}");
    Ok(())
}

fn run(args: RunArgs) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let result = runtime.block_on(multus_node_agent::cli::serve(args));
    // Whatever is still running (the watch, idle connections) is dropped, never waited on.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}
