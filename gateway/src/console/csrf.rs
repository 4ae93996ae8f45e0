//! Cross-site request forgery: a browser sends its client certificate to the
//! gateway whichever site made it send the request, so the certificate alone does
//! not say the console's own form was used. Every state-changing form (POST) must
//! carry both:
//!
//! - the session's token: `HMAC-SHA-256(key, identity ‖ 0x00 ‖ session)`, the key
//!   made at start-up and never stored, the session a random nonce in a
//!   `__Host-` cookie (`Secure; HttpOnly; SameSite=Strict`). Another site can
//!   neither read the cookie nor compute the token, and a token is good only for
//!   the certificate identity it was made for;
//! - an `Origin` header naming this gateway (`https://` + the request's host).
//!
//! A restart makes new tokens: an open form then fails once and the page is reloaded.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use ring::hmac;
use ring::rand::{SecureRandom as _, SystemRandom};

/// The session cookie's name; `__Host-` makes browsers refuse it unless it is
/// `Secure`, `Path=/` and without `Domain`.
pub const SESSION_COOKIE: &str = "__Host-tongban-session";

/// The form member holding the token.
pub const TOKEN_FIELD: &str = "csrf";

/// Makes and checks tokens with a key generated at start-up.
pub struct Csrf {
    key: hmac::Key,
    rng: SystemRandom,
}

impl std::fmt::Debug for Csrf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Csrf { key: <secret> }")
    }
}

/// Why a form was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CsrfRefusal {
    /// No `Origin`, or another site's.
    #[error("the form was not sent from this gateway's own pages (Origin missing or foreign)")]
    Origin,
    /// No session cookie, no token, or a token not made for this session and identity.
    #[error("the form's token is missing or not this session's; reload the page and try again")]
    Token,
}

impl Csrf {
    /// A new key from the system's random source.
    pub fn generate() -> Result<Self, ring::error::Unspecified> {
        let rng = SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng)?;
        Ok(Self { key, rng })
    }

    /// A new session nonce (128 random bits, URL-safe base64).
    pub fn new_session(&self) -> Option<String> {
        let mut nonce = [0u8; 16];
        self.rng.fill(&mut nonce).ok()?;
        Some(B64.encode(nonce))
    }

    /// The token of `session` for `identity`.
    pub fn token(&self, identity: &str, session: &str) -> String {
        B64.encode(hmac::sign(&self.key, &message(identity, session)).as_ref())
    }

    /// Whether a POST may change anything: `origin` is this gateway's, and `token`
    /// is the one of `session` for `identity` (compared in constant time).
    pub fn check(
        &self,
        identity: &str,
        expected_origin: Option<&str>,
        origin: Option<&str>,
        session: Option<&str>,
        token: Option<&str>,
    ) -> Result<(), CsrfRefusal> {
        match (expected_origin, origin) {
            (Some(want), Some(got)) if want.eq_ignore_ascii_case(got) => {}
            _ => return Err(CsrfRefusal::Origin),
        }
        let (Some(session), Some(token)) = (session, token) else {
            return Err(CsrfRefusal::Token);
        };
        let tag = B64.decode(token).map_err(|_| CsrfRefusal::Token)?;
        hmac::verify(&self.key, &message(identity, session), &tag).map_err(|_| CsrfRefusal::Token)
    }
}

fn message(identity: &str, session: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(identity.len() + session.len() + 1);
    m.extend_from_slice(identity.as_bytes());
    m.push(0);
    m.extend_from_slice(session.as_bytes());
    m
}

/// The `Set-Cookie` value of a new session.
pub fn session_cookie(session: &str) -> String {
    format!("{SESSION_COOKIE}={session}; Path=/; Secure; HttpOnly; SameSite=Strict")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const ME: &str = "urn:tongban:sz-psb:admin-01";
    const HERE: Option<&str> = Some("https://127.0.0.1:8443");

    #[test]
    fn a_token_holds_for_its_session_identity_and_key_only() {
        let csrf = Csrf::generate().unwrap();
        let session = csrf.new_session().unwrap();
        let token = csrf.token(ME, &session);
        let check = |identity, origin, session: Option<&str>, token: Option<&str>| {
            csrf.check(identity, HERE, origin, session, token)
        };
        assert_eq!(check(ME, HERE, Some(&session), Some(&token)), Ok(()));
        let other = csrf.new_session().unwrap();
        assert_ne!(other, session);
        let refused = Err(CsrfRefusal::Token);
        assert_eq!(check(ME, HERE, Some(&other), Some(&token)), refused);
        assert_eq!(
            check(
                "urn:tongban:sz-psb:admin-02",
                HERE,
                Some(&session),
                Some(&token)
            ),
            refused
        );
        assert_eq!(check(ME, HERE, None, Some(&token)), refused);
        assert_eq!(check(ME, HERE, Some(&session), None), refused);
        assert_eq!(check(ME, HERE, Some(&session), Some("AAAA")), refused);
        assert_eq!(
            check(ME, HERE, Some(&session), Some("not base64!")),
            refused
        );
        // A gateway restarted (a new key) does not take the old tokens.
        let restarted = Csrf::generate().unwrap();
        assert_eq!(
            restarted.check(ME, HERE, HERE, Some(&session), Some(&token)),
            refused
        );
    }

    #[test]
    fn a_form_from_another_origin_or_none_is_refused_even_with_the_token() {
        let csrf = Csrf::generate().unwrap();
        let session = csrf.new_session().unwrap();
        let token = csrf.token(ME, &session);
        for origin in [
            None,
            Some("null"),
            Some("https://evil.example"),
            Some("http://127.0.0.1:8443"),
            Some("https://127.0.0.1:8444"),
        ] {
            assert_eq!(
                csrf.check(ME, HERE, origin, Some(&session), Some(&token)),
                Err(CsrfRefusal::Origin),
                "{origin:?}"
            );
        }
        // Without a host the expected origin is unknown: refused too.
        assert_eq!(
            csrf.check(ME, None, HERE, Some(&session), Some(&token)),
            Err(CsrfRefusal::Origin)
        );
    }

    #[test]
    fn the_cookie_is_host_only_secure_http_only_and_same_site_strict() {
        let c = session_cookie("abc");
        assert!(c.starts_with("__Host-tongban-session=abc;"), "{c}");
        for attr in ["Path=/", "Secure", "HttpOnly", "SameSite=Strict"] {
            assert!(c.split("; ").any(|a| a == attr), "{attr} in {c}");
        }
        assert!(!c.contains("Domain"), "{c}");
    }
}
