//! The answer to a request head hyper's HTTP/1 parser refuses (a control character,
//! NUL or bare LF in a header, a head or URI over the limit).
//!
//! hyper writes that answer itself, a bare `400`, `431` or `414`, before any layer
//! sees a request. [`ParserRefusals`] sits between hyper and the TLS stream and swaps
//! it for ours: problem+json with a request id, written only once the refusal is in
//! the audit log (or `503 audit-unavailable` when the log cannot take it), like every
//! other answer.
//!
//! hyper's own answer is told from ours by its status line and the missing
//! `x-request-id` header that every answer of the service carries. The status line
//! cannot occur inside one of our bodies: they are JSON, where CR and LF are escaped.
//! hyper writes that answer last, once no response is half-written, and then closes,
//! so everything before it passes unchanged. HTTP/2 (its preface is the first thing
//! read) passes untouched: h2 refuses a malformed header block with a stream reset, as
//! RFC 9113 §8.1.1 requires, not with a response.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::{ApiError, HeadRefusal};
use crate::http::render::{problem, Rendered};

/// Records a refused head under the connection's identity, given its request id and
/// the digest of its answer: the receipt once durable.
pub type RecordRefusal = Box<
    dyn FnOnce(
            HeadRefusal,
            String,
            String,
        ) -> Pin<Box<dyn Future<Output = Option<audit::Receipt>> + Send>>
        + Send,
>;

/// The HTTP/2 connection preface's first bytes.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// The status lines hyper's parser refusals start with.
const REFUSALS: [(&[u8], HeadRefusal); 3] = [
    (b"HTTP/1.1 400 Bad Request\r\n", HeadRefusal::Malformed),
    (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
        HeadRefusal::TooLarge,
    ),
    (b"HTTP/1.1 414 URI Too Long\r\n", HeadRefusal::UriTooLong),
];

/// An IO stream under hyper that answers parser refusals as the service would.
pub struct ParserRefusals<IO> {
    io: IO,
    /// Once hyper refused a head: what it wrote before its refusal, then our answer;
    /// `out[sent..]` is pending. Empty otherwise: writes go straight through.
    out: Vec<u8>,
    sent: usize,
    state: State,
}

enum State {
    /// The first bytes read decide: HTTP/1 is watched, HTTP/2 passes.
    Unknown(RecordRefusal),
    /// HTTP/1: every write is looked at.
    Watching(RecordRefusal),
    /// hyper refused a head: recording it; then our answer follows what was written.
    Recording(Pin<Box<dyn Future<Output = Vec<u8>> + Send>>),
    /// HTTP/2: writes pass.
    Passing,
    /// The refusal was answered; hyper writes nothing more, anything else is dropped.
    Answered,
}

impl<IO> ParserRefusals<IO> {
    /// Watch `io`; `record` writes the audit record of a refusal.
    pub fn new(io: IO, record: RecordRefusal) -> Self {
        Self {
            io,
            out: Vec::new(),
            sent: 0,
            state: State::Unknown(record),
        }
    }
}

impl<IO: AsyncWrite + Unpin> ParserRefusals<IO> {
    /// Write what is held to `io`.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.out.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.out[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.out.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Finish recording a refusal, then hold our answer to it.
    fn poll_answer(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let State::Recording(answer) = &mut self.state {
            let bytes = ready!(answer.as_mut().poll(cx));
            self.out.extend_from_slice(&bytes);
            self.state = State::Answered;
        }
        Poll::Ready(())
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for ParserRefusals<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        let read = &buf.filled()[before..];
        if !read.is_empty() {
            if let State::Unknown(_) = this.state {
                // A preface cut short by the read still starts like one.
                let h2 = H2_PREFACE.starts_with(&read[..read.len().min(H2_PREFACE.len())]);
                this.state = match std::mem::replace(&mut this.state, State::Passing) {
                    State::Unknown(record) if !h2 => State::Watching(record),
                    _ => State::Passing,
                };
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for ParserRefusals<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match this.state {
            State::Answered | State::Recording(_) => return Poll::Ready(Ok(buf.len())),
            State::Passing | State::Unknown(_) => {}
            State::Watching(_) => {
                // Each buffer is looked at whole before any of it is written, so a
                // partial write leaves a rest that holds no refusal either.
                if let Some((at, refusal)) = refused_head(buf) {
                    this.out.extend_from_slice(&buf[..at]);
                    if let State::Watching(record) =
                        std::mem::replace(&mut this.state, State::Passing)
                    {
                        this.state = State::Recording(Box::pin(answer(record, refusal)));
                    }
                    return Poll::Ready(Ok(buf.len()));
                }
            }
        }
        // Written through, not copied: nothing is held between writes, so an idle
        // connection keeps no buffer here.
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let watched = match this.state {
            State::Watching(_) => bufs.iter().any(|b| refused_head(b).is_some()),
            State::Answered | State::Recording(_) => true,
            State::Passing | State::Unknown(_) => false,
        };
        if watched {
            // Rare: one buffer at a time, through the path above.
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &b[..]);
            return self.poll_write(cx, first);
        }
        // hyper hands the head and the body as separate buffers; TLS takes them in
        // one call.
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.drain(cx))?;
        ready!(this.poll_answer(cx));
        ready!(this.drain(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Where hyper's own refusal starts in `buf`, and which it is.
fn refused_head(buf: &[u8]) -> Option<(usize, HeadRefusal)> {
    let mut from = 0;
    while let Some(i) = memchr::memmem::find(&buf[from..], b"HTTP/1.1 4") {
        let at = from + i;
        let rest = &buf[at..];
        if let Some((_, refusal)) = REFUSALS.iter().find(|(line, _)| rest.starts_with(line)) {
            let head_end = memchr::memmem::find(rest, b"\r\n\r\n").unwrap_or(rest.len());
            let head = rest[..head_end].to_ascii_lowercase();
            if memchr::memmem::find(&head, b"\r\nx-request-id:").is_none() {
                return Some((at, *refusal));
            }
        }
        from = at + 1;
    }
    None
}

/// Record the refusal, then render the answer: the refusal as problem+json with its
/// receipt, or `503 audit-unavailable` when the record could not be written.
async fn answer(record: RecordRefusal, refusal: HeadRefusal) -> Vec<u8> {
    let request_id = uuid::Uuid::now_v7().to_string();
    let refused = problem(&ApiError::HeadRefused(refusal), &request_id);
    let digest = refused.digest();
    match record(refusal, request_id.clone(), digest).await {
        Some(receipt) => render(refused, Some(&receipt), &request_id),
        None => render(
            problem(&ApiError::AuditUnavailable, &request_id),
            None,
            &request_id,
        ),
    }
}

/// An HTTP/1.1 response for `answer`, closing the connection.
fn render(answer: Rendered, receipt: Option<&audit::Receipt>, request_id: &str) -> Vec<u8> {
    let status = answer.status;
    let body = answer.into_bytes(receipt);
    let date = chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT");
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/problem+json\r\ncache-control: no-store\r\n\
         x-request-id: {request_id}\r\ncontent-length: {}\r\nconnection: close\r\ndate: {date}\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len(),
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    const HYPER_400: &[u8] =
        b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: Fri, 04 Dec 2026 10:00:00 GMT\r\n\r\n";
    const OURS_400: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\nx-request-id: 0192\r\ncontent-length: 2\r\n\r\n{}";

    /// The refusals a recorder was given, with their request ids.
    type Seen = Arc<Mutex<Vec<(HeadRefusal, String)>>>;

    /// A recorder that keeps what it was given and answers `durable`.
    fn recorder(durable: bool) -> (RecordRefusal, Seen) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&seen);
        let record: RecordRefusal = Box::new(move |refusal, id, _digest| {
            kept.lock().unwrap().push((refusal, id));
            Box::pin(async move { durable.then(|| crate::http::test_support::receipt(1)) })
        });
        (record, seen)
    }

    /// What the peer reads after the wrapper saw `first_read` and hyper wrote `writes`.
    async fn through(
        first_read: &[u8],
        writes: &[&[u8]],
        durable: bool,
    ) -> (Vec<u8>, Vec<(HeadRefusal, String)>) {
        let (ours, mut peer) = tokio::io::duplex(1 << 20);
        let (record, seen) = recorder(durable);
        let mut wrapped = ParserRefusals::new(ours, record);
        peer.write_all(first_read).await.unwrap();
        let mut buf = vec![0; first_read.len()];
        wrapped.read_exact(&mut buf).await.unwrap();
        for w in writes {
            wrapped.write_all(w).await.unwrap();
        }
        wrapped.shutdown().await.unwrap();
        drop(wrapped);
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.unwrap();
        let seen = seen.lock().unwrap().clone();
        (got, seen)
    }

    fn text(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    #[tokio::test]
    async fn hypers_refusal_becomes_an_audited_problem() {
        let (got, seen) = through(b"GET / HTTP/1.1\r\nx: \x01\r\n\r\n", &[HYPER_400], true).await;
        let got = text(&got);
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0, HeadRefusal::Malformed);
        assert!(got.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{got}");
        assert!(
            got.contains(&format!("x-request-id: {}\r\n", seen[0].1)),
            "{got}"
        );
        assert!(
            got.contains("content-type: application/problem+json"),
            "{got}"
        );
        let body: serde_json::Value =
            serde_json::from_str(got.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["type"], "/problems/malformed-head");
        assert_eq!(body["request_id"], seen[0].1.as_str());
    }

    #[tokio::test]
    async fn a_refusal_after_an_answer_keeps_the_answer_whole() {
        // Pipelined: our answer's tail and hyper's refusal in one write.
        let both = [OURS_400, HYPER_400].concat();
        let (got, seen) = through(b"GET / HTTP/1.1\r\n\r\n", &[&both], true).await;
        let got = text(&got);
        assert!(got.starts_with(&text(OURS_400)), "{got}");
        let second = &got[OURS_400.len()..];
        assert!(second.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{got}");
        assert!(second.contains("x-request-id: "), "{got}");
        assert_eq!(seen.len(), 1);
    }

    #[tokio::test]
    async fn our_own_answers_pass_unchanged() {
        let (got, seen) = through(b"GET / HTTP/1.1\r\n\r\n", &[OURS_400, OURS_400], true).await;
        assert_eq!(got, [OURS_400, OURS_400].concat());
        assert!(seen.is_empty());
    }

    #[tokio::test]
    async fn head_too_large_and_uri_too_long_keep_their_status() {
        let big = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n";
        let (got, seen) = through(b"GET / HTTP/1.1\r\n", &[big], true).await;
        assert!(text(&got).starts_with("HTTP/1.1 431 "));
        assert_eq!(seen[0].0, HeadRefusal::TooLarge);
        let long = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n\r\n";
        let (got, seen) = through(b"GET / HTTP/1.1\r\n", &[long], true).await;
        assert!(text(&got).starts_with("HTTP/1.1 414 "));
        assert_eq!(seen[0].0, HeadRefusal::UriTooLong);
    }

    #[tokio::test]
    async fn an_unrecorded_refusal_is_answered_503() {
        let (got, seen) = through(b"GET / HTTP/1.1\r\n", &[HYPER_400], false).await;
        let got = text(&got);
        assert_eq!(seen.len(), 1);
        assert!(got.starts_with("HTTP/1.1 503 "), "{got}");
        assert!(got.contains("/problems/audit-unavailable"), "{got}");
    }

    #[tokio::test]
    async fn http2_passes_untouched() {
        let (got, seen) = through(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", &[HYPER_400], true).await;
        assert_eq!(got, HYPER_400);
        assert!(seen.is_empty());
    }
}
