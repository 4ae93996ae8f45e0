//! The writer: group commit onto the chain, with signed checkpoints.

use std::sync::Arc;
use std::time::Instant;

use sqlx::PgPool;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::{mpsc, oneshot, watch};

use super::batch::{chain, search_columns, state_of, AuditSettings, ChainState, Prepared};
use super::batch::{ARCHIVED, HEAD, SEALED};
use super::batch_note::BatchNote;
use super::chain::{AuditEntry, GENESIS};
use super::checkpoint::StoredCheckpoint;
use super::error::AuditError;
use super::frontier::behind;
use super::signing::Signer;
use super::sqlite_writer::SqliteWriter;
use super::store::{AuditStore, Database, CHAIN_LOCK};
use super::tlog::tree::Hash;
use super::tree_store;
use super::verify::{ChainChecker, VerifyFailure};

/// Where a record landed: in the chain, and in the Merkle tree with the proof.
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt {
    /// Sequence number.
    pub seq: i64,
    /// Chain hash of the record.
    pub hash: String,
    /// The record's canonical JSON: the tree's leaf is `SHA-256(0x00 ‖ record)`.
    pub record: String,
    /// Its leaf index in the tree (`seq - 1`).
    pub index: u64,
    /// The signed checkpoint (C2SP signed note) of the tree its batch made.
    pub checkpoint: BatchNote,
    /// The record's inclusion proof in that tree (RFC 9162 §2.1.3).
    pub inclusion: Vec<Hash>,
}

impl Receipt {
    /// The receipt as an answer carries it (its `audit` member): where the record is
    /// in the chain and in the Merkle tree, the record's exact bytes, the signed
    /// checkpoint of the tree its batch made, and the record's inclusion proof in it
    /// (standard base64 hashes, from the leaf up).
    pub fn to_json(&self) -> serde_json::Value {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        serde_json::json!({
            "seq": self.seq,
            "hash": self.hash,
            "index": self.index,
            // The record as the object it is (it is canonical JSON: see `write_json`).
            "record": serde_json::from_str::<serde_json::Value>(&self.record)
                .unwrap_or_else(|_| serde_json::Value::String(self.record.clone())),
            "checkpoint": &*self.checkpoint,
            "inclusion": self.inclusion.iter().map(|h| b64.encode(h.0)).collect::<Vec<_>>(),
        })
    }
}

/// Appends records to the chain with group commit: requests that arrive while a
/// commit is running wait and are committed together in the next transaction, so a
/// durable commit (fsync) is paid once per batch, not per request.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Pending>,
    store: AuditStore,
    /// Asks the writer to drain and stop ([`AuditLog::close`]).
    close: mpsc::Sender<oneshot::Sender<()>>,
    /// The signed note of the last batch the writer committed.
    latest: watch::Receiver<Option<Arc<str>>>,
}

struct Pending {
    entry: AuditEntry,
    reply: oneshot::Sender<Result<Receipt, AuditError>>,
}

impl AuditLog {
    /// Open the audit store of `db` and start the writer, which seals checkpoints
    /// with `signer`.
    pub async fn open(
        db: &Database,
        signer: Arc<Signer>,
        settings: AuditSettings,
    ) -> Result<Self, AuditError> {
        let store = AuditStore::open(db).await?;
        let added = store.catch_up_tree().await?;
        if added > 0 {
            tracing::info!(
                records = added,
                "audit tree caught up with records written before it"
            );
        }
        let mut backend = match db {
            Database::Sqlite(path) => Backend::Sqlite(SqliteWriter::start(
                path,
                Arc::clone(&signer),
                settings.clone(),
            )?),
            Database::Postgres(_) => match &store {
                AuditStore::Postgres(pool) => Backend::Postgres(pool.clone()),
                AuditStore::Sqlite(_) => return Err(AuditError::Store("store mismatch".into())),
            },
        };
        let state = backend.read_state().await?;
        check_unsealed_tail(&store, &state).await?;
        let (tx, rx) = mpsc::channel(settings.batch_max * 4);
        let (close, close_rx) = mpsc::channel(1);
        let (signed, latest) = watch::channel(None);
        let writer = Writer {
            backend,
            state,
            signer,
            last_sealed_at: Instant::now(),
            settings,
            signed,
        };
        tokio::spawn(writer.run(rx, close_rx));
        Ok(Self {
            tx,
            store,
            close,
            latest,
        })
    }

    /// The latest checkpoint (a C2SP signed note of the tree): the one this
    /// gateway's writer signed last, or the latest stored while it has signed none.
    pub async fn latest_checkpoint(&self) -> Result<Option<String>, AuditError> {
        let signed = self.latest.borrow().as_deref().map(str::to_owned);
        match signed {
            Some(note) => Ok(Some(note)),
            None => self.store.latest_note().await,
        }
    }

    /// Stop taking records, commit every record already handed in, seal the head with
    /// a checkpoint if anything is unsealed, and wait until that is durable. Appends
    /// after this fail with [`AuditError::Closed`]. Called at shutdown, once no
    /// request is in flight; calling it again returns at once.
    pub async fn close(&self) {
        let (done, finished) = oneshot::channel();
        if self.close.send(done).await.is_ok() {
            let _ = finished.await;
        }
    }

    /// Append `entry` and wait until it is durably committed.
    pub async fn append(&self, entry: AuditEntry) -> Result<Receipt, AuditError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending { entry, reply })
            .await
            .map_err(|_| AuditError::Closed)?;
        rx.await.map_err(|_| AuditError::Closed)?
    }

    /// The store, for reading.
    pub fn store(&self) -> &AuditStore {
        &self.store
    }
}

/// Before this writer seals anything, check the records after the last checkpoint:
/// the next checkpoint vouches for them, so a record edited, deleted or inserted
/// while no gateway ran must stop the gateway rather than be sealed. A crash cannot
/// cause this (every batch commits whole); tampering or a damaged store can.
async fn check_unsealed_tail(store: &AuditStore, state: &ChainState) -> Result<(), AuditError> {
    use futures_util::TryStreamExt as _;
    if state.seq <= state.sealed {
        return Ok(());
    }
    let anchor = if state.sealed == 0 {
        GENESIS.to_owned()
    } else {
        store
            .checkpoints(state.sealed, state.sealed)
            .await?
            .pop()
            .map(|c| c.hash)
            .ok_or_else(|| {
                AuditError::Store(format!(
                    "checkpoint {} vanished while opening",
                    state.sealed
                ))
            })?
    };
    let mut checker = ChainChecker::new(state.sealed + 1, &anchor);
    let mut rows = store.rows(state.sealed + 1, state.seq);
    let mut failure = None;
    while let Some(row) = rows.try_next().await? {
        if let Err(f) = checker.check(row.seq, &row.hash, row.record.as_bytes()) {
            failure = Some(f);
            break;
        }
    }
    if failure.is_none() && checker.expected() != state.seq + 1 {
        failure = Some(VerifyFailure {
            seq: checker.expected(),
            reason: format!("record {} is missing: deleted", checker.expected()),
        });
    }
    match failure {
        None => Ok(()),
        Some(f) => Err(AuditError::Store(format!(
            "the unsealed end of the audit chain (records {}..={}) does not verify at record {}: {}; \
             refusing to seal it: run `tongban audit verify` and investigate before serving",
            state.sealed + 1,
            state.seq,
            f.seq,
            f.reason
        ))),
    }
}

enum Backend {
    /// A dedicated thread and connection: this process is the only writer.
    Sqlite(SqliteWriter),
    /// Any pooled connection: the chain is shared, so its head is read under the
    /// advisory lock in every transaction.
    Postgres(PgPool),
}

impl Backend {
    /// Release the store: the SQLite writer's threads end and close their connections.
    async fn stop(self) {
        if let Backend::Sqlite(writer) = self {
            writer.stop().await;
        }
    }

    async fn read_state(&mut self) -> Result<ChainState, AuditError> {
        match self {
            Backend::Sqlite(writer) => writer.read_state().await,
            Backend::Postgres(pool) => {
                let mut conn = pool.acquire().await?;
                read_state_pg(&mut conn).await
            }
        }
    }

    /// One transaction: read or take the head, chain the records onto it (sealing
    /// when due), insert.
    async fn append(
        &mut self,
        cached: &ChainState,
        entries: Vec<AuditEntry>,
        time_due: bool,
        signer: &Signer,
        settings: &AuditSettings,
    ) -> Result<(Prepared, ChainState), AuditError> {
        match self {
            Backend::Sqlite(writer) => writer.append(cached.clone(), entries, time_due).await,
            Backend::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(CHAIN_LOCK)
                    .execute(&mut *tx)
                    .await?;
                let mut current = read_state_pg(&mut tx).await?;
                // Other gateways may have appended: what the frontier lacks for the
                // head now is read from the tree they wrote.
                current.tree = cached.tree.clone();
                let lacking = current.tree.lacking(current.seq);
                if !lacking.is_empty() {
                    let read = tree_store::read_pg(&mut tx, &lacking).await?;
                    if !current.tree.hold(current.seq, read) {
                        return Err(behind(current.seq));
                    }
                }
                let p = chain(&mut current, &entries, time_due, signer, settings)?;
                insert_pg(&mut tx, &p, &entries).await?;
                tree_store::insert_pg(&mut tx, &p.tree.stored).await?;
                tx.commit().await?;
                let state = current.after(&p);
                Ok((p, state))
            }
        }
    }
}

async fn read_state_pg(conn: &mut sqlx::PgConnection) -> Result<ChainState, AuditError> {
    let head: Option<(i64, String)> = sqlx::query_as(HEAD).fetch_optional(&mut *conn).await?;
    let archived: Option<(i64, String)> = if head.is_none() {
        sqlx::query_as(ARCHIVED).fetch_optional(&mut *conn).await?
    } else {
        None
    };
    let sealed: Option<i64> = sqlx::query_scalar(SEALED).fetch_one(&mut *conn).await?;
    Ok(state_of(head, archived, sealed))
}

async fn insert_pg(
    tx: &mut sqlx::PgConnection,
    p: &Prepared,
    entries: &[AuditEntry],
) -> Result<(), AuditError> {
    if !p.rows.is_empty() {
        // One statement per batch: arrays unnested server-side, one round trip.
        let mut cols: Vec<Vec<Option<String>>> =
            (0..8).map(|_| Vec::with_capacity(p.rows.len())).collect();
        for e in entries {
            for (i, c) in search_columns(e).into_iter().enumerate() {
                cols[i].push(c.map(str::to_owned));
            }
        }
        let mut q = sqlx::query(
            "INSERT INTO audit_log (seq, hash, record, time, consumer, operator, dataset, subject, matter, case_id, decision)
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                                  $7::text[], $8::text[], $9::text[], $10::text[], $11::text[])",
        )
        .bind(p.rows.iter().map(|r| r.seq).collect::<Vec<_>>())
        .bind(p.rows.iter().map(|r| r.hash.clone()).collect::<Vec<_>>())
        .bind(p.rows.iter().map(|r| r.record.clone()).collect::<Vec<_>>());
        for c in cols {
            q = q.bind(c);
        }
        q.execute(&mut *tx).await?;
    }
    if let Some(c) = &p.checkpoint {
        sqlx::query(
            "INSERT INTO audit_checkpoint (seq, hash, checkpoint, format) VALUES ($1, $2, $3, $4)",
        )
        .bind(c.seq)
        .bind(&c.hash)
        .bind(c.text())
        .bind(c.format())
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

struct Writer {
    backend: Backend,
    state: ChainState,
    signer: Arc<Signer>,
    last_sealed_at: Instant,
    settings: AuditSettings,
    /// Where [`AuditLog::latest_checkpoint`] reads the last note signed.
    signed: watch::Sender<Option<Arc<str>>>,
}

impl Writer {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Pending>,
        mut close: mpsc::Receiver<oneshot::Sender<()>>,
    ) {
        let max = self.settings.batch_max;
        let mut batch = Vec::with_capacity(max);
        let mut tick = tokio::time::interval(self.settings.checkpoint_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let closed = loop {
            tokio::select! {
                biased;
                n = rx.recv_many(&mut batch, max) => {
                    if n == 0 {
                        break None;
                    }
                    gather(&mut rx, &mut batch, max).await;
                    self.commit(&mut batch, false).await;
                }
                done = close.recv() => {
                    self.drain(&mut rx, &mut batch).await;
                    break done;
                }
                _ = tick.tick() => {
                    // A lone SQLite writer knows when nothing is unsealed; with a
                    // shared PostgreSQL chain, other gateways may have appended.
                    let idle = matches!(self.backend, Backend::Sqlite(_))
                        && self.state.seq == self.state.sealed;
                    if !idle && self.last_sealed_at.elapsed() >= self.settings.checkpoint_interval {
                        self.commit(&mut batch, false).await;
                    }
                }
            }
        };
        self.backend.stop().await;
        if let Some(done) = closed {
            let _ = done.send(());
        }
    }

    /// Take no more records, commit those already handed in, and seal the head.
    async fn drain(&mut self, rx: &mut mpsc::Receiver<Pending>, batch: &mut Vec<Pending>) {
        rx.close();
        while rx.recv_many(batch, self.settings.batch_max).await > 0 {
            self.commit(batch, false).await;
        }
        self.commit(batch, true).await;
    }

    /// Commit the waiting records (possibly none: a timed seal) and answer them;
    /// `seal` asks for a checkpoint now if anything is unsealed.
    async fn commit(&mut self, batch: &mut Vec<Pending>, seal: bool) {
        let records = batch.len();
        let (entries, replies): (Vec<AuditEntry>, Vec<_>) =
            batch.drain(..).map(|p| (p.entry, p.reply)).unzip();
        let started = Instant::now();
        let time_due = seal || self.last_sealed_at.elapsed() >= self.settings.checkpoint_interval;
        let result = self
            .backend
            .append(&self.state, entries, time_due, &self.signer, &self.settings)
            .await;
        if let Some(m) = &self.settings.metrics {
            m.commit(records, started.elapsed(), result.is_ok());
        }
        match result {
            Ok((prepared, state)) => {
                self.state = state;
                if let Some(c) = &prepared.checkpoint {
                    self.last_sealed_at = Instant::now();
                    self.copy_checkpoint(c).await;
                }
                let tree = prepared.tree;
                self.signed.send_replace(Some(Arc::from(tree.note.text())));
                for ((reply, r), inclusion) in
                    replies.into_iter().zip(prepared.rows).zip(tree.proofs)
                {
                    let _ = reply.send(Ok(Receipt {
                        index: u64::try_from(r.seq - 1).unwrap_or(0),
                        seq: r.seq,
                        hash: r.hash,
                        record: r.record,
                        checkpoint: tree.note.clone(),
                        inclusion,
                    }));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, records, "audit commit failed; refusing the batch");
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
                // The transaction rolled back; re-read the head in case the store
                // moved under us.
                if let Ok(s) = self.backend.read_state().await {
                    self.state = s;
                }
            }
        }
    }

    /// Keep a copy of the checkpoint outside the store, so that deleting records and
    /// their checkpoints together is still noticed.
    async fn copy_checkpoint(&self, c: &StoredCheckpoint) {
        let Some(path) = &self.settings.checkpoint_file else {
            return;
        };
        let line = format!("{}\n", c.to_json());
        let write = async {
            let mut f = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .await?;
            f.write_all(line.as_bytes()).await?;
            f.sync_data().await
        };
        if let Err(e) = write.await {
            tracing::error!(error = %e, file = %path.display(), seq = c.seq, "cannot copy the audit checkpoint outside the store");
        }
    }
}

/// Before committing, let the requests that are already running reach the audit
/// layer too: yield to the scheduler while that brings new records, up to a few
/// rounds. Under load this makes batches several times larger (a commit's cost is
/// mostly fixed: the transaction, the WAL write, the fsync); when idle nothing
/// arrives and the lone record is committed at once, with no timer added to its
/// latency.
async fn gather(rx: &mut mpsc::Receiver<Pending>, batch: &mut Vec<Pending>, max: usize) {
    const ROUNDS: usize = 8;
    for _ in 0..ROUNDS {
        if batch.len() >= max {
            return;
        }
        let before = batch.len();
        tokio::task::yield_now().await;
        while batch.len() < max {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        if batch.len() == before {
            return;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use crate::{state_db_options, verify_chain};
    use sqlx::ConnectOptions as _;
    use std::path::Path;
    use std::time::Duration;

    pub(crate) fn test_signer() -> Arc<Signer> {
        use rustls_pki_types::pem::PemObject as _;
        let pem = Signer::generate_pem().unwrap();
        let der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).unwrap();
        Arc::new(Signer::from_pkcs8(der.secret_pkcs8_der()).unwrap())
    }

    pub(crate) fn settings(every: i64) -> AuditSettings {
        AuditSettings {
            node: "gw-test".into(),
            origin: "tongban.test/audit".into(),
            batch_max: 8,
            checkpoint_every: every,
            checkpoint_interval: Duration::from_secs(3600),
            checkpoint_file: None,
            metrics: None,
        }
    }

    /// Hand `n` records in at once, each from a task of its own.
    fn spawn_appends(
        log: &AuditLog,
        n: usize,
        entry: impl Fn(usize) -> AuditEntry,
    ) -> Vec<tokio::task::JoinHandle<Result<Receipt, AuditError>>> {
        (0..n)
            .map(|i| {
                let (log, entry) = (log.clone(), entry(i));
                tokio::spawn(async move { log.append(entry).await })
            })
            .collect()
    }

    async fn open(path: &Path, every: i64) -> AuditLog {
        AuditLog::open(
            &Database::Sqlite(path.to_owned()),
            test_signer(),
            settings(every),
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn appends_chain_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let log = open(&path, 10).await;
        let handles = spawn_appends(&log, 50, |i| AuditEntry {
            request_id: format!("r{i}"),
            status: 200,
            ..Default::default()
        });
        let mut seqs: Vec<i64> = Vec::new();
        for h in handles {
            seqs.push(h.await.unwrap().unwrap().seq);
        }
        seqs.sort();
        assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
        let mut conn = state_db_options(&path).connect().await.unwrap();
        let report = verify_chain(&mut conn).await.unwrap();
        assert_eq!(report.records, 50);
        assert!(report.failure.is_none());
        let cps = log.store().checkpoints(1, 50).await.unwrap();
        // Sealed once 10 or more are unsealed, at the end of a batch of up to 8.
        assert!(cps.len() >= 3, "{cps:?}");
        assert!(cps.windows(2).all(|w| w[1].seq - w[0].seq < 10 + 8));

        // A reopened log continues the chain.
        drop(log);
        let log = open(&path, 10).await;
        let r = log.append(AuditEntry::default()).await.unwrap();
        assert_eq!(r.seq, 51);
        let report = verify_chain(&mut conn).await.unwrap();
        assert!(report.failure.is_none());
    }

    #[tokio::test]
    async fn every_receipt_proves_its_record_in_a_signed_tree_and_a_lost_tree_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let signer = test_signer();
        let open_with = |signer: Arc<Signer>| {
            let path = path.clone();
            async move {
                AuditLog::open(&Database::Sqlite(path), signer, settings(10))
                    .await
                    .unwrap()
            }
        };
        let log = open_with(Arc::clone(&signer)).await;
        let handles = spawn_appends(&log, 40, |i| AuditEntry {
            request_id: format!("r{i}"),
            ..Default::default()
        });
        let mut receipts = Vec::new();
        for h in handles {
            receipts.push(h.await.unwrap().unwrap().to_json());
        }
        for r in &receipts {
            let included = crate::check_receipt(r, signer.public_key()).unwrap();
            assert_eq!(included.origin, "tongban.test/audit");
            // Any changed byte of the record, a wrong index or another key fails.
            let mut edited = r.clone();
            edited["record"]["request_id"] = format!("R{}", included.index).into();
            assert!(crate::check_receipt(&edited, signer.public_key()).is_err());
            // A receipt of the earlier form (the record's bytes as a string) checks.
            let mut earlier = r.clone();
            earlier["record"] = included.record.clone().into();
            crate::check_receipt(&earlier, signer.public_key()).unwrap();
            earlier["record"] = included.record.replace("\"r", "\"R").into();
            assert!(crate::check_receipt(&earlier, signer.public_key()).is_err());
            let mut moved = r.clone();
            moved["index"] = (included.index ^ 1).into();
            assert!(crate::check_receipt(&moved, signer.public_key()).is_err());
            assert!(crate::check_receipt(r, test_signer().public_key()).is_err());
        }

        // Reopened (the frontier read back from the store), then with the tree lost:
        // each time the tree is the same and new receipts check against it.
        let tree_rows = || async {
            let mut conn = state_db_options(&path).connect().await.unwrap();
            sqlx::query_as::<_, (i64, Vec<u8>)>("SELECT idx, hash FROM audit_tree ORDER BY idx")
                .fetch_all(&mut conn)
                .await
                .unwrap()
        };
        let before = tree_rows().await;
        for lose_tree in [false, true] {
            log.close().await;
            drop(log.clone());
            if lose_tree {
                let mut conn = state_db_options(&path).connect().await.unwrap();
                sqlx::query("DELETE FROM audit_tree")
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            let log = open_with(Arc::clone(&signer)).await;
            let r = log.append(AuditEntry::default()).await.unwrap();
            crate::check_receipt(&r.to_json(), signer.public_key()).unwrap();
            log.close().await;
        }
        let store = AuditStore::open(&Database::Sqlite(path.clone()))
            .await
            .unwrap();
        assert_eq!(store.tree_size().await.unwrap(), 42);
        let after = tree_rows().await;
        assert_eq!(after[..before.len()], before[..]);
    }

    #[tokio::test]
    async fn the_wal_is_copied_into_the_database_without_a_commit_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let log = open(&path, 1_000_000).await;
        let before = std::fs::metadata(&path).unwrap().len();
        let handles = spawn_appends(&log, 400, |i| AuditEntry {
            request_id: format!("r{i}"),
            detail: Some(serde_json::json!({"pad": "x".repeat(200)})),
            ..Default::default()
        });
        for h in handles {
            h.await.unwrap().unwrap();
        }
        // Far below the writer's own checkpoint threshold: only the checkpointer
        // thread moves these pages from the WAL into the database file.
        let grown = async {
            while std::fs::metadata(&path).unwrap().len() <= before {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), grown)
            .await
            .expect("the database file never grew: the WAL was not checkpointed");
    }

    #[tokio::test]
    async fn an_edited_unsealed_record_stops_the_next_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let log = open(&path, 3).await;
        for i in 0..5 {
            log.append(AuditEntry {
                request_id: format!("r{i}"),
                ..Default::default()
            })
            .await
            .unwrap();
        }
        // Sealed at 3 (batches of one here); 4 and 5 are unsealed. No close: a crash.
        drop(log);
        let mut conn = state_db_options(&path).connect().await.unwrap();
        let sealed: i64 = sqlx::query_scalar("SELECT MAX(seq) FROM audit_checkpoint")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert!(sealed < 5, "sealed {sealed}");
        // An untouched tail reopens.
        drop(open(&path, 3).await);
        sqlx::query(
            "UPDATE audit_log SET record = replace(record, '\"r4\"', '\"r9\"') WHERE seq = 5",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        let err = AuditLog::open(&Database::Sqlite(path.clone()), test_signer(), settings(3))
            .await
            .err()
            .expect("a tampered tail must not be sealed");
        let text = err.to_string();
        assert!(text.contains("at record 5"), "{text}");
        assert!(text.contains("tongban audit verify"), "{text}");
        // Nothing was sealed over it.
        let after: i64 = sqlx::query_scalar("SELECT MAX(seq) FROM audit_checkpoint")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(after, sealed);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn close_commits_what_was_handed_in_and_seals_the_head() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let log = open(&path, 1000).await;
        let handles = spawn_appends(&log, 20, |i| AuditEntry {
            request_id: format!("r{i}"),
            ..Default::default()
        });
        // Let every append hand its record to the writer (one thread: they all run).
        tokio::task::yield_now().await;
        log.close().await;
        for h in handles {
            assert!(
                h.await.unwrap().is_ok(),
                "a record handed in before close was lost"
            );
        }
        let mut conn = state_db_options(&path).connect().await.unwrap();
        let report = verify_chain(&mut conn).await.unwrap();
        assert_eq!(report.records, 20);
        assert!(report.failure.is_none());
        let cps = log.store().checkpoints(1, 20).await.unwrap();
        assert_eq!(
            cps.last().map(|c| c.seq),
            Some(20),
            "the head is sealed: {cps:?}"
        );
        assert!(matches!(
            log.append(AuditEntry::default()).await,
            Err(AuditError::Closed)
        ));
        log.close().await; // a second close returns
    }

    #[tokio::test]
    async fn failed_commit_is_reported_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let log = open(&path, 1000).await;
        log.append(AuditEntry::default()).await.unwrap();
        let mut conn = state_db_options(&path).connect().await.unwrap();
        sqlx::query("CREATE TRIGGER refuse BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'refused'); END")
            .execute(&mut conn)
            .await
            .unwrap();
        assert!(matches!(
            log.append(AuditEntry::default()).await,
            Err(AuditError::Store(_))
        ));
        sqlx::query("DROP TRIGGER refuse")
            .execute(&mut conn)
            .await
            .unwrap();
        assert_eq!(log.append(AuditEntry::default()).await.unwrap().seq, 2);
        assert!(verify_chain(&mut conn).await.unwrap().failure.is_none());
    }
}
