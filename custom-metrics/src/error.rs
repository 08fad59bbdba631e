//! The crate's one error type: what can go wrong starting or running the receiver. Bad
//! input never becomes an [`Error`]; it is dropped, counted and reported to the sender in
//! the export response.

use std::net::SocketAddr;

/// Failure to start or run the OTLP receiver.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listen address could not be bound.
    #[error("cannot bind the OTLP metrics receiver on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The bound listener has no usable local address.
    #[error("the OTLP metrics receiver listener has no usable address")]
    Listener(#[source] std::io::Error),
    /// The gRPC server stopped with an error.
    #[error("the OTLP metrics receiver failed")]
    Serve(#[source] tonic::transport::Error),
}
