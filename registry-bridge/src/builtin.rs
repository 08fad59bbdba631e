//! The built-in registry service: both listeners over one [`Registry`], plus its upkeep
//! (lease eviction, TTL expiry, HTTP/TCP checks), until shutdown.

use std::collections::BTreeMap;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::check::Upkeep;
use crate::error::Error;
use crate::model::Registry;

/// How often upkeep runs; bounds how late a TTL expiry or lease eviction is seen.
const UPKEEP_PERIOD: Duration = Duration::from_millis(100);
/// How long servers may take to finish in-flight requests after shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Distinct request keys kept in [`RequestStats`]; the rest count under `other`.
const STATS_MAX_KEYS: usize = 4096;

/// Requests served, by `"<METHOD> <path>"` (query excluded). For tests and diagnostics.
#[derive(Debug, Default)]
pub struct RequestStats {
    counts: Mutex<BTreeMap<String, u64>>,
}

impl RequestStats {
    fn record(&self, key: String) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let key = if counts.len() >= STATS_MAX_KEYS && !counts.contains_key(&key) {
            "other".to_owned()
        } else {
            key
        };
        *counts.entry(key).or_default() += 1;
    }

    /// Requests for exactly this method and path.
    pub fn count(&self, method: &str, path: &str) -> u64 {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&format!("{method} {path}"))
            .copied()
            .unwrap_or(0)
    }

    /// Every counter.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

async fn count_requests(
    State(stats): State<Arc<RequestStats>>,
    request: Request,
    next: Next,
) -> Response {
    stats.record(format!("{} {}", request.method(), request.uri().path()));
    next.run(request).await
}

/// Both registry servers, bound and ready to run.
pub struct BuiltinRegistry {
    registry: Arc<Registry>,
    eureka: TcpListener,
    consul: TcpListener,
    eureka_addr: SocketAddr,
    consul_addr: SocketAddr,
    stats: Arc<RequestStats>,
}

async fn bind_one(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), Error> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| Error::Bind { addr, source })?;
    Ok((listener, local))
}

impl BuiltinRegistry {
    /// Binds both listeners (port 0 allowed).
    pub async fn bind(
        registry: Arc<Registry>,
        eureka_addr: SocketAddr,
        consul_addr: SocketAddr,
    ) -> Result<Self, Error> {
        let (eureka, eureka_addr) = bind_one(eureka_addr).await?;
        let (consul, consul_addr) = bind_one(consul_addr).await?;
        Ok(Self {
            registry,
            eureka,
            consul,
            eureka_addr,
            consul_addr,
            stats: Arc::default(),
        })
    }

    /// Where the Eureka API listens.
    pub fn eureka_addr(&self) -> SocketAddr {
        self.eureka_addr
    }

    /// Where the Consul API listens.
    pub fn consul_addr(&self) -> SocketAddr {
        self.consul_addr
    }

    /// The registry served.
    pub fn registry(&self) -> Arc<Registry> {
        Arc::clone(&self.registry)
    }

    /// Request counters of both servers (Eureka paths start with `/eureka`).
    pub fn stats(&self) -> Arc<RequestStats> {
        Arc::clone(&self.stats)
    }

    /// Serves both APIs until `shutdown`; also runs lease eviction and Consul health checks.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        // A child token: a failing server stops its siblings without cancelling the caller.
        let shutdown = shutdown.child_token();
        let counted = |router: Router| {
            router.layer(middleware::from_fn_with_state(
                Arc::clone(&self.stats),
                count_requests,
            ))
        };
        let eureka = counted(crate::eureka::router(Arc::clone(&self.registry)));
        let consul = counted(crate::consul::router(
            Arc::clone(&self.registry),
            shutdown.clone(),
        ));
        tracing::info!(eureka = %self.eureka_addr, consul = %self.consul_addr, "RegistryServing");

        let upkeep = tokio::spawn(
            Upkeep::new(Arc::clone(&self.registry)).run(UPKEEP_PERIOD, shutdown.clone()),
        );
        let eureka_server = tokio::spawn(
            axum::serve(self.eureka, eureka)
                .with_graceful_shutdown(shutdown.clone().cancelled_owned())
                .into_future(),
        );
        let consul_server = tokio::spawn(
            axum::serve(self.consul, consul)
                .with_graceful_shutdown(shutdown.clone().cancelled_owned())
                .into_future(),
        );
        let servers = async {
            let (e, c) = tokio::join!(eureka_server, consul_server);
            for result in [e, c] {
                match result {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => return Err(Error::Serve(error)),
                    Err(join) => return Err(Error::Serve(std::io::Error::other(join))),
                }
            }
            Ok(())
        };
        let drained = tokio::select! {
            result = servers => result,
            () = async {
                shutdown.cancelled().await;
                tokio::time::sleep(DRAIN_TIMEOUT).await;
            } => {
                tracing::warn!("RegistryDrainTimedOut");
                Ok(())
            }
        };
        shutdown.cancel();
        if let Err(error) = upkeep.await {
            tracing::warn!(%error, "RegistryUpkeepJoinError");
        }
        drained
    }
}
