//! Query parameters shared by list endpoints.

use serde::Deserialize;
use utoipa::IntoParams;

use super::error::ApiError;
use crate::store::PageRequest;

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 500;

/// `?limit=&cursor=` of every list endpoint.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size, 1–500 (default 100).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

pub fn check_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request(
            "invalid_query",
            format!("limit must be 1–{MAX_LIMIT}, got {n}"),
        )),
    }
}

impl ListParams {
    pub fn page(self) -> Result<PageRequest, ApiError> {
        let limit = check_limit(self.limit)?;
        if self.cursor.as_ref().is_some_and(|c| c.len() > 256) {
            return Err(ApiError::bad_request(
                "invalid_cursor",
                "cursor is too long",
            ));
        }
        Ok(PageRequest {
            limit,
            cursor: self.cursor,
        })
    }
}

/// `?namespace=&app=&type=&after=&limit=` of the event log.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    pub namespace: Option<String>,
    pub app: Option<String>,
    /// Event type, e.g. `AppCreated`.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub kind: Option<String>,
    /// Only events with a larger id (the `next_cursor` of the previous page).
    pub after: Option<i64>,
    /// Page size, 1–500 (default 100).
    pub limit: Option<u32>,
}
