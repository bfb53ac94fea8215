//! An interrupted fleet run (Ctrl-C, SIGTERM) kills the operator process before it exits:
//! `exit` runs no destructors, so the child's kill-on-drop would not.

use std::sync::atomic::{AtomicU32, Ordering};
use tokio::signal::unix::{SignalKind, signal};

use crate::error::io;

/// The operator's pid, 0 when none runs.
static OPERATOR_PID: AtomicU32 = AtomicU32::new(0);

/// Starts the task that waits for Ctrl-C or SIGTERM, kills the operator then and exits
/// with 130.
pub fn kill_operator_on_interrupt() -> Result<(), crate::E2eError> {
    let mut term = signal(SignalKind::terminate()).map_err(io("SIGTERM handler"))?;
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        let pid = OPERATOR_PID.load(Ordering::SeqCst);
        if pid != 0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::process::exit(130);
    });
    Ok(())
}

/// Records the running operator's pid (0: none runs any more).
pub fn operator_pid(pid: u32) {
    OPERATOR_PID.store(pid, Ordering::SeqCst);
}
