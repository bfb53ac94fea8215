//! Command line of the node agent.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// multus-node-agent: writes this node's Multus files from its bundle ConfigMap.
#[derive(Debug, Parser)]
#[command(name = "multus-node-agent", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a bundle ConfigMap offline (YAML, as `kubectl get cm multus-node-<node> -o yaml`
    /// prints it): format version, content hashes and every CNI config. Exits non-zero when
    /// the agent would refuse the bundle.
    Check {
        /// The ConfigMap YAML file; `-` reads stdin.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
    },
}
