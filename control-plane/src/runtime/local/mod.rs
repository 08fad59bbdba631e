//! The local process runtime: instances run as processes on this host, each under its own
//! shim, with output capture, restarts with backoff, health probes, cgroup limits and
//! adoption of running instances after a control-plane restart.
//!
//! Layout of `<root>` (see [`LocalConfig::root`]):
//!
//! ```text
//! <root>/driver.lock                 one driver per root
//! <root>/instances/<id>/instance.json  the driver's record of the instance
//!                       spec.json      what the shim runs
//!                       app.pid        the app's pid and start time (from the shim)
//!                       output.log*    captured output, JSON lines, rotated
//!                       exit.json      how the last run ended (from the shim)
//! ```
//!
//! Files by concern: `driver` (the `RuntimeDriver` and its supervisor loop), `supervise`
//! (pure decisions), `shim` (the per-instance process), `health`, `cgroup`, `logs`, `adopt`,
//! `sample`, and the shared file formats in `layout` and `record`.

mod adopt;
mod cgroup;
mod driver;
mod health;
mod layout;
mod logs;
mod process;
mod record;
mod sample;
pub mod shim;
mod supervise;

pub use driver::{LocalConfig, LocalDriver};
pub use sample::{ResourceSample, SAMPLES_KEPT};
