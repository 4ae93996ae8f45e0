//! `POST /v1/bundle`: "one thing, one go" — the records one life event needs, in one
//! request.
//!
//! A bundle is named in the config (`[[bundles]]`) as a list of items, each a dataset
//! and where its subject comes from: the request's `subject`, or a value in an earlier
//! item's record (`"birth_certificate#/content/mother_id"`). Items run concurrently;
//! an item waits only for the item its subject comes from. Each item is validated,
//! decided by policy, fetched through its source's resilience layers and audited as
//! its own record, exactly like a lookup; a failing item is reported in place and
//! does not stop the others. A subject read from an earlier item must come from a
//! field that item returned in full, so a bundle never reveals more than the consumer
//! may see. The answer is signed and carries the bundle request's own audit receipt.
//!
//! ```json
//! {"bundle": "newborn", "subject": "1.2.156.3005.2.…", "matter": "newborn-registration",
//!  "case_id": "MZ-2026-000042"}
//! ```

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use audit::{AuditLog, Decision};
use bytes::Bytes;
use futures_util::future::{join_all, BoxFuture, FutureExt as _, Shared};
use http::Request;
use http_body::Body;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt as _};

use super::audit_layer::{Audited, Envelope};
use super::body::{read_json, BodyLimits};
use super::lookup::{token, validate, Asked, Datasets, LookupRequest, LookupService};
use super::parse::{caller, operator};
use super::render::{lookup_body, problem_body, Rendered};
use super::route::RouteService;
use super::{Answer, Outcome, Principal, RequestMeta};
use crate::config::{BundleConfig, BundleItem, ItemSubject};
use crate::error::ApiError;

/// The bundle path.
pub const BUNDLE: &str = "/v1/bundle";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BundleBody {
    bundle: String,
    subject: String,
    matter: String,
    case_id: String,
}

/// The bundle endpoint.
#[derive(Clone)]
pub struct Bundles {
    shared: Arc<Parts>,
}

struct Parts {
    bundles: HashMap<String, Arc<BundleConfig>>,
    /// The datasets a request's subject is checked against, before any item runs.
    datasets: Datasets,
    /// The lookup path every item goes through, as a lookup does.
    lookup: LookupService,
    audit: AuditLog,
    node: String,
    limits: BodyLimits,
}

/// A bundle request that passed validation.
struct Call {
    meta: RequestMeta,
    principal: Principal,
    operator: String,
    bundle: Arc<BundleConfig>,
    subject: String,
    matter: String,
    case_id: String,
    /// What every item's audit record starts from.
    envelope: Envelope,
}

impl Call {
    /// Item `item` of this bundle as a lookup of `subject`.
    fn lookup(&self, item: &BundleItem, subject: String) -> LookupRequest {
        LookupRequest {
            meta: self.meta.clone(),
            principal: self.principal.clone(),
            operator: self.operator.clone(),
            asked: asked(item, subject, &self.matter, &self.case_id),
        }
    }
}

/// What item `item` asks for `subject`.
fn asked(item: &BundleItem, subject: String, matter: &str, case_id: &str) -> Asked {
    Asked {
        dataset: item.dataset.as_str().to_owned(),
        subject,
        license_type: item.license_type.clone(),
        matter: matter.to_owned(),
        case_id: case_id.to_owned(),
        fields: item.fields.clone(),
    }
}

type ItemFuture = Shared<BoxFuture<'static, Audited>>;

/// The bundle endpoint as a route, its items sent through `lookup`.
pub fn bundle_service<B>(
    bundles: &[BundleConfig],
    datasets: Datasets,
    lookup: LookupService,
    audit: AuditLog,
    node: String,
    limits: BodyLimits,
) -> RouteService<B>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    let bundles = bundles
        .iter()
        .map(|b| (b.name.clone(), Arc::new(b.clone())))
        .collect();
    BoxCloneSyncService::new(Bundles {
        shared: Arc::new(Parts {
            bundles,
            datasets,
            lookup,
            audit,
            node,
            limits,
        }),
    })
}

impl<B> Service<Request<B>> for Bundles
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    type Response = Outcome;
    type Error = Infallible;
    type Future = super::BoxFuture<Outcome>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let shared = Arc::clone(&self.shared);
        Box::pin(async move { Ok(shared.serve(req).await) })
    }
}

impl Parts {
    async fn serve<B>(self: Arc<Self>, req: Request<B>) -> Outcome
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<tower::BoxError>,
    {
        let call = match self.parse(req).await {
            Ok(call) => Arc::new(call),
            Err(refusal) => return *refusal,
        };
        let futures = self.start_items(&call);
        let results = join_all(futures).await;
        answer(&call, &results)
    }

    async fn parse<B>(&self, req: Request<B>) -> Result<Call, Box<Outcome>>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<tower::BoxError>,
    {
        let refuse = |e| Box::new(Outcome::error(e));
        let envelope = Envelope::of(&req, &self.node);
        let (parts, body) = req.into_parts();
        let (meta, principal) = caller(&parts).map_err(refuse)?;
        let body: BundleBody = read_json(&parts.headers, body, &self.limits, "a bundle request")
            .await
            .map_err(refuse)?;
        let with_facts = |e: ApiError| {
            let mut o = Outcome::error(e);
            o.facts.subject = Some(body.subject.clone());
            o.facts.matter = Some(body.matter.clone());
            o.facts.case_id = Some(body.case_id.clone());
            o.facts.detail = Some(json!({"bundle": body.bundle}));
            Box::new(o)
        };
        let operator = operator(&parts.headers).map_err(with_facts)?;
        let bundle = self.bundles.get(&body.bundle).cloned().ok_or_else(|| {
            let mut known: Vec<&str> = self.bundles.keys().map(String::as_str).collect();
            known.sort_unstable();
            with_facts(ApiError::BadRequest(format!(
                "bundle: no bundle named {:?}; known bundles: {}",
                body.bundle,
                known.join(", ")
            )))
        })?;
        // The request's own subject, matter and case id are checked before any item
        // runs, by the rules each item's lookup applies, so a bad request is refused
        // whole rather than item by item.
        for item in bundle
            .items
            .iter()
            .filter(|i| i.subject == ItemSubject::Request)
        {
            let lookup = LookupRequest {
                meta: meta.clone(),
                principal: principal.clone(),
                operator: operator.clone(),
                asked: asked(item, body.subject.clone(), &body.matter, &body.case_id),
            };
            validate(&self.datasets, lookup).map_err(with_facts)?;
        }
        token("matter", &body.matter).map_err(with_facts)?;
        token("case_id", &body.case_id).map_err(with_facts)?;
        Ok(Call {
            meta,
            principal,
            operator,
            bundle,
            subject: body.subject,
            matter: body.matter,
            case_id: body.case_id,
            envelope,
        })
    }

    /// One future per item, each shared so that the items taking their subject from
    /// it can wait for it; an item depends only on earlier items (checked in config).
    fn start_items(self: &Arc<Self>, call: &Arc<Call>) -> Vec<ItemFuture> {
        let mut futures: Vec<ItemFuture> = Vec::with_capacity(call.bundle.items.len());
        for index in 0..call.bundle.items.len() {
            let dependency = match &call.bundle.items[index].subject {
                ItemSubject::Request => None,
                ItemSubject::Item { index: from, .. } => futures.get(*from).cloned(),
            };
            let (me, call) = (Arc::clone(self), Arc::clone(call));
            let future = async move {
                let item = &call.bundle.items[index];
                let subject = match dependency {
                    None => Ok(call.subject.clone()),
                    Some(d) => derived_subject(&call.bundle, item, &d.await),
                };
                me.item(&call, item, subject).await
            };
            futures.push(future.boxed().shared());
        }
        futures
    }

    /// One item through the lookup path, then its own audit record: an item whose
    /// record cannot be written is answered with audit-unavailable and no data, like
    /// any request.
    async fn item(
        &self,
        call: &Call,
        item: &BundleItem,
        subject: Result<String, ApiError>,
    ) -> Audited {
        let mut outcome = match subject {
            Ok(subject) => match self
                .lookup
                .clone()
                .oneshot(call.lookup(item, subject))
                .await
            {
                Ok(o) => o,
                Err(never) => match never {},
            },
            Err(e) => {
                // No subject to look up: the item is described without one.
                let mut o = asked(item, String::new(), &call.matter, &call.case_id)
                    .describe(Outcome::error(e));
                o.facts.subject = None;
                o
            }
        };
        outcome
            .facts
            .merge_detail(json!({"bundle": call.bundle.name, "item": item.name}));
        let request_id = &call.meta.id;
        call.envelope
            .commit(&self.audit, outcome, |o| item_rendered(item, o, request_id))
            .await
    }
}

/// The subject an item reads from an earlier item's answer. Only a field the
/// consumer received in full may lead to another record.
fn derived_subject(
    bundle: &BundleConfig,
    item: &BundleItem,
    from: &Audited,
) -> Result<String, ApiError> {
    let ItemSubject::Item { index, pointer } = &item.subject else {
        return Err(ApiError::Internal("derived subject of a root item".into()));
    };
    let source = bundle
        .items
        .get(*index)
        .map(|i| i.name.as_str())
        .unwrap_or("?");
    let field = item.subject.field().unwrap_or_default();
    let answer = match (&from.outcome.result, &from.receipt) {
        (Ok(Answer::Lookup(l)), Some(_)) => l,
        _ => {
            return Err(ApiError::Dependency(format!(
                "item {} was not tried: it reads its subject from item {source}, which failed \
                 ({})",
                item.name,
                from.outcome.status().as_u16()
            )))
        }
    };
    if answer.masked.iter().any(|m| m == field) || !answer.record.contains_key(field) {
        return Err(ApiError::Dependency(format!(
            "item {} was not tried: it reads its subject from field {field} of item {source}, \
             which the agreement does not grant in full",
            item.name
        )));
    }
    follow(&answer.record, pointer)
        .and_then(|v| v.as_str().map(str::to_owned))
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            ApiError::Dependency(format!(
                "item {} was not tried: the record of item {source} holds no subject at {pointer}",
                item.name
            ))
        })
}

/// Resolves a JSON pointer in `record`, looking into strings that hold JSON (an
/// e-licence's `content` is such a string) along the way.
fn follow(record: &Map<String, Value>, pointer: &str) -> Option<Value> {
    let mut current = Value::Object(record.clone());
    for token in pointer.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        if let Value::String(s) = &current {
            current = serde_json::from_str(s).ok()?;
        }
        current = match current {
            Value::Object(mut m) => m.remove(&token)?,
            Value::Array(mut a) => {
                let i: usize = token.parse().ok()?;
                (i < a.len()).then(|| a.swap_remove(i))?
            }
            _ => return None,
        };
    }
    Some(current)
}

/// The bundle answer (its items each with their own receipt) and the facts of the
/// bundle request's own audit record.
fn answer(call: &Call, results: &[Audited]) -> Outcome {
    let request_id = &call.meta.id;
    let mut items = Vec::with_capacity(results.len());
    let mut summary = Vec::with_capacity(results.len());
    for (item, r) in call.bundle.items.iter().zip(results) {
        let status = r.outcome.status().as_u16();
        summary.push(json!({
            "item": item.name,
            "dataset": item.dataset.as_str(),
            "subject": r.outcome.facts.subject,
            "status": status,
            "audit_seq": r.receipt.as_ref().map(|x| x.seq),
        }));
        items.push(r.rendered.with_receipt(r.receipt.as_ref()));
    }
    let complete = results
        .iter()
        .all(|r| r.outcome.status() == http::StatusCode::OK);
    let mut body = Map::new();
    body.insert("request_id".into(), json!(request_id));
    body.insert("bundle".into(), json!(call.bundle.name));
    body.insert("subject".into(), json!(call.subject));
    body.insert("matter".into(), json!(call.matter));
    body.insert("case_id".into(), json!(call.case_id));
    body.insert("complete".into(), json!(complete));
    body.insert("items".into(), Value::Array(items));
    let mut outcome = Outcome::answer(Answer::Json {
        status: http::StatusCode::OK,
        body: Value::Object(body),
    });
    outcome.facts.subject = Some(call.subject.clone());
    outcome.facts.matter = Some(call.matter.clone());
    outcome.facts.case_id = Some(call.case_id.clone());
    outcome.facts.decision = Some(Decision::Allow);
    outcome.facts.detail = Some(json!({
        "bundle": call.bundle.name,
        "complete": complete,
        "items": summary,
    }));
    outcome
}

/// An item's answer as the bundle carries it (before its receipt): its record or
/// its problem, named by the item.
fn item_rendered(item: &BundleItem, o: &Outcome, request_id: &str) -> Rendered {
    let status = o.status();
    let mut body = match &o.result {
        Ok(Answer::Lookup(l)) => lookup_body(l),
        Err(e) => {
            let mut b = Map::new();
            b.insert("dataset".into(), json!(item.dataset.as_str()));
            b.insert("subject".into(), json!(o.facts.subject));
            b.insert("problem".into(), Value::Object(problem_body(e, request_id)));
            b
        }
        // An item either fetched a record or failed; anything else is a bug.
        Ok(_) => {
            let e = ApiError::Internal("bundle item".into());
            Map::from_iter([(
                "problem".to_owned(),
                Value::Object(problem_body(&e, request_id)),
            )])
        }
    };
    body.insert("item".into(), json!(item.name));
    body.insert("status".into(), json!(status.as_u16()));
    if let Some(t) = &item.license_type {
        body.insert("license_type".into(), json!(t));
    }
    Rendered::json(status, "application/json", body)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use bytes::Bytes;
    use connectors::{Dataset, Record};
    use http::{Method, StatusCode};
    use http_body_util::Full;

    use super::*;
    use crate::http::render::rendered;
    use crate::http::test_support::{
        lookup_answer, receipt, recorder, records, stamped, Fixture, Seen, CASE_ID, OPERATOR,
    };

    /// A company with a legal-person record (the bundle's root subject).
    const COMPANY: &str = "91350100M000100Y43";
    /// Its legal representative.
    const REP: &str = "11010519491231002X";

    fn rep_record(rep: &str) -> Record {
        let mut record = Record::new();
        record.insert("legal_representative_id".into(), json!(rep));
        record
    }

    #[test]
    fn pointers_look_into_json_strings() {
        let record: Map<String, Value> = serde_json::from_value(json!({
            "content": "{\"mother_id\": \"M\", \"parents\": [\"A\", \"B\"], \"a/b\": 1}",
            "holder_id": "H",
        }))
        .unwrap();
        assert_eq!(follow(&record, "/holder_id"), Some(json!("H")));
        assert_eq!(follow(&record, "/content/mother_id"), Some(json!("M")));
        assert_eq!(follow(&record, "/content/parents/1"), Some(json!("B")));
        assert_eq!(follow(&record, "/content/a~1b"), Some(json!(1)));
        assert_eq!(follow(&record, "/content/nope"), None);
        assert_eq!(follow(&record, "/holder_id/x"), None);
        assert_eq!(follow(&record, "/content/parents/9"), None);
    }

    fn bundle() -> BundleConfig {
        let item = |name: &str, dataset, subject| BundleItem {
            name: name.into(),
            dataset,
            subject,
            license_type: None,
            fields: None,
        };
        BundleConfig {
            name: "company-opening".into(),
            description: String::new(),
            items: vec![
                item(
                    "company",
                    Dataset::new("legal_person"),
                    ItemSubject::Request,
                ),
                item(
                    "rep",
                    Dataset::new("population"),
                    ItemSubject::Item {
                        index: 0,
                        pointer: "/legal_representative_id".into(),
                    },
                ),
            ],
        }
    }

    fn answered(masked: &[&str]) -> Audited {
        let mut answer = lookup_answer("legal_person", COMPANY, rep_record(REP));
        answer.masked = masked.iter().map(|m| m.to_string()).collect();
        let outcome = Outcome::answer(Answer::Lookup(answer));
        Audited {
            request_id: "r".into(),
            rendered: rendered(&outcome, "r"),
            outcome,
            receipt: Some(receipt(1)),
        }
    }

    #[test]
    fn subjects_follow_only_links_granted_in_full() {
        let b = bundle();
        let rep = &b.items[1];
        assert_eq!(derived_subject(&b, rep, &answered(&[])).unwrap(), REP);
        let masked = derived_subject(&b, rep, &answered(&["legal_representative_id"]));
        assert!(
            matches!(&masked, Err(ApiError::Dependency(m)) if m.contains("in full")),
            "{masked:?}"
        );
        let outcome = Outcome::error(ApiError::NotFound {
            dataset: "legal_person".into(),
        });
        let failed = Audited {
            request_id: "r".into(),
            rendered: rendered(&outcome, "r"),
            outcome,
            receipt: None,
        };
        let e = derived_subject(&b, rep, &failed).unwrap_err();
        assert_eq!(e.status(), http::StatusCode::FAILED_DEPENDENCY);
        assert!(e.to_string().contains("failed (404)"), "{e}");
    }

    /// The company-opening bundle over a lookup path that answers every item with
    /// `answer`, each item's audit record going to `log`.
    fn bundles(
        log: &AuditLog,
        answer: impl Fn(&LookupRequest) -> Outcome + Send + Sync + 'static,
    ) -> (RouteService<Full<Bytes>>, Seen<LookupRequest>) {
        let (lookup, seen) = recorder(move |r: &LookupRequest| r.asked.describe(answer(r)));
        let svc = bundle_service(
            &[bundle()],
            crate::http::test_support::datasets(),
            lookup,
            log.clone(),
            "gw-test".into(),
            crate::http::test_support::body_limits(4096),
        );
        (svc, seen)
    }

    /// A bundle request for `subject`.
    fn request(name: &str, subject: &str) -> Request<Full<Bytes>> {
        let body = json!({"bundle": name, "subject": subject, "matter": "company-opening",
                          "case_id": CASE_ID});
        stamped(Method::POST, BUNDLE, true, body.to_string())
    }

    /// A record for every item: the company names [`REP`].
    fn found(r: &LookupRequest) -> Outcome {
        Outcome::answer(Answer::Lookup(lookup_answer(
            &r.asked.dataset,
            &r.asked.subject,
            rep_record(REP),
        )))
    }

    #[tokio::test]
    async fn each_item_goes_through_the_lookup_path_and_is_audited_on_its_own() {
        let f = Fixture::new().await;
        let log = f.audit().await;
        let (svc, seen) = bundles(&log, found);
        let req = request("company-opening", COMPANY);
        let id = req.extensions().get::<RequestMeta>().unwrap().id.clone();
        let outcome = svc.oneshot(req).await.unwrap();

        let asked: Vec<(String, String)> = seen
            .take()
            .into_iter()
            .map(|r| {
                assert_eq!((&*r.operator, &*r.meta.id), (OPERATOR, &*id));
                assert_eq!(
                    (&*r.asked.matter, &*r.asked.case_id),
                    ("company-opening", CASE_ID)
                );
                (r.asked.dataset, r.asked.subject)
            })
            .collect();
        // The representative is looked up by the id the company's record gave.
        assert_eq!(
            asked,
            vec![
                ("legal_person".to_owned(), COMPANY.to_owned()),
                ("population".to_owned(), REP.to_owned())
            ]
        );
        let Ok(Answer::Json { body, .. }) = &outcome.result else {
            panic!("{:?}", outcome.result)
        };
        assert_eq!(body["complete"], json!(true));
        assert_eq!(body["items"][1]["subject"], json!(REP));

        let items = records(&log).await;
        assert_eq!(items.len(), 2, "one record per item");
        for (record, (item, subject)) in items.iter().zip([("company", COMPANY), ("rep", REP)]) {
            assert_eq!(record.request_id, id);
            assert_eq!(record.path, BUNDLE);
            assert_eq!(record.status, 200);
            assert_eq!(record.subject.as_deref(), Some(subject));
            assert_eq!(
                record.detail,
                Some(json!({"bundle": "company-opening", "item": item}))
            );
        }
    }

    #[tokio::test]
    async fn an_item_whose_source_item_failed_is_not_tried() {
        let f = Fixture::new().await;
        let log = f.audit().await;
        let (svc, seen) = bundles(&log, |_| {
            Outcome::error(ApiError::NotFound {
                dataset: "legal_person".into(),
            })
        });
        let outcome = svc
            .oneshot(request("company-opening", COMPANY))
            .await
            .unwrap();
        assert_eq!(seen.take().len(), 1, "only the root item ran");
        let Ok(Answer::Json { body, .. }) = &outcome.result else {
            panic!("{:?}", outcome.result)
        };
        assert_eq!(body["complete"], json!(false));
        assert_eq!(body["items"][0]["status"], json!(404));
        assert_eq!(body["items"][1]["status"], json!(424));
        // Both are audited, the untried one without a subject.
        let items = records(&log).await;
        assert_eq!(
            items.iter().map(|r| r.status).collect::<Vec<_>>(),
            vec![404, 424]
        );
        assert_eq!(items[1].subject, None);
    }

    #[tokio::test]
    async fn a_bad_request_is_refused_whole_before_any_item_runs() {
        let f = Fixture::new().await;
        let log = f.audit().await;
        let (svc, seen) = bundles(&log, found);
        // A root subject that breaks its identifier's rules.
        let o = svc
            .clone()
            .oneshot(request("company-opening", "91350100M000100Y44"))
            .await
            .unwrap();
        assert!(
            matches!(o.result, Err(ApiError::InvalidIdentifier { .. })),
            "{:?}",
            o.result
        );
        assert_eq!(o.status(), StatusCode::BAD_REQUEST);
        assert_eq!(o.facts.subject.as_deref(), Some("91350100M000100Y44"));
        assert_eq!(o.facts.detail, Some(json!({"bundle": "company-opening"})));
        // A bundle nobody configured.
        let o = svc.oneshot(request("newborn", COMPANY)).await.unwrap();
        let Err(ApiError::BadRequest(m)) = &o.result else {
            panic!("{:?}", o.result)
        };
        assert!(m.contains("known bundles: company-opening"), "{m}");
        assert!(seen.take().is_empty());
        assert!(records(&log).await.is_empty());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

        /// Any bytes or JSON as a bundle body: parsed, or a 400 naming the body.
        #[test]
        fn any_bundle_body_is_parsed_or_a_400(
            bytes in proptest::prop_oneof![
                proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
                proptest::prelude::Strategy::prop_map(
                    proptest::prop_oneof![
                        crate::http::body::fuzz_support::json_value(),
                        crate::http::body::fuzz_support::shaped(&["bundle", "subject", "matter", "case_id"]),
                    ],
                    |v| v.to_string().into_bytes(),
                ),
            ],
        ) {
            if let Err(e) = crate::http::body::fuzz_support::read::<BundleBody>(bytes) {
                proptest::prop_assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{:?}", e);
                proptest::prop_assert!(e.to_string().starts_with("body is not"), "{}", e);
            }
        }
    }
}
