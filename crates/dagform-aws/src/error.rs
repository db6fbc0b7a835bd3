//! Classifying SDK errors: which are worth retrying, which mean "already gone".

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use dagform_core::{Properties, ResourceError};
use serde::de::DeserializeOwned;

/// Errors of this crate outside a resource operation.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error("{operation}: {message}")]
    Call { operation: String, message: String },
    #[error("{0}")]
    NotFound(String),
}

/// Error codes that mean eventual consistency or a dependency that is still going away:
/// retried by the reconciler with backoff, unlike other errors.
const TRANSIENT_CODES: &[&str] = &[
    "DependencyViolation",
    "ResourceInUse",
    "ResourceInUseException",
    "IncorrectState",
    "IncorrectInstanceState",
    "OperationAbortedException",
    "ConcurrentModification",
    "ConcurrentModificationException",
    "PriorRequestNotComplete",
    "ServiceUnavailable",
    "InternalError",
    "InternalFailure",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
];

/// Messages of `InvalidParameterException` that are eventual consistency; any other
/// `InvalidParameterException` is a real error.
const TRANSIENT_INVALID_PARAMETER: &[&str] = &[
    "Unable to assume role",
    "does not have an associated load balancer",
];

/// The error code of an SDK error, if AWS sent one.
pub fn code<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> Option<&str> {
    err.code()
}

/// Whether an SDK error says the object does not exist (any service's spelling of it).
pub fn is_not_found<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    code(err).is_some_and(|c| {
        c.contains("NotFound")
            || c.contains("NoSuch")
            || c == "ResourceNotFoundException"
            || c == "InvalidAllocationID.NotFound"
    })
}

/// Turns an SDK error into what the reconciler needs: transient (retry) or failed.
pub fn classify<E, R>(operation: &str, err: SdkError<E, R>) -> ResourceError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    // A call that never got an answer (connection reset, timeout) may or may not have been
    // done: worth retrying, and the reconciler looks for a created object before it does.
    let unanswered = matches!(
        err,
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_)
    );
    let code = err.code().map(str::to_owned);
    let message = err
        .message()
        .map(str::to_owned)
        .unwrap_or_else(|| aws_smithy_types::error::display::DisplayErrorContext(&err).to_string());
    let text = match &code {
        Some(c) => format!("{operation}: {c}: {message}"),
        None => format!("{operation}: {message}"),
    };
    let transient = match code.as_deref() {
        Some("InvalidParameterException") => TRANSIENT_INVALID_PARAMETER
            .iter()
            .any(|m| message.contains(m)),
        Some(c) => TRANSIENT_CODES.contains(&c),
        None => unanswered,
    };
    if transient {
        ResourceError::Transient(text)
    } else {
        ResourceError::Failed(text)
    }
}

/// Deserializes resolved properties into a kind's typed property struct.
pub fn parse<T: DeserializeOwned>(props: &Properties) -> Result<T, ResourceError> {
    serde_json::from_value(serde_json::Value::Object(props.clone()))
        .map_err(|e| ResourceError::invalid(e.to_string()))
}
