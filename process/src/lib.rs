//! Start-up and shutdown shared by the operator and agent binaries: the log format and
//! subscriber, the stop request raised by SIGTERM or Ctrl-C, and the admin HTTP server.
//! Each binary keeps its own routes, state and error enum.
#![forbid(unsafe_code)]

pub mod admin;
pub mod logging;
pub mod shutdown;

pub use admin::{ListenError, serve_admin};
pub use logging::{LogFormat, init_logging};
pub use shutdown::{Shutdown, Trigger};
