//! The one place the gRPC API chooses status codes: every [`ApiError`] becomes a `Status`
//! whose code follows the REST status (400/422 → `InvalidArgument`, 401 → `Unauthenticated`,
//! 403 → `PermissionDenied`, 404 → `NotFound`, 409 → `AlreadyExists`, `Aborted` for
//! `write_contention` or else `FailedPrecondition`, 412 → `FailedPrecondition`,
//! 413 → `ResourceExhausted`, 503 → `Unavailable`, 500 → `Internal`).
//!
//! The message is the REST `message`. The stable code travels in the status details, as the
//! `reason` of a `google.rpc.ErrorInfo` (domain [`ERROR_DOMAIN`]) whose metadata holds the
//! REST `details`; a failure that names a field also carries a `google.rpc.BadRequest`
//! violation for it, and `Unavailable` a `RetryInfo` of 1 s (REST's `Retry-After: 1`).
//! `Internal` never carries causes; they are logged here, once.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

use crate::api::error::ApiError;

/// `ErrorInfo.domain` of every Tideway error.
pub const ERROR_DOMAIN: &str = "tideway.dev";

/// The gRPC code of an API error.
pub fn code_of(e: &ApiError) -> Code {
    match e {
        ApiError::BadRequest { .. } | ApiError::Validation(_) | ApiError::UnsupportedMediaType => {
            Code::InvalidArgument
        }
        ApiError::Unauthenticated => Code::Unauthenticated,
        ApiError::Forbidden(_) => Code::PermissionDenied,
        ApiError::NotFound { .. } => Code::NotFound,
        ApiError::AlreadyExists { .. } => Code::AlreadyExists,
        // Lost a race with another writer: retrying the same call may succeed.
        ApiError::Conflict {
            code: "write_contention",
            ..
        } => Code::Aborted,
        ApiError::Conflict { .. } | ApiError::PreconditionFailed { .. } => Code::FailedPrecondition,
        ApiError::PayloadTooLarge { .. } => Code::ResourceExhausted,
        ApiError::MethodNotAllowed => Code::Unimplemented,
        ApiError::Unavailable(_) => Code::Unavailable,
        ApiError::Internal(_) => Code::Internal,
    }
}

/// The REST body's `details` of an error.
fn details_of(e: &ApiError) -> Value {
    match e {
        ApiError::BadRequest { details, .. }
        | ApiError::NotFound { details, .. }
        | ApiError::AlreadyExists { details, .. } => details.clone(),
        ApiError::PreconditionFailed { expected, current } => {
            json!({"expected": expected, "current": current})
        }
        ApiError::Validation(invalid) => json!({"field": invalid.field, "reason": invalid.reason}),
        _ => Value::Null,
    }
}

/// The status for an API error.
pub fn to_status(e: ApiError) -> Status {
    to_status_with(e, &[])
}

/// The status for an API error, with extra `ErrorInfo` metadata (e.g. the version a deploy
/// stored before its release was refused).
pub fn to_status_with(e: ApiError, extra: &[(&str, String)]) -> Status {
    let code = code_of(&e);
    if code == Code::Internal {
        let mut chain = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            chain.push_str(": ");
            chain.push_str(&cause.to_string());
            source = cause.source();
        }
        tracing::error!(error = %chain, "GrpcInternalError");
    }
    let mut metadata: HashMap<String, String> = HashMap::new();
    if let Value::Object(fields) = details_of(&e) {
        for (key, value) in fields {
            match value {
                Value::Null => {}
                Value::String(s) => {
                    metadata.insert(key, s);
                }
                other => {
                    metadata.insert(key, other.to_string());
                }
            }
        }
    }
    for (key, value) in extra {
        metadata.insert((*key).to_owned(), value.clone());
    }
    let message = e.to_string();
    let mut details = ErrorDetails::new();
    if let Some(field) = metadata.get("field") {
        let reason = metadata.get("reason").unwrap_or(&message);
        details.add_bad_request_violation(field.clone(), reason.clone());
    }
    if code == Code::Unavailable {
        details.set_retry_info(Some(Duration::from_secs(1)));
    }
    details.set_error_info(e.code(), ERROR_DOMAIN, metadata);
    Status::with_error_details(code, message, details)
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        to_status(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Invalid;
    use crate::store::StoreError;

    fn conflict(code: &'static str) -> ApiError {
        ApiError::Conflict {
            code,
            message: "no".into(),
        }
    }

    #[test]
    fn codes_follow_the_rest_statuses() {
        let table: Vec<(ApiError, Code, &str)> = vec![
            (
                ApiError::bad_request("invalid_name", "bad"),
                Code::InvalidArgument,
                "invalid_name",
            ),
            (
                ApiError::Unauthenticated,
                Code::Unauthenticated,
                "unauthenticated",
            ),
            (
                ApiError::Forbidden("no".into()),
                Code::PermissionDenied,
                "forbidden",
            ),
            (ApiError::not_found("gone"), Code::NotFound, "not_found"),
            (
                StoreError::AlreadyExists {
                    kind: "app",
                    name: "default/shop".into(),
                }
                .into(),
                Code::AlreadyExists,
                "already_exists",
            ),
            (
                conflict("release_in_progress"),
                Code::FailedPrecondition,
                "release_in_progress",
            ),
            (
                conflict("write_contention"),
                Code::Aborted,
                "write_contention",
            ),
            (
                ApiError::PreconditionFailed {
                    expected: 1,
                    current: 2,
                },
                Code::FailedPrecondition,
                "precondition_failed",
            ),
            (
                ApiError::PayloadTooLarge {
                    code: "artifact_too_large",
                    message: "big".into(),
                },
                Code::ResourceExhausted,
                "artifact_too_large",
            ),
            (
                ApiError::Validation(Invalid::new("strategy.steps", "bad")),
                Code::InvalidArgument,
                "validation_failed",
            ),
            (
                ApiError::Unavailable("down".into()),
                Code::Unavailable,
                "unavailable",
            ),
            (
                ApiError::Internal("secret cause".into()),
                Code::Internal,
                "internal",
            ),
        ];
        for (error, code, reason) in table {
            let status = to_status(error);
            assert_eq!(status.code(), code, "{status:?}");
            let details = status.get_error_details();
            let info = details.error_info().expect("error info");
            assert_eq!(
                (info.reason.as_str(), info.domain.as_str()),
                (reason, ERROR_DOMAIN)
            );
            assert!(!status.message().contains("secret"), "{status:?}");
        }
    }

    #[test]
    fn validation_names_the_field_twice() {
        let status = to_status_with(
            ApiError::Validation(Invalid::new("strategy.steps[0].set_weight", "150 > 100")),
            &[("version", "3".into())],
        );
        assert_eq!(status.message(), "strategy.steps[0].set_weight: 150 > 100");
        let details = status.get_error_details();
        let info = details.error_info().unwrap();
        assert_eq!(info.metadata["field"], "strategy.steps[0].set_weight");
        assert_eq!(info.metadata["version"], "3");
        let violation = &details.bad_request().unwrap().field_violations[0];
        assert_eq!(violation.field, "strategy.steps[0].set_weight");
        assert_eq!(violation.description, "150 > 100");
    }

    #[test]
    fn not_found_carries_the_kind() {
        let status = to_status(
            StoreError::NotFound {
                kind: "app",
                name: "default/nope".into(),
            }
            .into(),
        );
        let details = status.get_error_details();
        let info = details.error_info().unwrap();
        assert_eq!(info.metadata["kind"], "app");
        assert_eq!(info.metadata["name"], "default/nope");
        assert!(details.bad_request().is_none());
    }
}
