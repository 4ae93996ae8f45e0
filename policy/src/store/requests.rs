//! Access requests in the state database, beside the agreements they become. A
//! transition is one conditional `UPDATE … WHERE state = 'submitted'`, so two
//! reviewers acting at once cannot both succeed; an approval writes the agreement
//! (through the same versioned edit as every agreement change) and the request's
//! new state in one transaction, so neither exists without the other.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::Row as _;

use super::{now, AgreementStore, Applied, Edit};
use crate::error::Refusal;
use crate::error::RequestRefusal;
use crate::request::{AccessRequest, RequestEvent, RequestState};
use crate::{Agreement, PolicyError};

/// Which requests a list returns; every member optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFilter {
    /// Only in this state.
    pub state: Option<RequestState>,
    /// Only to this provider department.
    pub provider: Option<String>,
    /// Only from this requesting department.
    pub consumer_department: Option<String>,
    /// Only those this department is a party to (as provider or requester).
    pub party: Option<String>,
    /// Only of this dataset.
    pub dataset: Option<String>,
}

/// The text form of times in the request columns: fixed width, so that text order
/// is time order on both databases.
pub(crate) fn column_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl AgreementStore {
    /// Keep a new request (state `submitted`) and its first history entry, filed by
    /// `actor`.
    pub async fn file_request(&self, r: &AccessRequest, actor: &str) -> Result<(), PolicyError> {
        let mut tx = self.pool.begin().await?;
        self.flush_on_commit(&mut tx).await?;
        sqlx::query(
            "INSERT INTO access_requests
                (id, state, provider, consumer_department, dataset, submitted_at, review_by,
                 expires_at, body)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&r.id)
        .bind(r.state.as_str())
        .bind(&r.provider)
        .bind(&r.consumer_department)
        .bind(&r.terms.dataset)
        .bind(column_time(r.submitted_at))
        .bind(column_time(r.review_by))
        .bind(column_time(r.terms.valid_until))
        .bind(encode(r)?)
        .execute(&mut *tx)
        .await?;
        insert_event(&mut tx, &r.id, "file", actor, None, Some(r)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// One request.
    pub async fn request(&self, id: &str) -> Result<Option<AccessRequest>, PolicyError> {
        let body: Option<String> =
            sqlx::query_scalar("SELECT body FROM access_requests WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        body.map(|b| decode(id, &b)).transpose()
    }

    /// The requests `filter` picks, newest first.
    pub async fn requests(
        &self,
        filter: &RequestFilter,
    ) -> Result<Vec<AccessRequest>, PolicyError> {
        // Absent filters bind NULL and match everything: one statement for every
        // combination.
        let rows = sqlx::query(
            "SELECT id, body FROM access_requests
             WHERE ($1 IS NULL OR state = $1)
               AND ($2 IS NULL OR provider = $2)
               AND ($3 IS NULL OR consumer_department = $3)
               AND ($4 IS NULL OR provider = $4 OR consumer_department = $4)
               AND ($5 IS NULL OR dataset = $5)
             ORDER BY submitted_at DESC, id DESC",
        )
        .bind(filter.state.map(RequestState::as_str))
        .bind(filter.provider.as_deref())
        .bind(filter.consumer_department.as_deref())
        .bind(filter.party.as_deref())
        .bind(filter.dataset.as_deref())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row: &AnyRow| {
                let id: String = row.try_get("id")?;
                let body: String = row.try_get("body")?;
                decode(&id, &body)
            })
            .collect()
    }

    /// Every transition of a request, oldest first.
    pub async fn request_history(&self, id: &str) -> Result<Vec<RequestEvent>, PolicyError> {
        let rows = sqlx::query(
            "SELECT seq, action, actor, at, before_json, after_json
             FROM access_request_history WHERE request_id = $1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event).collect()
    }

    /// Submitted requests past their review deadline at `now`, per provider.
    pub async fn overdue_requests(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, i64)>, PolicyError> {
        Ok(sqlx::query_as(
            "SELECT provider, COUNT(*) FROM access_requests
             WHERE state = 'submitted' AND review_by < $1
             GROUP BY provider ORDER BY provider",
        )
        .bind(column_time(now))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Submitted requests whose asked validity ended before `now`.
    pub async fn lapsed_requests(&self, now: DateTime<Utc>) -> Result<Vec<String>, PolicyError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM access_requests WHERE state = 'submitted' AND expires_at < $1
             ORDER BY id",
        )
        .bind(column_time(now))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Move a submitted request to `to` as `actor` (refuse, withdraw, expire),
    /// `change` filling in the rest; refused when it is missing or no longer
    /// submitted. Returns the request after.
    pub async fn decide_request(
        &self,
        id: &str,
        to: RequestState,
        action: &str,
        actor: &str,
        change: impl FnOnce(&mut AccessRequest),
    ) -> Result<AccessRequest, PolicyError> {
        let mut tx = self.pool.begin().await?;
        self.flush_on_commit(&mut tx).await?;
        let before = claim(&mut tx, id, to, action).await?;
        let mut after = before.clone();
        after.state = to;
        after.decided_at = Some(Utc::now());
        after.decided_by = Some(actor.to_owned());
        change(&mut after);
        store_body(&mut tx, &after).await?;
        insert_event(&mut tx, id, action, actor, Some(&before), Some(&after)).await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Approve a submitted request as `actor`: make `edit` (the agreement its
    /// approval grants, or renews) after `guard` has seen the agreement as it is, and
    /// mark the request approved naming it — one transaction. Returns the request
    /// after and the agreement change (`None` when the agreement already said
    /// exactly that).
    pub async fn approve_request<G>(
        &self,
        id: &str,
        actor: &str,
        edit: Edit,
        guard: G,
    ) -> Result<(AccessRequest, Option<Applied>), PolicyError>
    where
        G: FnOnce(Option<&Agreement>) -> Result<(), Refusal>,
    {
        if let Edit::Create(a) | Edit::Put(a) | Edit::Update(a) = &edit {
            a.validate()?;
        }
        let mut conn = self.pool.acquire().await?;
        self.durable(&mut conn, true).await?;
        let result = self.approve_on(&mut conn, id, actor, &edit, guard).await;
        self.durable(&mut conn, false).await?;
        result
    }

    async fn approve_on<G>(
        &self,
        conn: &mut sqlx::AnyConnection,
        id: &str,
        actor: &str,
        edit: &Edit,
        guard: G,
    ) -> Result<(AccessRequest, Option<Applied>), PolicyError>
    where
        G: FnOnce(Option<&Agreement>) -> Result<(), Refusal>,
    {
        use sqlx::Connection as _;
        let mut tx = conn.begin().await?;
        self.flush_on_commit(&mut tx).await?;
        let before = claim(&mut tx, id, RequestState::Approved, "approve").await?;
        let applied = self.edit_in(&mut tx, edit, actor, guard).await?;
        let mut after = before.clone();
        after.state = RequestState::Approved;
        after.decided_at = Some(Utc::now());
        after.decided_by = Some(actor.to_owned());
        after.agreement = Some(edit.id().to_owned());
        store_body(&mut tx, &after).await?;
        insert_event(&mut tx, id, "approve", actor, Some(&before), Some(&after)).await?;
        tx.commit().await?;
        Ok((after, applied))
    }
}

/// Move request `id` from submitted to `to` — the write first, so that SQLite
/// takes its write lock at once — and read it as it was.
async fn claim(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &str,
    to: RequestState,
    action: &str,
) -> Result<AccessRequest, PolicyError> {
    let moved =
        sqlx::query("UPDATE access_requests SET state = $2 WHERE id = $1 AND state = 'submitted'")
            .bind(id)
            .bind(to.as_str())
            .execute(&mut **tx)
            .await?
            .rows_affected();
    let body: Option<String> = sqlx::query_scalar("SELECT body FROM access_requests WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    let Some(body) = body else {
        return Err(RequestRefusal::Missing(id.to_owned()).into());
    };
    let before = decode(id, &body)?;
    if moved == 0 {
        let verb = match action {
            "approve" => "approved",
            "refuse" => "refused",
            "withdraw" => "withdrawn",
            _ => "expired",
        };
        return Err(RequestRefusal::NotPending {
            id: id.to_owned(),
            state: before.state,
            verb,
        }
        .into());
    }
    Ok(before)
}

async fn store_body(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    r: &AccessRequest,
) -> Result<(), PolicyError> {
    sqlx::query("UPDATE access_requests SET state = $2, body = $3 WHERE id = $1")
        .bind(&r.id)
        .bind(r.state.as_str())
        .bind(encode(r)?)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn insert_event(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &str,
    action: &str,
    actor: &str,
    before: Option<&AccessRequest>,
    after: Option<&AccessRequest>,
) -> Result<(), PolicyError> {
    // The request's row is locked by this transaction (inserted or updated above),
    // so no other transition can take the same number.
    let seq: i64 = sqlx::query_scalar(
        "SELECT COALESCE(MAX(seq), 0) + 1 FROM access_request_history WHERE request_id = $1",
    )
    .bind(id)
    .fetch_one(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO access_request_history
            (request_id, seq, action, actor, at, before_json, after_json)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(seq)
    .bind(action)
    .bind(actor)
    .bind(now())
    .bind(before.map(encode).transpose()?)
    .bind(after.map(encode).transpose()?)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn encode(r: &AccessRequest) -> Result<String, PolicyError> {
    serde_json::to_string(r).map_err(|e| PolicyError::Corrupt {
        id: r.id.clone(),
        message: e.to_string(),
    })
}

fn decode(id: &str, body: &str) -> Result<AccessRequest, PolicyError> {
    serde_json::from_str(body).map_err(|e| PolicyError::Corrupt {
        id: id.to_owned(),
        message: e.to_string(),
    })
}

fn event(row: &AnyRow) -> Result<RequestEvent, PolicyError> {
    let json = |column: &str| -> Result<Option<Value>, PolicyError> {
        let text: Option<String> = row.try_get(column)?;
        text.map(|t| {
            serde_json::from_str(&t).map_err(|e| PolicyError::Corrupt {
                id: column.to_owned(),
                message: e.to_string(),
            })
        })
        .transpose()
    };
    Ok(RequestEvent {
        seq: row.try_get("seq")?,
        action: row.try_get("action")?,
        actor: row.try_get("actor")?,
        at: row.try_get("at")?,
        before: json("before_json")?,
        after: json("after_json")?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;
    use crate::request::tests::request;
    use crate::request::Narrowing;

    async fn store(dir: &tempfile::TempDir) -> AgreementStore {
        AgreementStore::connect(&AgreementStore::sqlite_url(&dir.path().join("s.db")), 2)
            .await
            .unwrap()
    }

    /// The request lifecycle on `s`.
    async fn lifecycle(s: &AgreementStore) {
        let r = request();
        s.file_request(&r, "urn:tongban:sz-hf:admin-01")
            .await
            .unwrap();
        assert_eq!(s.request(&r.id).await.unwrap().as_ref(), Some(&r));
        let mut other = request();
        other.id = "0193a0b0-0000-7000-8000-000000000002".into();
        other.provider = "sz-amr".into();
        other.terms.dataset = "legal_person".into();
        s.file_request(&other, "cli:ops").await.unwrap();

        let mine = RequestFilter {
            party: Some("sz-psb".into()),
            ..RequestFilter::default()
        };
        assert_eq!(s.requests(&mine).await.unwrap().len(), 1);
        let from_hf = RequestFilter {
            consumer_department: Some("sz-hf".into()),
            state: Some(RequestState::Submitted),
            ..RequestFilter::default()
        };
        assert_eq!(s.requests(&from_hf).await.unwrap().len(), 2);

        // Overdue per provider: review_by 2026-06-15 for both.
        let late = Utc.with_ymd_and_hms(2026, 6, 20, 0, 0, 0).unwrap();
        assert_eq!(
            s.overdue_requests(late).await.unwrap(),
            vec![("sz-amr".to_owned(), 1), ("sz-psb".to_owned(), 1)]
        );
        assert!(s
            .overdue_requests(Utc.with_ymd_and_hms(2026, 6, 2, 0, 0, 0).unwrap())
            .await
            .unwrap()
            .is_empty());

        // Approve in one transaction with the agreement.
        let version = s.version().await.unwrap();
        let grant = r
            .grant(&Narrowing::default(), "urn:tongban:sz-psb:admin-01")
            .unwrap();
        let (after, applied) = s
            .approve_request(
                &r.id,
                "urn:tongban:sz-psb:admin-01",
                Edit::Create(grant.clone()),
                |_| Ok(()),
            )
            .await
            .unwrap();
        assert_eq!(after.state, RequestState::Approved);
        assert_eq!(after.agreement.as_deref(), Some(grant.id.as_str()));
        assert_eq!(applied.unwrap().version, version + 1);
        assert_eq!(s.get(&grant.id).await.unwrap().unwrap().agreement, grant);

        // Nothing acts on it twice.
        let again = s
            .decide_request(&r.id, RequestState::Refused, "refuse", "x", |_| {})
            .await;
        assert!(matches!(
            again,
            Err(PolicyError::Request(RequestRefusal::NotPending {
                state: RequestState::Approved,
                ..
            }))
        ));
        assert!(matches!(
            s.decide_request("nope", RequestState::Withdrawn, "withdraw", "x", |_| {})
                .await,
            Err(PolicyError::Request(RequestRefusal::Missing(_)))
        ));

        // A refused guard leaves the request submitted and no agreement behind.
        let g2 = other
            .grant(&Narrowing::default(), "urn:tongban:sz-amr:admin-01")
            .unwrap();
        let refused = s
            .approve_request(&other.id, "y", Edit::Create(g2.clone()), |_| {
                Err(Refusal::NotPermitted("no".into()))
            })
            .await;
        assert!(refused.is_err());
        assert_eq!(
            s.request(&other.id).await.unwrap().unwrap().state,
            RequestState::Submitted
        );
        assert!(s.get(&g2.id).await.unwrap().is_none());

        let refused = s
            .decide_request(
                &other.id,
                RequestState::Refused,
                "refuse",
                "urn:tongban:sz-amr:admin-01",
                |r| r.reason = Some("no legal basis for business_scope".into()),
            )
            .await
            .unwrap();
        assert_eq!(
            refused.reason.as_deref(),
            Some("no legal basis for business_scope")
        );

        let h = s.request_history(&other.id).await.unwrap();
        assert_eq!(
            h.iter()
                .map(|e| (e.seq, e.action.as_str()))
                .collect::<Vec<_>>(),
            [(1, "file"), (2, "refuse")]
        );
        assert!(h[0].before.is_none());
        assert_eq!(h[1].before.as_ref().unwrap()["state"], "submitted");
        assert_eq!(h[1].after.as_ref().unwrap()["state"], "refused");
        assert_eq!(h[1].actor, "urn:tongban:sz-amr:admin-01");
        assert!(
            s.lapsed_requests(late).await.unwrap().is_empty(),
            "none submitted"
        );
    }

    #[tokio::test]
    async fn requests_move_through_their_states_with_history() {
        let dir = tempfile::tempdir().unwrap();
        lifecycle(&store(&dir).await).await;
    }

    #[tokio::test]
    async fn lapsed_requests_are_found_by_their_validity() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir).await;
        let r = request();
        s.file_request(&r, "x").await.unwrap();
        let end = r.terms.valid_until;
        assert!(s.lapsed_requests(end).await.unwrap().is_empty());
        let after = end + chrono::Duration::seconds(1);
        assert_eq!(s.lapsed_requests(after).await.unwrap(), [r.id]);
    }
}
