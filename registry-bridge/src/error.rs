//! The crate's one error type. Each transport (`eureka`, `consul`) maps it to the status
//! code and body text its real clients expect.

use std::net::SocketAddr;

/// Everything that can go wrong in the built-in registry.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request body or parameter was malformed; the text is what the client sees.
    #[error("{0}")]
    Invalid(String),
    /// The named instance, service or check does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A write on a Consul check that is not a TTL check.
    #[error("CheckID \"{0}\" does not have associated TTL")]
    NotTtlCheck(String),
    /// The instance is owned by the platform and cannot be replaced or removed through a
    /// registry protocol.
    #[error("instance {0} is managed by the Tideway platform")]
    PlatformOwned(String),
    /// A Consul ACL token was missing or wrong for this request.
    #[error("{0}")]
    PermissionDenied(String),
    /// A listener could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why binding failed.
        #[source]
        source: std::io::Error,
    },
    /// A server stopped with an IO error.
    #[error("registry server failed: {0}")]
    Serve(#[source] std::io::Error),
}
