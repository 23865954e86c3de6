//! Errors as Docker returns them: a status code and `{"message": "..."}`.

use codex_engine::Error as EngineError;
use hyper::StatusCode;

/// An error answer.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_implemented(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            format!("{what} is not implemented by codex-ctr"),
        )
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

/// Docker's words for a missing object, which clients match on ("No such container").
fn not_found(kind: &str, name: &str) -> String {
    match kind {
        "container" => format!("No such container: {name}"),
        "image" => format!("No such image: {name}"),
        "network" => format!("network {name} not found"),
        "volume" => format!("get {name}: no such volume"),
        "exec instance" => format!("No such exec instance: {name}"),
        _ => format!("{kind} {name} not found"),
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        let status = match &e {
            EngineError::NotFound { kind, name } => {
                return ApiError::new(StatusCode::NOT_FOUND, not_found(kind, name))
            }
            EngineError::NameInUse { kind, name } if *kind == "container" => {
                return ApiError::new(
                    StatusCode::CONFLICT,
                    format!("Conflict. The container name \"/{name}\" is already in use"),
                )
            }
            EngineError::NameInUse { .. } | EngineError::InUse { .. } => StatusCode::CONFLICT,
            EngineError::WrongState { .. } => StatusCode::CONFLICT,
            EngineError::Invalid { .. } | EngineError::Ambiguous { .. } => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<serde_json::Error> for ApiError {
    fn from(e: serde_json::Error) -> ApiError {
        ApiError::internal(format!("encoding JSON: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_map_to_dockers_status_and_words() {
        let e: ApiError = EngineError::NotFound {
            kind: "container",
            name: "web".into(),
        }
        .into();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        assert_eq!(e.message, "No such container: web");
        let e: ApiError = EngineError::NameInUse {
            kind: "container",
            name: "web".into(),
        }
        .into();
        assert_eq!(e.status, StatusCode::CONFLICT);
        assert!(
            e.message.contains("\"/web\" is already in use"),
            "{}",
            e.message
        );
        let e: ApiError = EngineError::invalid("memory", "bad").into();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.message, "memory: bad");
    }
}
