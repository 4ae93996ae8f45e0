//! `GET /openapi.json`: the OpenAPI 3.1 document of the counter, admin and auditor
//! APIs. It is kept in the repository (`docs/openapi.json`) and compiled in, so the
//! document served is the document reviewed; `tests/openapi.rs` checks the served API
//! against it.
//!
//! Datasets are configuration, so the schemas naming them — `Dataset`, `Field`, one
//! `Field.<dataset>` per dataset, the per-dataset shapes of `LookupRequest` and of an
//! agreement's fields, a bundle's subject — are rewritten at start-up from the
//! gateway's `[[datasets]]` ([`document`]): a client generated from `/openapi.json`
//! knows this gateway's datasets. The committed file is the document the demo's
//! config gives (a test holds it to that).

use std::convert::Infallible;
use std::sync::Arc;

use connectors::SubjectKind;
use http::{Request, StatusCode};
use serde_json::{json, Map, Value};
use tower::util::BoxCloneSyncService;

use super::route::RouteService;
use super::{Answer, Outcome};
use crate::config::DatasetConfig;
use crate::error::ApiError;

/// The path the document is served at.
pub const OPENAPI: &str = "/openapi.json";

/// The document as kept in the repository.
pub const DOCUMENT: &str = include_str!("../../../docs/openapi.json");

/// The document service, describing `datasets`. The document is built once; were the
/// embedded one broken (the tests rule that out) it would answer 500 rather than keep
/// the gateway from starting.
pub fn openapi_service<B: Send + 'static>(datasets: &[DatasetConfig]) -> RouteService<B> {
    let document = document(datasets).map(Arc::new);
    BoxCloneSyncService::new(tower::service_fn(move |_req: Request<B>| {
        let outcome = match &document {
            Ok(d) => Outcome::answer(Answer::Json {
                status: StatusCode::OK,
                body: d.as_ref().clone(),
            }),
            Err(e) => Outcome::error(ApiError::Internal(e.clone())),
        };
        std::future::ready(Ok::<_, Infallible>(outcome))
    }))
}

/// The embedded document with its dataset schemas describing `datasets`.
pub fn document(datasets: &[DatasetConfig]) -> Result<Value, String> {
    let mut doc: Value = serde_json::from_str(DOCUMENT)
        .map_err(|e| format!("the embedded docs/openapi.json is not JSON: {e}"))?;
    let schemas = doc["components"]["schemas"]
        .as_object_mut()
        .ok_or("docs/openapi.json has no components.schemas")?;
    schemas.retain(|name, _| !name.starts_with("Field."));
    let listed: Vec<String> = datasets
        .iter()
        .map(|d| format!("`{}` ({})", d.dataset, d.subject.describe()))
        .collect();
    schemas.insert(
        "Dataset".into(),
        json!({
            "type": "string",
            "enum": datasets.iter().map(|d| d.dataset.as_str()).collect::<Vec<_>>(),
            "description": format!(
                "A dataset this gateway serves, as its `[[datasets]]` config declares it \
                 (`GET /v1/catalogue` lists them): {}.",
                listed.join(", ")
            ),
        }),
    );
    let mut all: Vec<&str> = datasets
        .iter()
        .flat_map(|d| d.fields.iter().map(|f| f.name.as_str()))
        .collect();
    all.sort_unstable();
    all.dedup();
    let per: Vec<String> = datasets
        .iter()
        .map(|d| {
            let names: Vec<&str> = d.fields.iter().map(|f| f.name.as_str()).collect();
            format!("{}: {}", d.dataset, names.join(", "))
        })
        .collect();
    schemas.insert(
        "Field".into(),
        json!({"type": "string", "enum": all,
               "description": format!("A field of a dataset. {}.", per.join(". "))}),
    );
    for d in datasets {
        let names: Vec<&str> = d.fields.iter().map(|f| f.name.as_str()).collect();
        schemas.insert(
            field_schema(d),
            json!({"type": "string", "enum": names,
                   "description": format!("A field of `{}`.", d.dataset)}),
        );
    }
    lookup_requests(schemas, datasets)?;
    for agreement in ["AgreementInput", "Agreement"] {
        agreement_fields(schemas, agreement, datasets)?;
    }
    let mut subjects: Vec<Value> = Vec::new();
    for s in datasets.iter().map(|d| subject_schema(&d.subject)) {
        if !subjects.contains(&s) {
            subjects.push(s);
        }
    }
    let bundle_subject = schemas
        .get_mut("BundleRequest")
        .and_then(|b| b["properties"]["subject"].as_object_mut())
        .ok_or("docs/openapi.json has no BundleRequest subject")?;
    bundle_subject.insert("anyOf".into(), Value::Array(subjects));
    Ok(doc)
}

fn field_schema(d: &DatasetConfig) -> String {
    format!("Field.{}", d.dataset)
}

fn field_ref(d: &DatasetConfig) -> Value {
    json!({"$ref": format!("#/components/schemas/{}", field_schema(d))})
}

/// A subject of `kind`: the standard's schema, or the declared pattern.
fn subject_schema(kind: &SubjectKind) -> Value {
    let standard = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
    match kind {
        SubjectKind::ResidentId => standard("ResidentId"),
        SubjectKind::CreditCode => standard("CreditCode"),
        SubjectKind::LicenseId => standard("LicenseId"),
        SubjectKind::Pattern(p) => json!({
            "type": "string",
            "pattern": format!("^(?:{})$", p.as_str()),
            "maxLength": connectors::dataset::MAX_PATTERN_SUBJECT,
            "description": format!("An identifier matching {}.", p.as_str()),
        }),
    }
}

/// One `LookupRequest` shape per dataset, from the first as a template.
fn lookup_requests(
    schemas: &mut Map<String, Value>,
    datasets: &[DatasetConfig],
) -> Result<(), String> {
    let one_of = schemas
        .get_mut("LookupRequest")
        .and_then(|l| l["oneOf"].as_array_mut())
        .ok_or("docs/openapi.json has no LookupRequest.oneOf")?;
    let template = one_of
        .first()
        .cloned()
        .ok_or("LookupRequest.oneOf is empty")?;
    *one_of = datasets
        .iter()
        .map(|d| {
            let mut shape = template.clone();
            shape["title"] = json!(d.dataset.as_str());
            shape["properties"]["dataset"] = json!({"const": d.dataset.as_str()});
            let mut subject = subject_schema(&d.subject);
            subject["description"] = template["properties"]["subject"]["description"].clone();
            shape["properties"]["subject"] = subject;
            shape["properties"]["fields"]["items"] = field_ref(d);
            shape
        })
        .collect();
    Ok(())
}

/// An agreement's fields are those of its dataset: one `if dataset … then` per
/// dataset, the other conditions kept.
fn agreement_fields(
    schemas: &mut Map<String, Value>,
    name: &str,
    datasets: &[DatasetConfig],
) -> Result<(), String> {
    let all_of = schemas
        .get_mut(name)
        .and_then(|a| a["allOf"].as_array_mut())
        .ok_or_else(|| format!("docs/openapi.json has no {name}.allOf"))?;
    all_of.retain(|c| c["if"]["properties"]["dataset"].is_null());
    let per_dataset = datasets.iter().map(|d| {
        json!({
            "if": {"properties": {"dataset": {"const": d.dataset.as_str()}}, "required": ["dataset"]},
            "then": {"properties": {"fields": {"propertyNames": field_ref(d)}}},
        })
    });
    let rest = std::mem::take(all_of);
    all_of.extend(per_dataset);
    all_of.extend(rest);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed document is what the demo's datasets give; with
    /// `TONGBAN_OPENAPI_PRINT=1` the test prints the generated one instead (for a
    /// script that merges it into the file in its own key order).
    #[test]
    fn the_committed_document_describes_the_demo_datasets() {
        let datasets = crate::http::test_support::datasets();
        let generated = document(&datasets).unwrap_or(Value::Null);
        if std::env::var_os("TONGBAN_OPENAPI_PRINT").is_some() {
            println!("{generated}");
        }
        let committed: Value = serde_json::from_str(DOCUMENT).unwrap_or(Value::Null);
        assert!(
            generated == committed,
            "docs/openapi.json does not describe the demo's datasets as `document` does"
        );
        assert_eq!(
            generated["components"]["schemas"]["LookupRequest"]["oneOf"]
                .as_array()
                .map(Vec::len),
            Some(4)
        );
    }

    #[test]
    fn the_embedded_document_is_openapi_3_1() {
        let doc: Value = serde_json::from_str(DOCUMENT).unwrap_or(Value::Null);
        assert!(doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1.")));
        assert!(doc["paths"][OPENAPI]["get"].is_object());
    }
}
