//! The fleet bench's sizes from the environment (`NODES`, `IDLE_SECONDS`), each size run in
//! a process of its own: a clean memory peak, and nothing carried over from a smaller size.

use std::process::ExitCode;
use std::time::Instant;

use crate::E2eError;
use crate::error::io;

/// The node counts to run, ascending, and the idle window of the largest, in seconds.
pub struct Sizes {
    pub nodes: Vec<usize>,
    pub idle: u64,
}

impl Sizes {
    /// `NODES` (comma-separated, `100,500,1000` when unset) and `IDLE_SECONDS` (300).
    pub fn from_env() -> Result<Sizes, E2eError> {
        let var =
            |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
        let mut nodes: Vec<usize> = var("NODES", "100,500,1000")
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .filter(|n| *n > 0)
            .collect();
        nodes.sort_unstable();
        nodes.dedup();
        if nodes.is_empty() {
            return Err(E2eError::Io("NODES names no size".into()));
        }
        let idle = var("IDLE_SECONDS", "300").parse().unwrap_or(300);
        Ok(Sizes { nodes, idle })
    }

    /// Runs `one(nodes, idle)` on a runtime of its own when there is one size; otherwise
    /// this program once per size, ascending (only the largest with the idle window),
    /// stopping at the first that fails.
    pub fn run(&self, one: impl AsyncFnOnce(usize, u64)) -> Result<ExitCode, E2eError> {
        let began = Instant::now();
        let code = match self.nodes.as_slice() {
            [n] => {
                let runtime = tokio::runtime::Runtime::new().map_err(io("runtime"))?;
                runtime.block_on(one(*n, self.idle));
                runtime.shutdown_background();
                ExitCode::SUCCESS
            }
            several => self.each_in_a_process(several)?,
        };
        let names: Vec<String> = self.nodes.iter().map(|n| n.to_string()).collect();
        eprintln!(
            "fleet: NODES={} done in {:.0} s",
            names.join(","),
            began.elapsed().as_secs_f64()
        );
        Ok(code)
    }

    fn each_in_a_process(&self, several: &[usize]) -> Result<ExitCode, E2eError> {
        let exe = std::env::current_exe().map_err(io("this benchmark's path"))?;
        for (i, n) in several.iter().enumerate() {
            let last = i + 1 == several.len();
            let status = std::process::Command::new(&exe)
                .env("NODES", n.to_string())
                .env("IDLE_SECONDS", if last { self.idle } else { 0 }.to_string())
                .status()
                .map_err(io(format!("run the {n}-node size")))?;
            if !status.success() {
                eprintln!("fleet: the {n}-node run failed ({status}); larger sizes skipped");
                return Ok(ExitCode::FAILURE);
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
