//! Bearer-token authentication for `/api/v1`. Principals are cached briefly so a hot read
//! path does not hit the database for every request; revocation in this process clears the
//! cache at once, and other processes sharing the database see it within the cache TTL.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

use super::error::ApiError;
use super::AppState;
use crate::domain::token::{secret_hash, Principal};

const CACHE_TTL: Duration = Duration::from_secs(5);
const CACHE_MAX: usize = 10_000;

/// Recently verified tokens, keyed by secret hash.
#[derive(Default)]
pub struct TokenCache {
    entries: RwLock<HashMap<String, (Principal, Instant)>>,
}

impl TokenCache {
    fn get(&self, hash: &str) -> Option<Principal> {
        let entries = self.entries.read().ok()?;
        let (principal, at) = entries.get(hash)?;
        (at.elapsed() < CACHE_TTL).then(|| principal.clone())
    }

    fn put(&self, hash: String, principal: Principal) {
        if let Ok(mut entries) = self.entries.write() {
            if entries.len() >= CACHE_MAX {
                entries.clear();
            }
            entries.insert(hash, (principal, Instant::now()));
        }
    }

    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.write() {
            entries.clear();
        }
    }
}

/// Resolves the bearer token into a [`Principal`] request extension, or answers 401.
pub async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let secret = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let Some(secret) = secret else {
        return ApiError::Unauthenticated.into_response();
    };
    let hash = secret_hash(secret);
    let principal = match state.tokens.get(&hash) {
        Some(p) => p,
        None => match state.store.principal_by_hash(&hash).await {
            Ok(Some(p)) => {
                state.tokens.put(hash, p.clone());
                p
            }
            Ok(None) => return ApiError::Unauthenticated.into_response(),
            Err(e) => return ApiError::from(e).into_response(),
        },
    };
    request.extensions_mut().insert(principal);
    next.run(request).await
}
