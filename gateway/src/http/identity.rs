//! Identity: who is calling, from the client certificate and nothing else.

use std::task::{Context, Poll};

use certs::Identity;
use http::Request;
use tower::{Layer, Service};

use super::take_ready;

/// The authenticated caller: the identity in its certificate's URI SAN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `urn:tongban:<dept>:<system>`.
    pub identity: Identity,
    /// SHA-256 of the client certificate (DER), hex.
    pub fingerprint: String,
}

/// Headers a proxy in front might use to pass a client identity. The gateway
/// terminates TLS itself, so any such header comes from the client: drop it, so that
/// nothing downstream can mistake it for the real identity.
const SPOOFABLE: &[&str] = &[
    "x-tongban-identity",
    "x-client-identity",
    "x-client-cert",
    "x-ssl-client-cert",
    "x-ssl-client-s-dn",
    "x-forwarded-client-cert",
    "ssl-client-cert",
];

/// Puts the connection's [`Principal`] on every request.
#[derive(Debug, Clone)]
pub struct IdentityLayer {
    principal: Principal,
}

impl IdentityLayer {
    /// For one connection whose client certificate gave `principal`.
    pub fn new(principal: Principal) -> Self {
        Self { principal }
    }
}

impl<S> Layer<S> for IdentityLayer {
    type Service = WithIdentity<S>;
    fn layer(&self, inner: S) -> Self::Service {
        WithIdentity {
            inner,
            principal: self.principal.clone(),
        }
    }
}

/// See [`IdentityLayer`].
#[derive(Debug, Clone)]
pub struct WithIdentity<S> {
    inner: S,
    principal: Principal,
}

impl<S, B> Service<Request<B>> for WithIdentity<S>
where
    S: Service<Request<B>> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let headers = req.headers_mut();
        for name in SPOOFABLE {
            headers.remove(*name);
        }
        req.extensions_mut().insert(self.principal.clone());
        take_ready(&mut self.inner).call(req)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use tower::ServiceExt as _;

    use super::*;
    use crate::http::test_support::{principal, recorder, COUNTER};

    #[tokio::test]
    async fn the_certificates_principal_is_on_the_request_and_identity_headers_are_not() {
        let (inner, seen) = recorder(|_: &Request<()>| ());
        let mut req = Request::builder().header("x-operator-id", "clerk-001");
        // Each claims to be another department's admin.
        for name in SPOOFABLE {
            req = req.header(*name, "urn:tongban:sz-psb:admin-01");
        }
        let me = principal(COUNTER);
        IdentityLayer::new(me.clone())
            .layer(inner)
            .oneshot(req.body(()).unwrap())
            .await
            .unwrap();
        let [req] = &seen.take()[..] else {
            panic!("one request expected")
        };
        assert_eq!(req.extensions().get::<Principal>(), Some(&me));
        for name in SPOOFABLE {
            assert!(!req.headers().contains_key(*name), "{name} passed");
        }
        assert_eq!(req.headers()["x-operator-id"], "clerk-001");
    }
}
