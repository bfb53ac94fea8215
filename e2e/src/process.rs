//! Child processes that cannot outlive the test process. Each one runs under a small bash
//! watchdog that stops it when the test process is gone, whatever way it ended (a shared
//! control plane lives in a static, which Rust never drops). Every process carries the
//! state directory in its command line, named `multus-e2e-<owner pid>-...`, so leftovers
//! can be found in /proc.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::E2eError;
use crate::error::io;

/// Marker every state directory name starts with.
pub const MARKER: &str = "multus-e2e-";

// $1: the owner pid; the rest: the command. TERM to the watchdog stops the child with 10 s
// of grace; when the owner is gone nobody waits for a graceful stop, so 2 s are enough.
const WATCHDOG: &str = r#"
owner=$1; shift
"$@" &
child=$!
stop() {
  kill -TERM "$child" 2>/dev/null
  for _ in $(seq 1 "$1"); do kill -0 "$child" 2>/dev/null || exit 0; sleep 0.2; done
  kill -KILL "$child" 2>/dev/null
  exit 0
}
trap 'stop 50' TERM INT
while kill -0 "$owner" 2>/dev/null; do
  if ! kill -0 "$child" 2>/dev/null; then wait "$child"; exit $?; fi
  sleep 0.5 & wait $!
done
stop 10
"#;

/// A supervised child process.
#[derive(Debug)]
pub struct Supervised {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl Supervised {
    /// Starts `program args...` under the watchdog, output to `log`.
    pub fn start(
        name: &str,
        program: &Path,
        args: &[String],
        log: &Path,
    ) -> Result<Supervised, E2eError> {
        let out = File::create(log).map_err(io(log.display()))?;
        let err = out.try_clone().map_err(io(log.display()))?;
        let child = Command::new("bash")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("multus-e2e-watchdog")
            .arg(std::process::id().to_string())
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(io(format_args!("cannot start {name}")))?;
        Ok(Supervised {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        })
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The last lines of its log, for error messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log, 20)
    }

    /// Asks the watchdog to stop the process and waits for both.
    pub fn stop(&mut self) {
        if self.running() {
            let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(15);
            while self.running() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `lines` lines of the log file at `path`; empty when it cannot be read.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The stdout of a finished command, decoded lossily; panics unless it exited 0, naming
/// `what` and showing its stdout and stderr. For tests: any other exit fails them.
pub fn expect_success(out: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Processes started by an e2e harness whose owner (the test process) is gone.
pub fn leftovers() -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        let Some(owner) = owner_of(&cmdline) else {
            continue;
        };
        let owner_alive = Path::new(&format!("/proc/{owner}")).exists();
        if !owner_alive {
            found.push(format!("pid {pid}: {}", cmdline.trim()));
        }
    }
    found
}

/// State directories (`<tmp>/multus-e2e-<pid>-...`) whose owner process is gone.
pub fn stale_state_dirs() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.starts_with(MARKER) && owner_gone(&name)
        })
        .map(|entry| entry.path())
        .collect()
}

/// Removes the state directories [`stale_state_dirs`] lists.
pub fn remove_stale_state_dirs() {
    for dir in stale_state_dirs() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Whether the owner named by a `multus-e2e-<pid>-` marker in `tag` has exited.
pub(crate) fn owner_gone(tag: &str) -> bool {
    owner_of(tag).is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
}

/// The owner pid encoded in a `multus-e2e-<pid>-` marker in a command line.
pub(crate) fn owner_of(cmdline: &str) -> Option<i32> {
    let rest = &cmdline[cmdline.find(MARKER)? + MARKER.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// A memory figure of a process from /proc (`VmRSS:`, `VmHWM:`), in KiB; 0 when unknown.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// CPU time (user + system) a process has used, in seconds, from /proc; 0 when unknown.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces; the fields after its closing parenthesis start
    // with the state (field 3), so utime and stime (fields 14 and 15) are the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / clock_ticks_per_second()
}

/// `sysconf(_SC_CLK_TCK)`, read once through `getconf`; 100 (Linux's value) when unknown.
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|t: &f64| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// Polls `check` every 100 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::owner_of;

    #[test]
    fn this_process_has_used_some_cpu_time_and_a_missing_one_none() {
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        assert!(x > 0);
        assert!(super::cpu_seconds(std::process::id()) > 0.0);
        assert_eq!(super::cpu_seconds(u32::MAX), 0.0);
    }

    #[test]
    fn the_owner_pid_is_read_from_the_marker() {
        assert_eq!(
            owner_of("etcd --data-dir /tmp/multus-e2e-4242-1/etcd"),
            Some(4242)
        );
        assert_eq!(owner_of("etcd --data-dir /tmp/other"), None);
    }
}
