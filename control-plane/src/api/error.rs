//! The API's one error type and its single mapping to an HTTP status and a stable code.
//! 5xx bodies never carry causes; the cause chain rides along as a response extension for
//! the telemetry layer to log once.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tideway_api_types::{ErrorBody, ErrorInfo};

use crate::domain::name::InvalidName;
use crate::domain::token::{role_str, Denied};
use crate::domain::Invalid;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed: bad JSON, unknown fields, bad path or query.
    #[error("{message}")]
    BadRequest {
        code: &'static str,
        message: String,
        details: Value,
    },
    #[error("a valid bearer token is required")]
    Unauthenticated,
    #[error("{0}")]
    Forbidden(String),
    #[error("{message}")]
    NotFound { message: String, details: Value },
    #[error("{message}")]
    AlreadyExists { message: String, details: Value },
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("If-Match generation {expected} is stale; the current generation is {current}")]
    PreconditionFailed { expected: i64, current: i64 },
    #[error("{message}")]
    PayloadTooLarge { code: &'static str, message: String },
    #[error("the request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("{0}")]
    Validation(Invalid),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The cause chain of a 5xx, for the telemetry layer to log.
#[derive(Debug, Clone)]
pub struct ErrorCause(pub String);

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
            details: Value::Null,
        }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        ApiError::NotFound {
            message: what.into(),
            details: Value::Null,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::AlreadyExists { .. } | ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. }
            | ApiError::Conflict { code, .. }
            | ApiError::PayloadTooLarge { code, .. } => code,
            ApiError::Unauthenticated => "unauthenticated",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound { .. } => "not_found",
            ApiError::AlreadyExists { .. } => "already_exists",
            ApiError::PreconditionFailed { .. } => "precondition_failed",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::Validation(_) => "validation_failed",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    fn details(&self) -> Value {
        match self {
            ApiError::BadRequest { details, .. }
            | ApiError::NotFound { details, .. }
            | ApiError::AlreadyExists { details, .. } => details.clone(),
            ApiError::PreconditionFailed { expected, current } => {
                json!({"expected": expected, "current": current})
            }
            ApiError::Validation(invalid) => {
                json!({"field": invalid.field, "reason": invalid.reason})
            }
            _ => Value::Null,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            error: ErrorInfo {
                code: self.code().to_owned(),
                message: self.to_string(),
                details: self.details(),
            },
        };
        let mut response = (status, Json(body)).into_response();
        if matches!(self, ApiError::Unauthenticated) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if matches!(self, ApiError::Unavailable(_)) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if status.is_server_error() {
            let mut chain = self.to_string();
            let mut source = std::error::Error::source(&self);
            while let Some(cause) = source {
                chain.push_str(": ");
                chain.push_str(&cause.to_string());
                source = cause.source();
            }
            response.extensions_mut().insert(ErrorCause(chain));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { kind, ref name } => ApiError::NotFound {
                message: e.to_string(),
                details: json!({"kind": kind, "name": name}),
            },
            StoreError::AlreadyExists { kind, ref name } => ApiError::AlreadyExists {
                message: e.to_string(),
                details: json!({"kind": kind, "name": name}),
            },
            StoreError::PreconditionFailed { expected, current } => {
                ApiError::PreconditionFailed { expected, current }
            }
            StoreError::Conflict { code, message } => ApiError::Conflict { code, message },
            StoreError::Invalid(invalid) if invalid.field == "cursor" => ApiError::BadRequest {
                code: "invalid_cursor",
                message: invalid.to_string(),
                details: Value::Null,
            },
            StoreError::Invalid(invalid) => ApiError::Validation(invalid),
            StoreError::Unavailable(_) | StoreError::SchemaTooNew { .. } => {
                ApiError::Unavailable("the database is unavailable; retry shortly".into())
            }
            StoreError::Database(_) | StoreError::Corrupt(_) => ApiError::Internal(Box::new(e)),
        }
    }
}

impl From<crate::intake::IntakeError> for ApiError {
    fn from(e: crate::intake::IntakeError) -> Self {
        use crate::artifact::ArtifactError;
        use crate::intake::IntakeError;
        match e {
            IntakeError::Artifact(ArtifactError::TooLarge { limit }) => ApiError::PayloadTooLarge {
                code: "artifact_too_large",
                message: format!("the artifact is larger than the limit of {limit} bytes"),
            },
            IntakeError::Artifact(ArtifactError::Manifest(invalid))
            | IntakeError::Invalid(invalid) => ApiError::BadRequest {
                code: "invalid_manifest",
                message: format!("tideway.toml is invalid: {invalid}"),
                details: json!({"field": invalid.field, "reason": invalid.reason}),
            },
            IntakeError::Artifact(ArtifactError::Io(_)) => ApiError::Internal(Box::new(e)),
            IntakeError::Artifact(a) => ApiError::BadRequest {
                code: a.code(),
                message: a.to_string(),
                details: Value::Null,
            },
            IntakeError::Store(s) => s.into(),
            IntakeError::Upload(io) => ApiError::BadRequest {
                code: "upload_interrupted",
                message: format!("the upload did not arrive whole: {io}"),
                details: Value::Null,
            },
            IntakeError::Task(_) | IntakeError::Place(_) => ApiError::Internal(Box::new(e)),
        }
    }
}

impl From<crate::runtime::RuntimeError> for ApiError {
    fn from(e: crate::runtime::RuntimeError) -> Self {
        ApiError::Internal(Box::new(e))
    }
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        ApiError::Validation(e)
    }
}

impl From<InvalidName> for ApiError {
    fn from(e: InvalidName) -> Self {
        ApiError::BadRequest {
            code: "invalid_name",
            message: format!("'{}' is not a valid name: {}", e.value, e.reason),
            details: json!({"value": e.value, "reason": e.reason}),
        }
    }
}

impl From<Denied> for ApiError {
    fn from(d: Denied) -> Self {
        ApiError::Forbidden(match d {
            Denied::Role { needed } => {
                format!(
                    "this needs a token with role '{}' or higher",
                    role_str(needed)
                )
            }
            Denied::Namespace { namespace } if namespace == "*" => {
                "this needs a token that is not limited to namespaces".to_owned()
            }
            Denied::Namespace { namespace } => {
                format!("this token may not act in namespace '{namespace}'")
            }
        })
    }
}
