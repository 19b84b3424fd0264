//! Open files: the soft limit is raised to the hard one at start, and the proxy's client
//! connections are capped below it so the admin listener, the API watch, the manifest scan and
//! the upstream connections always have descriptors left.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Descriptors kept for everything that is not a proxied connection.
pub const FD_RESERVE: u64 = 256;

/// Raise `RLIMIT_NOFILE` to its hard limit and return the client-connection cap it allows: half
/// of what is left after [`FD_RESERVE`] (each client connection may hold one upstream one).
pub fn connection_fd_cap() -> usize {
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open files limit; no connection cap from it");
            return usize::MAX;
        }
    };
    let soft = if hard > soft {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(e) => {
                tracing::warn!(error = %e, soft, hard, "cannot raise the open files limit");
                soft
            }
        }
    } else {
        soft
    };
    let cap = usize::try_from(soft.saturating_sub(FD_RESERVE) / 2)
        .unwrap_or(usize::MAX)
        .max(1);
    tracing::info!(open_files = soft, connection_cap = cap, "open files limit");
    cap
}
