//! Decision cost at 100, 10,000 and 100,000 agreements, side by side.
//!
//! ```sh
//! cargo run --release -p policy --example decision_bench
//! ```
//!
//! For each size it builds the agreement set (two agreements per consumer identity,
//! two matters each, a few role grants and explicit denies), then measures
//! `Authorizer::decide` one call at a time (percentiles of the median of 5 rounds):
//!
//! - **warm**: 200,000 decisions over 100 distinct (identity, dataset) pairs at every
//!   size (90 at 100 agreements, which have no more) — what grows is the number of
//!   agreements, not the working set — and, where there are that many pairs, over
//!   1,000 (a larger working set, still within the decider cache: the deciders then
//!   no longer fit the CPU caches);
//! - **first ask**: the first decision of up to 2,000 pairs never asked before (the decider is
//!   built then: a casbin enforcer over the pair's candidate lines);
//! - **evicting**: a decider cache a quarter the size of the working set (1,000
//!   pairs, fewer where the set has fewer), 80 % of the calls to a fifth of the
//!   pairs as busy counters ask more than quiet ones: what the cache's eviction
//!   keeps, and what a miss (building a decider) costs in the tail;
//! - **plain casbin**: one casbin enforcer holding every line, as a design without
//!   the index would have (fewer calls: it is slow);
//! - **load** of the whole set and **one change** applied to it (what the sync task
//!   does when an agreement changes);
//! - **RSS** of the process holding the authorizer after all of the above (its
//!   agreements and up to `cache_capacity` built deciders), before the plain casbin
//!   comparison is built.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark, not a service

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use casbin::{CoreApi, DefaultModel, Enforcer, MemoryAdapter, MgmtApi};
use chrono::{TimeZone as _, Utc};
use policy::{
    Agreement, Authorizer, Change, Decision, Effect, FieldRule, Question, RoleBinding, Settings,
};

const SIZES: [usize; 3] = [100, 10_000, 100_000];
const WARM_PAIRS: [usize; 2] = [100, 1_000];
const WARM_CALLS: usize = 200_000;
const ROUNDS: usize = 5;
const MISS_CALLS: usize = 2_000;
const EVICTING_PAIRS: usize = 1_000;
const EVICTING_CALLS: usize = 100_000;
const DATASETS: [&str; 2] = ["population", "legal_person"];
const MATTERS: [&str; 3] = [
    "social-insurance-enrollment",
    "pension-qualification",
    "employer-registration",
];

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn identity(i: usize) -> String {
    format!("urn:tongban:dept-{}:counter-{i}", i % 97)
}

fn agreement(id: String, consumer: String, dataset: &str, effect: Effect) -> Agreement {
    let mut fields = BTreeMap::new();
    if effect == Effect::Allow {
        fields.insert("name".to_owned(), FieldRule::Full);
        fields.insert("status".to_owned(), FieldRule::Full);
        fields.insert("registered_address".to_owned(), FieldRule::Masked);
    }
    Agreement {
        id,
        provider: "sz-psb".into(),
        consumer,
        dataset: dataset.into(),
        matters: vec![MATTERS[0].into(), MATTERS[1].into()],
        valid_from: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        valid_until: Utc.with_ymd_and_hms(2030, 12, 31, 23, 59, 59).unwrap(),
        hours: Some("08:00-20:00".parse().unwrap()),
        days: None,
        daily_quota: None,
        operator_rate: None,
        approver: "urn:tongban:sz-psb:admin-01".into(),
        effect,
        request: None,
        fields,
    }
}

/// `n` agreements: per identity one per dataset; every 100th identity also has an
/// explicit deny; ten role grants every identity holds.
fn agreements(n: usize) -> (Vec<Agreement>, Vec<RoleBinding>, usize) {
    let mut out = Vec::with_capacity(n);
    let roles_grants = 10.min(n / 10);
    for r in 0..roles_grants {
        out.push(agreement(
            format!("role-{r}"),
            "role:counter".into(),
            "e_license",
            Effect::Allow,
        ));
    }
    let mut i = 0;
    while out.len() < n {
        for d in DATASETS {
            if out.len() < n {
                out.push(agreement(
                    format!("a-{i}-{d}"),
                    identity(i),
                    d,
                    Effect::Allow,
                ));
            }
        }
        if i % 100 == 99 && out.len() < n {
            out.push(agreement(
                format!("deny-{i}"),
                identity(i),
                "population",
                Effect::Deny,
            ));
        }
        i += 1;
    }
    let roles = (0..i)
        .map(|k| RoleBinding {
            identity: identity(k),
            role: "counter".into(),
        })
        .collect();
    (out, roles, i)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_nanos() as f64 / 1000.0
}

fn question<'a>(consumer: &'a str, dataset: &'a str, matter: &'a str) -> Question<'a> {
    Question {
        consumer,
        dataset,
        matter,
        fields: None,
        // A Wednesday, 10:00 in Beijing: inside the hours of service.
        at: Utc.with_ymd_and_hms(2026, 6, 3, 2, 0, 0).unwrap(),
    }
}

struct Row {
    n: usize,
    warm: (f64, f64, f64),
    pairs: usize,
    warm_large: Option<f64>,
    miss: (f64, f64),
    evicting: (f64, f64),
    cache: (usize, usize),
    plain: f64,
    load_ms: f64,
    change_ms: f64,
    rss_mib: f64,
    allowed: f64,
}

/// Decisions over `pairs` distinct (identity, dataset) pairs (fewer when the set has
/// fewer), after one warm-up decision each, in `ROUNDS` rounds: the (p50, p99,
/// p99.9) of the median round — on a shared machine another process's burst lands
/// in one round, not in all — the share allowed, and the number of pairs.
fn warm(
    auth: &Authorizer,
    identities: usize,
    pairs: usize,
    rng: &mut Rng,
) -> ((f64, f64, f64), f64, usize) {
    let set = pick_pairs(identities, pairs, rng);
    for (c, d) in &set {
        auth.decide(&question(c, d, MATTERS[0])).unwrap();
    }
    let mut rounds = Vec::with_capacity(ROUNDS);
    let mut allowed = 0usize;
    for _ in 0..ROUNDS {
        let mut times = Vec::with_capacity(WARM_CALLS / ROUNDS);
        for _ in 0..WARM_CALLS / ROUNDS {
            let (c, d) = &set[rng.below(set.len())];
            let q = question(c, d, MATTERS[rng.below(MATTERS.len())]);
            let t = Instant::now();
            let decision = auth.decide(&q).unwrap();
            times.push(t.elapsed());
            allowed += usize::from(matches!(decision, Decision::Allow(_)));
        }
        times.sort();
        rounds.push((
            percentile(&times, 0.50),
            percentile(&times, 0.99),
            percentile(&times, 0.999),
        ));
    }
    rounds.sort_by(|a, b| a.1.total_cmp(&b.1));
    (
        rounds[ROUNDS / 2],
        allowed as f64 / WARM_CALLS as f64,
        set.len(),
    )
}

/// `pairs` distinct (identity, dataset) pairs (fewer when the set has fewer).
fn pick_pairs(identities: usize, pairs: usize, rng: &mut Rng) -> Vec<(String, &'static str)> {
    let pairs = pairs.min(identities * DATASETS.len());
    let mut chosen = std::collections::HashSet::new();
    let mut set = Vec::with_capacity(pairs);
    let mut k = 0;
    while set.len() < pairs {
        // Spread over the identities, so that the pairs' agreements (and deciders)
        // are not neighbours in memory.
        let i = (k * 7 + rng.below(7)) % identities;
        let d = DATASETS[rng.below(DATASETS.len())];
        if chosen.insert((i, d)) {
            set.push((identity(i), d));
        }
        k += 1;
    }
    set
}

/// Decisions with a decider cache a quarter the size of the working set, 80 % of
/// them to a fifth of the pairs: (p50, p99) of the median round, and the cache
/// capacity and number of pairs.
async fn evicting(n: usize, rng: &mut Rng) -> ((f64, f64), (usize, usize)) {
    let (set, roles, identities) = agreements(n);
    let pairs = pick_pairs(identities, EVICTING_PAIRS, rng);
    let capacity = (pairs.len() / 4).max(1);
    let settings = Settings {
        cache_capacity: capacity,
        ..Settings::default()
    };
    let auth = Authorizer::with_settings(settings, 0, set, roles)
        .await
        .unwrap();
    let hot = (pairs.len() / 5).max(1);
    let mut rounds = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let mut times = Vec::with_capacity(EVICTING_CALLS / ROUNDS);
        for _ in 0..EVICTING_CALLS / ROUNDS {
            let k = if rng.below(5) < 4 {
                rng.below(hot)
            } else {
                rng.below(pairs.len())
            };
            let (c, d) = &pairs[k];
            let q = question(c, d, MATTERS[rng.below(MATTERS.len())]);
            let t = Instant::now();
            auth.decide(&q).unwrap();
            times.push(t.elapsed());
        }
        times.sort();
        rounds.push((percentile(&times, 0.50), percentile(&times, 0.99)));
    }
    rounds.sort_by(|a, b| a.1.total_cmp(&b.1));
    (rounds[ROUNDS / 2], (capacity, pairs.len()))
}

async fn measure(n: usize) -> Row {
    let (set, roles, identities) = agreements(n);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ n as u64);

    // The authorizer owns the only copy, as in a gateway; the change below and the
    // plain-casbin comparison regenerate what they need.
    let changed = {
        let mut a = set[set.len() / 2].clone();
        a.matters.push(MATTERS[2].into());
        a
    };
    let started = Instant::now();
    let auth = Authorizer::with_settings(Settings::default(), 0, set, roles)
        .await
        .unwrap();
    let load_ms = started.elapsed().as_secs_f64() * 1000.0;

    let (small, allowed, pairs) = warm(&auth, identities, WARM_PAIRS[0], &mut rng);
    let warm_large = (identities * 2 >= WARM_PAIRS[1] * 2)
        .then(|| warm(&auth, identities, WARM_PAIRS[1], &mut rng).0 .1);

    let mut miss = Vec::with_capacity(MISS_CALLS);
    for k in 0..MISS_CALLS.min(identities) {
        // e_license for an identity not asked about before: every one of these is a
        // first ask, building a decider over the role grants.
        let c = identity(identities - 1 - k);
        let q = question(&c, "e_license", MATTERS[0]);
        let t = Instant::now();
        auth.decide(&q).unwrap();
        miss.push(t.elapsed());
    }
    miss.sort();

    let t = Instant::now();
    auth.apply(1, vec![Change::Put(Box::new(changed))])
        .await
        .unwrap();
    let change_ms = t.elapsed().as_secs_f64() * 1000.0;

    let rss_mib = rss_mib();
    drop(auth);
    let (evicting, cache) = evicting(n, &mut rng).await;
    let plain = plain_casbin(&agreements(n).0, identities, &mut rng).await;
    Row {
        n,
        warm: small,
        pairs,
        warm_large,
        miss: (percentile(&miss, 0.50), percentile(&miss, 0.99)),
        evicting,
        cache,
        plain,
        load_ms,
        change_ms,
        rss_mib,
        allowed,
    }
}

/// Median µs of `enforce` on one enforcer holding every line (no index).
async fn plain_casbin(set: &[Agreement], identities: usize, rng: &mut Rng) -> f64 {
    let model = DefaultModel::from_str(
        r#"
[request_definition]
r = sub, dataset, matter, time
[policy_definition]
p = sub, dataset, matter, from, until, agreement, eft
[role_definition]
g = _, _
[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))
[matchers]
m = g(r.sub, p.sub) && r.dataset == p.dataset && r.matter == p.matter && r.time >= p.from && r.time <= p.until
"#,
    )
    .await
    .unwrap();
    let mut e = Enforcer::new(model, MemoryAdapter::default())
        .await
        .unwrap();
    let mut lines = Vec::new();
    for a in set {
        for m in &a.matters {
            lines.push(vec![
                a.consumer.clone(),
                a.dataset.clone(),
                m.clone(),
                "2026-01-01T00:00:00Z".into(),
                "2030-12-31T23:59:59Z".into(),
                a.id.clone(),
                a.effect.as_str().into(),
            ]);
        }
    }
    e.add_policies(lines).await.unwrap();
    let calls = (2_000_000 / set.len()).clamp(5, 20_000);
    let mut times = Vec::with_capacity(calls);
    for _ in 0..calls {
        let c = identity(rng.below(identities));
        let t = Instant::now();
        let _ = e
            .enforce((c.as_str(), DATASETS[0], MATTERS[0], "2026-06-03T02:00:00Z"))
            .unwrap();
        times.push(t.elapsed());
    }
    times.sort();
    percentile(&times, 0.5)
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map(|pages| pages * 4096.0 / (1024.0 * 1024.0))
        .unwrap_or(0.0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let row_only = std::env::args().any(|a| a == "--row-only");
    if !row_only {
        print_header();
    }
    run().await;
}

fn print_header() {
    println!(
        "policy decision cost (µs), one call at a time; {WARM_CALLS} calls in {ROUNDS} rounds, median round shown\n"
    );
    println!(
        "| agreements | pairs | p50 | p99 | p99.9 | p99, 1,000 pairs | first ask p50 | first ask p99 | plain casbin p50 | load (ms) | one change (ms) | RSS (MiB) | evicting p50 | evicting p99 | cache / pairs |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
}

async fn run() {
    // `decision_bench N` measures one size and prints its row; without arguments each
    // size runs in a fresh process of its own, so that none measures in the heap the
    // sizes before it left behind.
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    if sizes.is_empty() {
        let me = std::env::current_exe().expect("own path");
        let mut p99 = Vec::new();
        for n in SIZES {
            let out = std::process::Command::new(&me)
                .arg(n.to_string())
                .arg("--row-only")
                .output()
                .expect("run one size");
            let row = String::from_utf8_lossy(&out.stdout).into_owned();
            print!("{row}");
            // | n | pairs | p50 | p99 | …
            if let Some(v) = row
                .split('|')
                .nth(4)
                .and_then(|c| c.trim().parse::<f64>().ok())
            {
                p99.push(v);
            }
        }
        if let (Some(first), Some(last)) = (p99.first(), p99.last()) {
            println!(
                "\nflatness: p99 at {} / at {} = {:.2}× (target ≤ 2×, and p99 under 10 µs)",
                SIZES[SIZES.len() - 1],
                SIZES[0],
                last / first
            );
        }
        return;
    }
    let mut rows = Vec::new();
    for n in sizes {
        let r = measure(n).await;
        println!(
            "| {:>7} | {} | {:.1} | {:.1} | {:.1} | {} | {:.1} | {:.1} | {:.0} | {:.0} | {:.2} | {:.0} | {:.1} | {:.1} | {} / {} |",
            r.n,
            r.pairs,
            r.warm.0,
            r.warm.1,
            r.warm.2,
            r.warm_large.map_or("–".to_owned(), |v| format!("{v:.1}")),
            r.miss.0,
            r.miss.1,
            r.plain,
            r.load_ms,
            r.change_ms,
            r.rss_mib,
            r.evicting.0,
            r.evicting.1,
            r.cache.0,
            r.cache.1
        );
        rows.push(r);
    }
    if std::env::args().any(|a| a == "--row-only") {
        return;
    }
    if let (Some(first), Some(last)) = (rows.first(), rows.last()) {
        println!(
            "\nflatness: p99 at {} / at {} = {:.2}× (target ≤ 2×); allowed share {:.0} %",
            last.n,
            first.n,
            last.warm.1 / first.warm.1,
            last.allowed * 100.0
        );
    }
}
