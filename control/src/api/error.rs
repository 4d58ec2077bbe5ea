//! API errors: a status and a JSON body naming the field and the problem,
//! `{"error": {"field": "weight", "message": "70000 is out of range 0..=65535"}}`.

use crate::changes::Refusal;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The request field (or path part, or configuration key) at fault.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl ApiError {
    /// An error with `status` about `field`.
    pub fn new(status: StatusCode, field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status,
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        ApiError {
            status: StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST),
            field: r.field,
            message: r.message,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"field": self.field, "message": self.message}});
        (self.status, axum::Json(body)).into_response()
    }
}
