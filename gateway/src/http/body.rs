//! Request bodies: read whole, up to the configured size, at least as fast as the
//! configured rate, and parsed as JSON.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap};
use http_body::Body;
use http_body_util::{BodyExt as _, Limited};
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::config::LimitsConfig;
use crate::error::ApiError;

/// How much, and how fast, a body must come.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Largest body accepted (413 beyond).
    pub max_bytes: usize,
    /// Slowest rate accepted once the grace has passed (408 below).
    pub min_bytes_per_sec: u64,
    /// How long a body may take before the rate applies.
    pub grace: Duration,
}

impl From<&LimitsConfig> for BodyLimits {
    fn from(l: &LimitsConfig) -> Self {
        Self {
            max_bytes: l.max_body_bytes,
            min_bytes_per_sec: l.body_min_bytes_per_sec.max(1),
            grace: Duration::from_millis(l.body_grace_ms),
        }
    }
}

impl BodyLimits {
    /// When the body must be complete, having received `received` bytes so far: the
    /// grace, plus the time the minimum rate allows for what came.
    fn deadline(&self, started: Instant, received: usize) -> Instant {
        let per_byte = 1.0 / self.min_bytes_per_sec.max(1) as f64;
        started + self.grace + Duration::from_secs_f64(received as f64 * per_byte)
    }
}

/// The body, within `limits`. A `Content-Length` over the size is refused before
/// anything is read; a client that sends too slowly is cut off, not waited for.
pub async fn read_body<B>(body: B, limits: &BodyLimits) -> Result<Bytes, ApiError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    if body.size_hint().lower() > limits.max_bytes as u64 {
        return Err(ApiError::TooLarge(limits.max_bytes));
    }
    let started = Instant::now();
    let mut body = std::pin::pin!(Limited::new(body, limits.max_bytes));
    let mut buf = BytesMut::new();
    loop {
        let deadline = limits.deadline(started, buf.len());
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(ApiError::BodyTooSlow(limits.min_bytes_per_sec)),
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(if e.is::<http_body_util::LengthLimitError>() {
                    ApiError::TooLarge(limits.max_bytes)
                } else {
                    ApiError::BadRequest(format!("reading the body failed: {e}"))
                })
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// The body as a `T`, once its `Content-Type` says JSON (415 otherwise); `what`
/// names it in the 400 ("a lookup request").
pub async fn read_json<T, B>(
    headers: &HeaderMap,
    body: B,
    limits: &BodyLimits,
    what: &str,
) -> Result<T, ApiError>
where
    T: DeserializeOwned,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    json_media_type(headers)?;
    let bytes = read_body(body, limits).await?;
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
    use std::convert::Infallible;

    use http::HeaderValue;
    use http_body::Frame;
    use http_body_util::{Full, StreamBody};

    use super::*;

    fn limits() -> BodyLimits {
        BodyLimits {
            max_bytes: 1024,
            min_bytes_per_sec: 100,
            grace: Duration::from_secs(1),
        }
    }

    /// A body sending `chunks` one every `every`, then ending.
    fn trickle(
        chunks: usize,
        every: Duration,
    ) -> StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>>> {
        let stream = futures_util::stream::unfold(0, move |n| async move {
            if n == chunks {
                return None;
            }
            tokio::time::sleep(every).await;
            Some((Ok(Frame::data(Bytes::from_static(b"x"))), n + 1))
        });
        StreamBody::new(stream)
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_slower_than_the_minimum_rate_is_cut_off() {
        // One byte every 100 ms is 10 bytes/s, under 100 bytes/s: cut off once the
        // second of grace is over, though it would end some day.
        let e = read_body(trickle(50, Duration::from_millis(100)), &limits())
            .await
            .unwrap_err();
        assert!(matches!(e, ApiError::BodyTooSlow(100)), "{e:?}");
        assert_eq!(e.status(), http::StatusCode::REQUEST_TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_at_the_minimum_rate_is_read() {
        // Five bytes well within the grace, then done.
        let bytes = read_body(trickle(5, Duration::from_millis(100)), &limits())
            .await
            .unwrap();
        assert_eq!(&bytes[..], b"xxxxx");
    }

    #[tokio::test]
    async fn an_announced_length_over_the_limit_is_refused_unread() {
        // A body that says it is 1 GB and never sends a byte.
        struct Announced;
        impl Body for Announced {
            type Data = Bytes;
            type Error = Infallible;
            fn poll_frame(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
                std::task::Poll::Pending
            }
            fn size_hint(&self) -> http_body::SizeHint {
                http_body::SizeHint::with_exact(1 << 30)
            }
        }
        let e = read_body(Announced, &limits()).await.unwrap_err();
        assert!(matches!(e, ApiError::TooLarge(1024)), "{e:?}");
    }

    async fn read(content_types: &[&str]) -> Result<serde_json::Value, ApiError> {
        let mut headers = HeaderMap::new();
        for t in content_types {
            headers.append(header::CONTENT_TYPE, HeaderValue::from_str(t).unwrap());
        }
        read_json(&headers, Full::new(Bytes::from("{}")), &limits(), "JSON").await
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

/// Strategies shared by the body parsers' property tests.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod fuzz_support {
    use bytes::Bytes;
    use http::{header, HeaderMap};
    use proptest::prelude::*;
    use serde::de::DeserializeOwned;
    use serde_json::Value;

    use super::read_json;
    use crate::error::ApiError;
    use crate::http::test_support::body_limits;

    pub(crate) use audit::test_support::json_value;

    /// An object with `keys` (each maybe present) holding any values, plus maybe an
    /// unknown member: close enough to a real body to get past the first check.
    pub(crate) fn shaped(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
        (
            proptest::collection::vec(proptest::option::of(json_value()), keys.len()),
            proptest::option::of(json_value()),
        )
            .prop_map(move |(values, extra)| {
                let mut object: serde_json::Map<String, Value> = keys
                    .iter()
                    .zip(values)
                    .filter_map(|(k, v)| Some(((*k).to_owned(), v?)))
                    .collect();
                if let Some(extra) = extra {
                    object.insert("unexpected".into(), extra);
                }
                Value::Object(object)
            })
    }

    /// `bytes` read as a JSON body of type `T`, as the endpoints read it.
    pub(crate) fn read<T: DeserializeOwned>(bytes: Vec<u8>) -> Result<T, ApiError> {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        let body = http_body_util::Full::new(Bytes::from(bytes));
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(read_json(&headers, body, &body_limits(4096), "a body"))
    }
}
