//! The citizen API over mTLS: what the government portal sees of the accesses to a
//! citizen's records — refusals as attempts, delayed disclosure on both sides of its
//! day, display names from the config — and that only the portal's role gets it.

use audit::AuditEntry;
use chrono::{Days, NaiveDate, NaiveTime, TimeZone as _};
use http::StatusCode;
use serde_json::{json, Value};
use tongban_tests::{sample, Gateway};

const INVESTIGATION: &str = "benefit-fraud-investigation";
const ACCESSES: &str = "/citizen/v1/accesses";

/// Today in China Standard Time.
fn today() -> NaiveDate {
    chrono::Utc::now().with_timezone(&audit::cst()).date_naive()
}

/// An allowed lookup of `subject` under the investigation matter at noon (CST) of
/// `day`, appended to the gateway's own log as if it had happened then.
async fn back_dated(gw: &Gateway, subject: &str, day: NaiveDate) -> i64 {
    let noon = audit::cst()
        .from_local_datetime(&day.and_time(NaiveTime::from_hms_opt(12, 0, 0).expect("noon")))
        .single()
        .expect("a time");
    let entry = AuditEntry {
        time: noon
            .with_timezone(&chrono::Utc)
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        request_id: format!("back-dated-{day}"),
        node: "demo-1".into(),
        consumer: Some("urn:tongban:sz-hrss:counter-01".into()),
        operator: Some("inspector-7".into()),
        method: "POST".into(),
        path: "/v1/lookup".into(),
        matter: Some(INVESTIGATION.into()),
        case_id: Some(format!("JC-{day}")),
        dataset: Some("population".into()),
        subject: Some(subject.into()),
        fields: vec!["name".into(), "household_address".into()],
        agreement: Some("hrss-population-2026".into()),
        status: 200,
        ..AuditEntry::default()
    };
    let receipt = gw.running.app.audit.append(entry).await.expect("appended");
    receipt.seq
}

fn accesses_path(subject: &str) -> String {
    format!("{ACCESSES}?subject={subject}")
}

#[tokio::test]
async fn the_portal_sees_accesses_and_attempts_and_delayed_ones_only_from_their_day() {
    let gw = Gateway::start().await;
    let samples = gw.samples();
    let mut body = sample(&samples, "population", 200)["body"].clone();
    let subject = body["subject"].as_str().expect("subject").to_owned();
    let counter = gw.client("counter-a");

    // An allowed lookup, and a refused one by a department with no agreement.
    let a = counter
        .lookup(Some("clerk-001"), &body)
        .await
        .expect("answer");
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let a = gw
        .client("counter-b")
        .lookup(Some("clerk-b"), &body)
        .await
        .expect("answer");
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    // An investigation today: withheld for 90 days.
    body["matter"] = json!(INVESTIGATION);
    body["case_id"] = json!("JC-2026-0001");
    let a = counter
        .lookup(Some("inspector-7"), &body)
        .await
        .expect("answer");
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    // Two earlier investigations: one past its 90 days (shown), one not yet.
    let shown_day = today().checked_sub_days(Days::new(100)).expect("a day");
    let waiting_day = today().checked_sub_days(Days::new(80)).expect("a day");
    let shown_seq = back_dated(&gw, &subject, shown_day).await;
    back_dated(&gw, &subject, waiting_day).await;

    let portal = gw.client("portal");
    let a = portal.get(&accesses_path(&subject)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let b = &a.body;
    assert_eq!(b["subject"], subject.as_str());
    assert_eq!(b["total"], 3, "{b:#}");
    let list = b["accesses"].as_array().expect("accesses");
    assert_eq!(list.len(), 3);
    // The allowed lookup: department and matter by their display names.
    let allowed = &list[0];
    assert_eq!(allowed["outcome"], "disclosed");
    assert_eq!(allowed["department"]["code"], "sz-hrss");
    assert_eq!(
        allowed["department"]["display_zh"],
        "深圳市人力资源和社会保障局"
    );
    assert_eq!(allowed["matter"]["display_zh"], "社会保险参保登记");
    assert_eq!(allowed["operator"], "clerk-001");
    assert_eq!(allowed["case_id"], body_case(&samples));
    assert_eq!(
        allowed["fields"],
        json!(["name", "birth_date", "household_address"])
    );
    // The refusal is an attempt.
    let refused = &list[1];
    assert_eq!(
        (
            &refused["outcome"],
            &refused["attempt"],
            &refused["decision"]
        ),
        (&json!("refused"), &json!(true), &json!("deny"))
    );
    assert_eq!(refused["department"]["display_zh"], "深圳市民政局");
    assert_eq!(refused["fields"], json!([]));
    // The investigation past its day is shown; the other two are withheld, and the
    // answer says so and from when.
    assert_eq!(list[2]["seq"], shown_seq);
    assert_eq!(
        list[2]["matter"]["display_en"],
        "Benefit fraud investigation"
    );
    let first_due = waiting_day
        .checked_add_days(Days::new(90))
        .expect("a day")
        .format("%Y-%m-%d")
        .to_string();
    assert_eq!(b["withheld"]["count"], 2, "{b:#}");
    assert_eq!(b["withheld"]["earliest_disclosure"], first_due.as_str());
    assert!(b["withheld"]["notice"]["zh"]
        .as_str()
        .is_some_and(|n| n.contains(&first_due) && n.contains('2')));
    assert_eq!(b["next"], Value::Null);

    // The query itself is audited, naming the subject it asked about.
    let rec = gw.last_audit().await;
    assert_eq!(rec["path"], ACCESSES);
    assert_eq!(rec["consumer"], "urn:tongban:sz-data:portal-01");
    assert_eq!(rec["subject"], subject.as_str());
    assert_eq!(rec["decision"], "allow");
    assert_eq!(rec["detail"]["citizen_query"]["subject"], subject.as_str());
    assert_eq!(rec["detail"]["withheld"], 2);
    assert_eq!(
        a.body["audit"]["seq"], rec["seq"],
        "the answer carries its receipt"
    );

    // Portal queries are not accesses to records: asking again lists the same.
    let again = portal
        .get(&format!("{}&limit=2", accesses_path(&subject)))
        .await;
    assert_eq!(again.body["total"], 3);
    assert_eq!(again.body["count"], 2);
    let next = again.body["next"].as_str().expect("a next page").to_owned();
    let rest = portal.get(&next).await;
    assert_eq!(rest.body["accesses"][0]["seq"], shown_seq, "{}", rest.body);
    assert_eq!(rest.body["next"], Value::Null);
    assert_eq!(
        rest.body["withheld"]["count"], 2,
        "every page says what is withheld"
    );
}

/// The case id of the demo's allowed population sample.
fn body_case(samples: &[Value]) -> Value {
    sample(samples, "population", 200)["body"]["case_id"].clone()
}

#[tokio::test]
async fn a_matter_without_delay_is_shown_at_once() {
    let gw = Gateway::start_with(|c| {
        if let Some(m) = c.policy.matter_info.get_mut(INVESTIGATION) {
            m.disclose_after_days = 0;
        }
    })
    .await;
    let samples = gw.samples();
    let mut body = sample(&samples, "population", 200)["body"].clone();
    body["matter"] = json!(INVESTIGATION);
    let subject = body["subject"].as_str().expect("subject").to_owned();
    let a = gw
        .client("counter-a")
        .lookup(Some("inspector-7"), &body)
        .await
        .expect("answer");
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let a = gw.client("portal").get(&accesses_path(&subject)).await;
    assert_eq!(a.body["total"], 1, "{}", a.body);
    assert_eq!(a.body["accesses"][0]["matter"]["code"], INVESTIGATION);
    assert_eq!(
        a.body["withheld"],
        json!({"count": 0, "earliest_disclosure": null, "notice": null})
    );
}

#[tokio::test]
async fn only_the_portal_role_is_answered_and_bad_subjects_name_the_parameter() {
    let gw = Gateway::start().await;
    let subject = sample(&gw.samples(), "population", 200)["body"]["subject"]
        .as_str()
        .expect("subject")
        .to_owned();
    for cert in ["counter-a", "admin", "auditor"] {
        let a = gw.client(cert).get(&accesses_path(&subject)).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{cert}");
        assert_eq!(a.headers["content-type"], "application/problem+json");
        assert_eq!(a.body["type"], "/problems/role-required");
        // Refused, and audited naming whom it asked about.
        let rec = gw.last_audit().await;
        assert_eq!(
            (&rec["status"], &rec["decision"]),
            (&json!(403), &json!("deny"))
        );
        assert_eq!(rec["subject"], subject.as_str());
    }
    let portal = gw.client("portal");
    let wrong = if subject.ends_with('1') { '2' } else { '1' };
    let bad = format!("{}{wrong}", &subject[..17]);
    let a = portal.get(&accesses_path(&bad)).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.body["type"], "/problems/invalid-identifier");
    assert_eq!(a.body["rule"], "check-character");
    assert!(
        a.body["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("subject ")),
        "{}",
        a.body
    );
    for (query, starts) in [
        ("", "subject: required"),
        ("?subject=1&subject=2&limit=1000", "limit: "),
        ("?colour=red", "colour: unknown parameter"),
    ] {
        let a = portal.get(&format!("{ACCESSES}{query}")).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{query}");
        assert!(
            a.body["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with(starts)),
            "{query}: {}",
            a.body
        );
    }
    // A well-formed subject no one looked up: an empty list, nothing withheld.
    let first17 = "11010119900307121";
    let check = connectors::ids::resident_id_check_char(first17).expect("a check character");
    let a = portal
        .get(&accesses_path(&format!("{first17}{check}")))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(
        (a.body["total"].clone(), a.body["count"].clone()),
        (json!(0), json!(0))
    );
}
