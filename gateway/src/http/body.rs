//! Request bodies: read whole, up to the configured limit, and parsed as JSON.

use bytes::Bytes;
use http_body::Body;
use http_body_util::{BodyExt as _, Limited};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The body, at most `max_body` bytes (413 beyond).
pub async fn read_body<B>(body: B, max_body: usize) -> Result<Bytes, ApiError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    Ok(Limited::new(body, max_body)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                ApiError::TooLarge(max_body)
            } else {
                ApiError::BadRequest(format!("reading the body failed: {e}"))
            }
        })?
        .to_bytes())
}

/// The body as a `T`; `what` names it in the 400 ("a lookup request").
pub async fn read_json<T, B>(body: B, max_body: usize, what: &str) -> Result<T, ApiError>
where
    T: DeserializeOwned,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    let bytes = read_body(body, max_body).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("body is not {what}: {e}")))
}
