//! What every route that changes something demands of its request, as an extractor each of
//! them takes ([`ChangeRequest`]), so that the demand holds for exactly the changing routes
//! and after the route matched (an unknown path is still 404, a wrong method 405):
//! - the admin role: a read-only token gets 403;
//! - `Content-Type: application/json`, with or without a body: 415 otherwise. A browser's
//!   form can send only form and text types, and a script's cross-site request with this type
//!   needs a CORS preflight vipd never grants, so no web page a local user visits can change
//!   vipd (the threat when the API runs on loopback without a token).

use super::auth::Role;
use super::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};

/// The request may change something.
#[derive(Debug, Clone, Copy)]
pub struct ChangeRequest;

/// Whether `value` is `application/json` (parameters such as `charset` allowed).
fn is_json(value: &str) -> bool {
    value
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

impl<S: Send + Sync> FromRequestParts<S> for ChangeRequest {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // No role: a router built without the authentication layer (never in vipd).
        if parts.extensions.get::<Role>() != Some(&Role::Admin) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "authorization",
                "this token may only read (GET, HEAD): changes need the admin token (api.token_file) or the local socket (api.socket)",
            ));
        }
        let json = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_json);
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "content-type",
                "a change needs `Content-Type: application/json`, with a body or without (no cross-site form posts)",
            ));
        }
        Ok(ChangeRequest)
    }
}

#[cfg(test)]
mod tests {
    use super::is_json;

    #[test]
    fn json_with_parameters_only() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(!is_json("application/x-www-form-urlencoded"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/jsonp"));
        assert!(!is_json(""));
    }
}
