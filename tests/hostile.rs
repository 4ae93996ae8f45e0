//! Hostile clients holding valid certificates: every connection phase has a
//! timeout, and each client identity its share, so one department's system cannot
//! starve the others. Each test asserts on outcomes (answered, refused, closed,
//! audited), never on how fast: the waits below are generous bounds for a test that
//! would otherwise hang, not measurements.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tongban_tests::Gateway;

/// Longest any test here waits for the gateway to act; far above every limit set.
const PATIENCE: Duration = Duration::from_secs(20);

/// An allowed lookup for counter-a, from the demo's samples.
fn allowed_lookup(gw: &Gateway) -> Value {
    gw.samples()
        .into_iter()
        .find(|s| s["cert"] == "counter-a" && s["path"] == "/v1/lookup" && s["expect"] == 200)
        .map(|s| s["body"].clone())
        .expect("an allowed counter-a lookup in samples.json")
}

/// The head of a lookup announcing `length` body bytes.
fn head(length: usize) -> String {
    format!(
        "POST /v1/lookup HTTP/1.1\r\nhost: localhost\r\nx-operator-id: clerk-009\r\n\
         content-type: application/json\r\ncontent-length: {length}\r\n\r\n"
    )
}

/// Everything the gateway sends until it closes the connection.
async fn until_closed(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> String {
    let mut got = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the gateway kept the connection open");
    String::from_utf8_lossy(&got).into_owned()
}

fn status_of(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_from_one_identity_do_not_starve_another() {
    let gw = Gateway::start_with(|c| {
        c.limits.max_requests_per_identity = 4;
        c.limits.max_connections_per_identity = 8;
        c.limits.body_grace_ms = 3_000;
        c.limits.body_min_bytes_per_sec = 1_000;
    })
    .await;
    let hostile = gw.client("counter-b");
    let fair = gw.client("counter-a");

    // counter-b keeps 4 connections open (one lookup each, answered, then idle)…
    let b_lookup = gw
        .samples()
        .into_iter()
        .find(|s| s["cert"] == "counter-b" && s["expect"] == 200)
        .map(|s| s["body"].clone())
        .unwrap();
    let mut idle = Vec::new();
    for _ in 0..4 {
        let mut s = hostile.tls_stream().await.unwrap();
        assert_eq!(lookup_on(&mut s, &b_lookup).await, 200);
        idle.push(s);
    }
    // … and sends 4 requests, each announcing 1,000 body bytes and sending 11: its
    // whole share of requests in flight, and with the 4 above of connections.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = hostile.tls_stream().await.unwrap();
        s.write_all(head(1_000).as_bytes()).await.unwrap();
        s.write_all(b"{\"dataset\":").await.unwrap();
        held.push(s);
    }
    // Once the gateway holds those 4 (they wait for their bodies)…
    let shares = &gw.running.app.request_shares;
    let waited = tokio::time::timeout(PATIENCE, async {
        while shares.held("urn:tongban:sz-civil:counter-01") < 4 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "the half-sent requests never reached the gateway"
    );
    // … one more request, on a connection it holds, is beyond its requests' share…
    assert_eq!(lookup_on(&mut idle[0], &b_lookup).await, 429);
    // … and one more connection beyond its connections' share: 429, then closed.
    let mut beyond = hostile.tls_stream().await.unwrap();
    beyond.write_all(head(2).as_bytes()).await.unwrap();
    beyond.write_all(b"{}").await.unwrap();
    let answer = until_closed(&mut beyond).await;
    assert_eq!(status_of(&answer), 429, "{answer}");
    assert!(answer.contains("connections open"), "{answer}");

    // Meanwhile counter-a's lookups are all answered.
    let body = allowed_lookup(&gw);
    for _ in 0..10 {
        let a = fair.lookup(Some("clerk-001"), &body).await.unwrap();
        assert_eq!(a.status, 200, "{:?}", a.body);
    }

    // Each half-sent request is cut off once its body is too slow (408).
    let mut statuses = Vec::new();
    for s in &mut held {
        statuses.push(status_of(&until_closed(s).await));
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [408, 408, 408, 408]);

    // Each is audited, under counter-b's identity.
    let db = gw.state_db().await;
    let audited: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT json_extract(record, '$.status'), COUNT(*) FROM audit_log \
         WHERE json_extract(record, '$.consumer') LIKE '%sz-civil%' \
         AND json_extract(record, '$.status') <> 200 GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(audited, [(408, 4), (429, 2)], "{audited:?}");

    // And counted by identity in /metrics.
    let metrics = gw.running.app.metrics.render_prometheus();
    let refused = |kind: &str, n: u32| {
        metrics.lines().any(|l| {
            l.starts_with("tongban_share_refusals_total{")
                && l.contains("sz-civil")
                && l.contains(&format!("kind=\"{kind}\""))
                && l.ends_with(&format!(" {n}"))
        })
    };
    assert!(
        refused("requests", 1) && refused("connections", 1),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_sent_too_slowly_is_cut_off() {
    let gw = Gateway::start_with(|c| c.limits.request_head_timeout_ms = 300).await;
    let mut s = gw.client("counter-b").tls_stream().await.unwrap();
    // Half a head, then nothing.
    s.write_all(b"POST /v1/lookup HTTP/1.1\r\nhost: localhost\r\n")
        .await
        .unwrap();
    until_closed(&mut s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announced_body_over_the_limit_is_refused_before_it_is_sent() {
    let gw = Gateway::start().await;
    let mut s = gw.client("counter-a").tls_stream().await.unwrap();
    // 1 GB announced, not a byte sent: refused at once, not after reading 64 KiB.
    s.write_all(head(1 << 30).as_bytes()).await.unwrap();
    let answer = until_closed(&mut s).await;
    assert_eq!(status_of(&answer), 413, "{answer}");
    assert_eq!(gw.last_audit().await["status"], 413);
}

/// A lookup on `s`, kept alive, and its status.
async fn lookup_on(
    s: &mut (impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin),
    body: &Value,
) -> u16 {
    let body = body.to_string();
    s.write_all(format!("{}{body}", head(body.len())).as_bytes())
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    // Read until the whole answer is in: its head and content-length bytes.
    loop {
        let n = tokio::time::timeout(PATIENCE, s.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert!(n > 0, "closed before answering");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some((head, rest)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            if rest.len() >= length {
                return status_of(head);
            }
        }
    }
}

/// One lookup answered on a kept-alive connection of a gateway with `limits`, then
/// nothing more asked: the gateway must close it.
async fn closed_after_one_lookup(limits: impl FnOnce(&mut gateway::config::LimitsConfig)) {
    let gw = Gateway::start_with(|c| limits(&mut c.limits)).await;
    let body = allowed_lookup(&gw);
    let mut s = gw.client("counter-a").tls_stream().await.unwrap();
    assert_eq!(lookup_on(&mut s, &body).await, 200);
    until_closed(&mut s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed() {
    closed_after_one_lookup(|l| {
        l.idle_timeout_ms = 300;
        l.request_head_timeout_ms = 60_000;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_is_closed_at_its_maximum_age() {
    closed_after_one_lookup(|l| {
        l.max_connection_age_secs = 1;
        l.idle_timeout_ms = 60_000;
        l.request_head_timeout_ms = 60_000;
    })
    .await;
}

/// A request body that sends its first bytes and then nothing, for ever.
struct Stalled(Option<bytes::Bytes>);

impl http_body::Body for Stalled {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        match self.0.take() {
            Some(first) => std::task::Poll::Ready(Some(Ok(http_body::Frame::data(first)))),
            None => std::task::Poll::Pending,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_http2_streams_from_one_identity_do_not_starve_another() {
    let gw = Gateway::start_with(|c| {
        c.limits.max_requests_per_identity = 4;
        c.limits.body_grace_ms = 3_000;
        c.limits.body_min_bytes_per_sec = 1_000;
    })
    .await;
    // counter-b over one HTTP/2 connection: 10 streams, each sending the start of
    // a body and then nothing.
    let sender = h2_sender(&gw, "counter-b").await;
    let mut streams = Vec::new();
    for _ in 0..10 {
        streams.push(tokio::spawn(stalled_stream(sender.clone())));
    }

    // Meanwhile counter-a's lookups are all answered.
    let fair = gw.client("counter-a");
    let body = allowed_lookup(&gw);
    for _ in 0..10 {
        let a = fair.lookup(Some("clerk-001"), &body).await.unwrap();
        assert_eq!(a.status, 200, "{:?}", a.body);
    }

    // Beyond counter-b's share of 4 requests in flight each stream is refused
    // (429); the 4 within it are cut off once their bodies are too slow (408).
    let mut statuses = Vec::new();
    for s in streams {
        let status = tokio::time::timeout(PATIENCE, s)
            .await
            .expect("every stream answered")
            .unwrap()
            .unwrap();
        statuses.push(status);
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [408, 408, 408, 408, 429, 429, 429, 429, 429, 429]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_http_parser_refuses_is_answered_as_problem_and_audited_first() {
    let gw = Gateway::start().await;
    let huge = format!(
        "GET /v1/lookup HTTP/1.1\r\nhost: localhost\r\nx-big: {}\r\n\r\n",
        "a".repeat(512 * 1024)
    );
    let cases: [(&[u8], u16, &str); 4] = [
        // A NUL byte in a header value.
        (
            b"POST /v1/lookup HTTP/1.1\r\nhost: localhost\r\nx-operator-id: a\0b\r\n\r\n",
            400,
            "malformed-head",
        ),
        // A control character.
        (
            b"GET /v1/lookup HTTP/1.1\r\nhost: localhost\r\nx-a: \x01\r\n\r\n",
            400,
            "malformed-head",
        ),
        // A space inside a header name.
        (
            b"GET /v1/lookup HTTP/1.1\r\nhost: localhost\r\nx a: b\r\n\r\n",
            400,
            "malformed-head",
        ),
        // A head over the parser's limit.
        (huge.as_bytes(), 431, "head-too-large"),
    ];
    for (request, status, slug) in cases {
        let before = gw.audit_count().await;
        let mut s = gw.client("counter-b").tls_stream().await.unwrap();
        // The write may be cut short when the gateway answers before reading it all.
        let _ = s.write_all(request).await;
        let answer = until_closed(&mut s).await;
        assert_eq!(status_of(&answer), status, "{answer}");
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains("content-type: application/problem+json"),
            "{head}"
        );
        let problem: Value = serde_json::from_str(body).unwrap();
        assert_eq!(problem["type"], format!("/problems/{slug}"), "{problem}");
        let id = problem["request_id"].as_str().unwrap();
        assert!(head.contains(&format!("x-request-id: {id}")), "{head}");
        // Recorded, under the connection's identity, before the answer left.
        assert_eq!(
            gw.audit_count().await,
            before + 1,
            "{slug} not audited first"
        );
        let last = gw.last_audit().await;
        assert_eq!(last["request_id"], id, "{last}");
        assert_eq!(last["status"], status, "{last}");
        assert!(
            last["consumer"].as_str().unwrap().contains("sz-civil"),
            "{last}"
        );
        assert!(
            last["reason"].as_str().unwrap().contains("HTTP parser"),
            "{last}"
        );
    }
}

/// An HTTP/2 connection to the gateway as `name`.
async fn h2_sender(gw: &Gateway, name: &str) -> hyper::client::conn::http2::SendRequest<Stalled> {
    let pki = gw.path().join("pki");
    let tls = certs::client_config(
        &[pki.join("ca.pem")],
        Some((
            &pki.join(format!("{name}.pem")),
            &pki.join(format!("{name}.key")),
        )),
        vec![b"h2".to_vec()],
    )
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(gw.running.addr)
        .await
        .unwrap();
    let io = tokio_rustls::TlsConnector::from(tls)
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(io),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    sender
}

/// A lookup stream that sends the start of its body, then nothing: its status, or
/// the error that ended it.
async fn stalled_stream(
    mut sender: hyper::client::conn::http2::SendRequest<Stalled>,
) -> Result<u16, hyper::Error> {
    let req = http::Request::post("/v1/lookup")
        .header("x-operator-id", "clerk-009")
        .header("content-type", "application/json")
        .body(Stalled(Some(bytes::Bytes::from_static(b"{\"dataset\":"))))
        .unwrap();
    sender.send_request(req).await.map(|r| r.status().as_u16())
}

/// A connection that sends a lookup's head and 11 of its 1,000 body bytes, then
/// nothing: what the gateway answers before it closes.
async fn half_sent_connection(client: tongban_tests::Client) -> String {
    let mut s = client.tls_stream().await.unwrap();
    s.write_all(head(1_000).as_bytes()).await.unwrap();
    s.write_all(b"{\"dataset\":").await.unwrap();
    until_closed(&mut s).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_half_sent_requests_from_one_identity_do_not_starve_another() {
    // The default limits: 256 connections and 512 requests in flight per identity,
    // 64 streams per HTTP/2 connection, bodies at 1 KiB/s after 5 s.
    let gw = Gateway::start().await;
    let hostile = gw.client("counter-b");
    let held = &gw.running.app.request_shares;
    let identity = "urn:tongban:sz-civil:counter-01";

    // counter-b: 8 HTTP/2 connections of 64 half-sent streams each…
    let mut h2 = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let sender = h2_sender(&gw, "counter-b").await;
        for _ in 0..64 {
            h2.spawn(stalled_stream(sender.clone()));
        }
    }
    // … and 1,000 HTTP/1.1 connections, each with a half-sent lookup, opened a few
    // at a time so that every handshake completes.
    let mut h1 = tokio::task::JoinSet::new();
    let opening = std::sync::Arc::new(tokio::sync::Semaphore::new(32));
    for _ in 0..1_000 {
        let permit = std::sync::Arc::clone(&opening)
            .acquire_owned()
            .await
            .unwrap();
        let client = hostile.clone();
        h1.spawn(async move {
            let answer = half_sent_connection(client);
            drop(permit);
            answer.await
        });
    }
    // Once counter-b holds its whole share of requests in flight…
    let waited = tokio::time::timeout(PATIENCE, async {
        while held.held(identity) < 512 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "counter-b never held its share: {}",
        held.held(identity)
    );

    // … counter-a's lookups are all answered.
    let fair = gw.client("counter-a");
    let body = allowed_lookup(&gw);
    for _ in 0..20 {
        let a = fair.lookup(Some("clerk-001"), &body).await.unwrap();
        assert_eq!(a.status, 200, "{:?}", a.body);
    }

    // Every one of counter-b's requests ends: refused beyond its share (429) or cut
    // off once its body is too slow (408); an HTTP/2 stream may instead see its
    // connection closed when every stream of it has ended.
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    let ended = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(answer) = h1.join_next().await {
            *statuses
                .entry(format!("h1 {}", status_of(&answer.unwrap())))
                .or_default() += 1;
        }
        while let Some(stream) = h2.join_next().await {
            let status = stream.unwrap().map_or("closed".into(), |s| s.to_string());
            *statuses.entry(format!("h2 {status}")).or_default() += 1;
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "some of counter-b's requests never ended: {statuses:?}"
    );
    eprintln!("counter-b's requests ended: {statuses:?}");
    let h1_total: usize = statuses
        .iter()
        .filter(|(k, _)| k.starts_with("h1"))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(h1_total, 1_000, "{statuses:?}");
    let unexpected: Vec<_> = statuses
        .keys()
        .filter(|k| !["h1 408", "h1 429", "h2 408", "h2 429", "h2 closed"].contains(&k.as_str()))
        .collect();
    assert!(unexpected.is_empty(), "{statuses:?}");
    // At most its share was ever held: 512 cut off for slowness, the rest refused.
    let slow = statuses.get("h1 408").unwrap_or(&0) + statuses.get("h2 408").unwrap_or(&0);
    assert!(slow <= 512, "{statuses:?}");
    assert_eq!(held.held(identity), 0);

    // Each answer is audited, under counter-b's identity.
    let db = gw.state_db().await;
    let (audited,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM audit_log WHERE json_extract(record, '$.consumer') LIKE '%sz-civil%' \
         AND json_extract(record, '$.status') IN (408, 429)",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    let answered: usize = statuses
        .iter()
        .filter(|(k, _)| !k.ends_with("closed"))
        .map(|(_, n)| n)
        .sum();
    assert!(
        audited as usize >= answered,
        "{audited} audited, {statuses:?}"
    );
}
