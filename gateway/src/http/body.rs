//! Request bodies: read whole, up to the configured limit, and parsed as JSON.

use bytes::Bytes;
use http::{header, HeaderMap};
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

/// The body as a `T`, once its `Content-Type` says JSON (415 otherwise); `what`
/// names it in the 400 ("a lookup request").
pub async fn read_json<T, B>(
    headers: &HeaderMap,
    body: B,
    max_body: usize,
    what: &str,
) -> Result<T, ApiError>
where
    T: DeserializeOwned,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    json_media_type(headers)?;
    let bytes = read_body(body, max_body).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("body is not {what}: {e}")))
}

/// One `Content-Type`, `application/json` with any parameters (`; charset=utf-8`).
/// A missing one is refused too: a browser sends a body without a type (a `Blob`)
/// cross-site without a CORS preflight, and the console's users hold client
/// certificates in their browsers.
fn json_media_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let mut values = headers.get_all(header::CONTENT_TYPE).iter();
    let refuse = |got: &str| {
        ApiError::MediaType(format!(
            "Content-Type must be application/json, not {got}; send -H 'Content-Type: application/json'"
        ))
    };
    match (values.next(), values.next()) {
        (None, _) => Err(refuse("missing")),
        (Some(_), Some(_)) => Err(refuse("given more than once")),
        (Some(v), None) => {
            let text = String::from_utf8_lossy(v.as_bytes());
            let essence = text.split(';').next().unwrap_or_default().trim();
            if essence.eq_ignore_ascii_case("application/json") {
                Ok(())
            } else {
                Err(refuse(&format!(
                    "{:?}",
                    text.chars().take(64).collect::<String>()
                )))
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use http::HeaderValue;
    use http_body_util::Full;

    use super::*;

    async fn read(content_types: &[&str]) -> Result<serde_json::Value, ApiError> {
        let mut headers = HeaderMap::new();
        for t in content_types {
            headers.append(header::CONTENT_TYPE, HeaderValue::from_str(t).unwrap());
        }
        read_json(&headers, Full::new(Bytes::from("{}")), 64, "JSON").await
    }

    #[tokio::test]
    async fn json_with_or_without_parameters_is_read() {
        for t in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON;charset=UTF-8",
        ] {
            assert_eq!(read(&[t]).await.unwrap(), serde_json::json!({}), "{t}");
        }
    }

    #[tokio::test]
    async fn any_other_or_no_content_type_is_415() {
        for types in [
            &[][..],
            &["text/plain"][..],
            &["application/x-www-form-urlencoded"][..],
            &["application/jsonx"][..],
            &["application/json", "text/plain"][..],
        ] {
            let e = read(types).await.unwrap_err();
            assert_eq!(
                e.status(),
                http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{types:?}"
            );
            assert_eq!(e.slug(), "unsupported-media-type");
        }
    }
}
