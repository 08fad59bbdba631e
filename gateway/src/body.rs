//! The one body type the gateway sends both ways: a streamed hyper body, a small buffer
//! (synthesized answers) or nothing. A response body may carry the request's [`Flight`],
//! so the metrics record the end of the response when the body ends or is dropped.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::metrics::Flight;

#[derive(Debug)]
enum Kind {
    Empty,
    Full(Option<Bytes>),
    Stream(Incoming),
}

/// A streamed or buffered body, never collected.
#[derive(Debug)]
pub(crate) struct GatewayBody {
    kind: Kind,
    flight: Option<Flight>,
}

impl GatewayBody {
    pub(crate) fn empty() -> Self {
        GatewayBody {
            kind: Kind::Empty,
            flight: None,
        }
    }

    pub(crate) fn full(bytes: Bytes) -> Self {
        GatewayBody {
            kind: Kind::Full(Some(bytes)),
            flight: None,
        }
    }

    pub(crate) fn stream(body: Incoming) -> Self {
        GatewayBody {
            kind: Kind::Stream(body),
            flight: None,
        }
    }

    /// Attaches the request's flight, ended with the body.
    pub(crate) fn with_flight(mut self, flight: Flight) -> Self {
        self.flight = Some(flight);
        self
    }
}

impl Body for GatewayBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = match &mut this.kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(data) => Poll::Ready(data.take().map(|b| Ok(Frame::data(b)))),
            Kind::Stream(body) => Pin::new(body).poll_frame(cx),
        };
        if matches!(polled, Poll::Ready(None)) {
            this.flight = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Full(data) => data.is_none(),
            Kind::Stream(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Stream(body) => body.size_hint(),
        }
    }
}
