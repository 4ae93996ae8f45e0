//! Keeping an [`Authorizer`] in step with the store: load at start, then catch up
//! on the history after the version applied. Several gateways sharing one database
//! each catch up on their own; a change made anywhere reaches all of them.

use crate::authorizer::{Authorizer, Change, Settings};
use crate::{AgreementStore, PolicyError};

impl Authorizer {
    /// Build an authorizer from the store's current state.
    pub async fn load(store: &AgreementStore, settings: Settings) -> Result<Self, PolicyError> {
        // The version first: a change landing between the reads is applied again by
        // the next catch-up, which is harmless (changes replace by id).
        let version = store.version().await?;
        let agreements = store.agreements().await?;
        let roles = store.roles().await?;
        Self::with_settings(settings, version, agreements, roles).await
    }

    /// Apply every change made in `store` since the version this authorizer holds;
    /// returns how many were applied. Concurrent calls are serialized.
    pub async fn catch_up(&self, store: &AgreementStore) -> Result<usize, PolicyError> {
        let _updating = self.updating.lock().await;
        let applied = self.version();
        let head = store.version().await?;
        if head == applied {
            return Ok(0);
        }
        if head < applied {
            // The store went back (restored from a backup): start over from it.
            tracing::warn!(
                head,
                applied,
                "policy store is behind this gateway; reloading it whole"
            );
            let agreements = store.agreements().await?;
            let roles = store.roles().await?;
            self.replace_locked(head, agreements, roles)?;
            return Ok(1);
        }
        let history = store.changes_since(applied).await?;
        let Some(last) = history.last().map(|h| h.version) else {
            return Ok(0);
        };
        let mut changes = Vec::with_capacity(history.len());
        let mut roles_changed = false;
        for h in &history {
            match (h.kind.as_str(), &h.after) {
                ("agreement", Some(after)) => match serde_json::from_value(after.clone()) {
                    Ok(a) => changes.push(Change::Put(Box::new(a))),
                    Err(e) => {
                        return Err(PolicyError::Corrupt {
                            id: h.subject.clone(),
                            message: format!("history version {}: {e}", h.version),
                        })
                    }
                },
                ("agreement", None) => changes.push(Change::Revoke(h.subject.clone())),
                _ => roles_changed = true,
            }
        }
        if roles_changed {
            changes.push(Change::Roles(store.roles().await?));
        }
        let n = history.len();
        self.apply_locked(last, changes)?;
        Ok(n)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::agreement::tests::sample;
    use crate::{Decision, Edit, Question};
    use chrono::TimeZone as _;

    #[tokio::test]
    async fn two_authorizers_follow_one_store() {
        let dir = tempfile::tempdir().unwrap();
        let url = AgreementStore::sqlite_url(&dir.path().join("s.db"));
        let store = AgreementStore::connect(&url, 2).await.unwrap();
        let one = Authorizer::load(&store, Settings::default()).await.unwrap();
        let two = Authorizer::load(&store, Settings::default()).await.unwrap();
        let a = sample();
        let q = Question {
            consumer: &a.consumer,
            dataset: "population",
            matter: "social-insurance-enrollment",
            fields: None,
            at: chrono::Utc.with_ymd_and_hms(2026, 6, 1, 2, 0, 0).unwrap(),
        };
        assert!(matches!(one.decide(&q).unwrap(), Decision::Deny(_)));
        store
            .edit(Edit::Create(a.clone()), "t", |_| Ok(()))
            .await
            .unwrap();
        store.bind_role(&a.consumer, "counter").await.unwrap();
        for auth in [&one, &two] {
            assert_eq!(auth.catch_up(&store).await.unwrap(), 2);
            assert_eq!(auth.catch_up(&store).await.unwrap(), 0);
            assert!(matches!(auth.decide(&q).unwrap(), Decision::Allow(_)));
            assert!(auth.has_role(&a.consumer, "counter"));
        }
        store
            .edit(Edit::Revoke(a.id.clone()), "t", |_| Ok(()))
            .await
            .unwrap();
        one.catch_up(&store).await.unwrap();
        assert!(matches!(one.decide(&q).unwrap(), Decision::Deny(_)));
        assert_eq!(one.version(), 3);
    }
}
