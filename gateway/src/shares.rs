//! Fair shares: how many connections, and how many requests in flight, one client
//! identity may hold at once, below the gateway-wide limits, so that one
//! department's system — broken or hostile — cannot take what the others need.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Counts what each identity holds against one limit.
#[derive(Debug)]
pub struct Shares {
    limit: usize,
    held: Mutex<HashMap<String, usize>>,
}

impl Shares {
    /// At most `limit` (at least one) per identity.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit: limit.max(1),
            held: Mutex::new(HashMap::new()),
        })
    }

    /// The limit per identity.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// One more for `identity`, or `None` when it holds its whole share. The share
    /// is given back when the returned value is dropped.
    pub fn try_take(self: &Arc<Self>, identity: &str) -> Option<Share> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        // Looked up by reference: an identity already holding something costs no
        // allocation here.
        match held.get_mut(identity) {
            Some(n) if *n >= self.limit => return None,
            Some(n) => *n += 1,
            None => {
                held.insert(identity.to_owned(), 1);
            }
        }
        Some(Share {
            shares: Arc::clone(self),
            identity: identity.to_owned(),
        })
    }

    /// What `identity` holds now.
    pub fn held(&self, identity: &str) -> usize {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.get(identity).copied().unwrap_or(0)
    }
}

/// One unit of an identity's share, given back on drop.
#[derive(Debug)]
pub struct Share {
    shares: Arc<Shares>,
    identity: String,
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut held = self.shares.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = held.get_mut(&self.identity) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                // Identities come and go; keep only those holding something.
                held.remove(&self.identity);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_gets_its_share_and_no_more_and_others_are_not_touched() {
        let shares = Shares::new(2);
        let a1 = shares.try_take("a");
        let a2 = shares.try_take("a");
        assert!(a1.is_some() && a2.is_some());
        assert!(shares.try_take("a").is_none(), "a third for a");
        let b = shares.try_take("b");
        assert!(b.is_some(), "b has its own share");
        drop(a1);
        assert_eq!(shares.held("a"), 1);
        assert!(shares.try_take("a").is_some(), "a share comes back on drop");
        drop(a2);
        drop(b);
        assert_eq!(shares.held("b"), 0);
    }
}
