//! Deterministic generation of the demo records, in memory.

use std::collections::HashSet;

use chrono::{Datelike, Days, NaiveDate};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ring::signature::Ed25519KeyPair;

use super::lists::{self, Authority, Division};
use super::{license_signing_input, DemoCounts};
use crate::ids;
use crate::{ConnectorError, Record};

/// A row of `residents`.
pub(super) struct Resident {
    pub id: String,
    pub name: String,
    pub male: bool,
    pub birth: NaiveDate,
    pub ethnicity: &'static str,
    pub address: String,
    pub authority: &'static str,
    pub status: &'static str,
}

/// A row of `legal_persons`.
pub(super) struct LegalPerson {
    pub code: String,
    pub name: String,
    pub entity_type: &'static str,
    pub rep_name: String,
    pub rep_id: String,
    pub capital_yuan: i64,
    pub established: NaiveDate,
    pub address: String,
    pub status: &'static str,
    pub scope: String,
}

/// A row of `licenses`: the identifier and the signed record (field name → value).
pub(super) struct License {
    pub id: String,
    pub record: Record,
}

/// A row of `contributions`: one insured resident's social insurance account.
pub(super) struct Contribution {
    pub resident_id: String,
    pub status: &'static str,
    pub employer: Option<String>,
    pub base_yuan: i64,
    pub months_paid: i64,
    pub last_paid_month: String,
    pub account_balance_yuan: i64,
}

/// Everything generated for one seed.
pub(super) struct DemoData {
    pub residents: Vec<Resident>,
    pub legal_persons: Vec<LegalPerson>,
    pub licenses: Vec<License>,
    pub contributions: Vec<Contribution>,
    pub absent_resident: String,
    pub absent_credit_code: String,
    pub absent_license_id: String,
}

/// Licences expiring before this date are `expired`; a fixed date keeps the output a
/// function of the seed alone.
const REFERENCE_DATE: (i32, u32, u32) = (2025, 1, 1);
/// Serial sequence never used by the generator, for the absent licence identifier.
const ABSENT_SERIAL: u32 = 9_999_999;

const STREAM_RESIDENTS: u64 = 1;
const STREAM_LEGAL_PERSONS: u64 = 2;
const STREAM_LICENSES: u64 = 3;
const STREAM_CONTRIBUTIONS: u64 = 4;

/// Generates all demo records. Each table draws from its own ChaCha8 stream of
/// `seed`, so the first residents do not change when another count does.
pub(super) fn generate(
    counts: &DemoCounts,
    seed: u64,
    key: &Ed25519KeyPair,
) -> Result<DemoData, ConnectorError> {
    if counts.residents == 0 && (counts.legal_persons > 0 || counts.licenses > 0) {
        return Err(ConnectorError::Config(
            "demo legal persons and licences need at least one resident".to_owned(),
        ));
    }
    let mut rng = stream(seed, STREAM_RESIDENTS);
    let mut seen = HashSet::with_capacity(counts.residents + 1);
    let residents: Vec<Resident> = (0..counts.residents)
        .map(|_| resident(&mut rng, &mut seen))
        .collect::<Result<_, _>>()?;
    let absent_resident = resident(&mut rng, &mut seen)?.id;

    let mut rng = stream(seed, STREAM_LEGAL_PERSONS);
    let adults = adult_pool(&residents);
    let mut seen = HashSet::with_capacity(counts.legal_persons + 1);
    let legal_persons: Vec<LegalPerson> = (0..counts.legal_persons)
        .map(|_| legal_person(&mut rng, &mut seen, &residents, &adults))
        .collect::<Result<_, _>>()?;
    let absent_credit_code = unique_credit_code(&mut rng, &mut seen, '9', '1', "440305")?;

    let mut rng = stream(seed, STREAM_LICENSES);
    let mut factory = LicenseFactory::new(&residents, &legal_persons, key)?;
    let licenses = (0..counts.licenses)
        .map(|i| factory.license(&mut rng, i))
        .collect::<Result<_, _>>()?;
    let absent_license_id = factory.kinds[0].license_id(2024, ABSENT_SERIAL)?;

    let mut rng = stream(seed, STREAM_CONTRIBUTIONS);
    let contributions = residents
        .iter()
        .filter_map(|r| contribution(&mut rng, r, &legal_persons).transpose())
        .collect::<Result<_, _>>()?;

    Ok(DemoData {
        residents,
        legal_persons,
        licenses,
        contributions,
        absent_resident,
        absent_credit_code,
        absent_license_id,
    })
}

/// The social insurance account of `r`, when insured: most living residents of
/// working age or retired are, each employed by one of the demo's legal persons
/// (self-employed when there are none), with a contribution base within Shenzhen's
/// 2024 bounds (2,360-38,082 yuan a month).
fn contribution(
    rng: &mut ChaCha8Rng,
    r: &Resident,
    employers: &[LegalPerson],
) -> Result<Option<Contribution>, ConnectorError> {
    let today = date(REFERENCE_DATE.0, REFERENCE_DATE.1, REFERENCE_DATE.2)?;
    let age = today.years_since(r.birth).unwrap_or(0);
    if age < 18 || r.status != "normal" || !rng.gen_bool(0.8) {
        return Ok(None);
    }
    let working_months = i64::from(age.min(60) - 16) * 12;
    let months_paid = rng.gen_range(1..=working_months.clamp(1, 480));
    let (status, last_paid) = if age >= 60 {
        ("retired", add_years(r.birth, 60))
    } else if rng.gen_bool(0.85) {
        ("contributing", date(2024, 12, 1)?)
    } else {
        (
            "suspended",
            date_between(rng, date(2018, 1, 1)?, date(2024, 10, 31)?),
        )
    };
    let employer = match (status, employers.choose(rng)) {
        ("retired", _) | (_, None) => None,
        (_, Some(e)) => Some(e.name.clone()),
    };
    let base_yuan = rng.gen_range(2_360..=38_082);
    // 8 % of the base into the personal pension account each month paid.
    let account_balance_yuan = months_paid * base_yuan * 8 / 100;
    Ok(Some(Contribution {
        resident_id: r.id.clone(),
        status,
        employer,
        base_yuan,
        months_paid,
        last_paid_month: last_paid.format("%Y-%m").to_string(),
        account_balance_yuan,
    }))
}

fn stream(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

fn data_err(what: &str) -> ConnectorError {
    ConnectorError::Data(format!("demo generator: {what}"))
}

fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> Result<&'a T, ConnectorError> {
    items.choose(rng).ok_or_else(|| data_err("empty word list"))
}

fn date(y: i32, m: u32, d: u32) -> Result<NaiveDate, ConnectorError> {
    NaiveDate::from_ymd_opt(y, m, d).ok_or_else(|| data_err("bad constant date"))
}

/// A uniformly random date in `[from, to]`.
fn date_between(rng: &mut ChaCha8Rng, from: NaiveDate, to: NaiveDate) -> NaiveDate {
    let span = u64::try_from((to - from).num_days()).unwrap_or(0);
    from.checked_add_days(Days::new(rng.gen_range(0..=span)))
        .unwrap_or(from)
}

fn add_years(d: NaiveDate, years: i32) -> NaiveDate {
    d.with_year(d.year() + years)
        // 29 February in a non-leap target year.
        .or_else(|| d.pred_opt().and_then(|p| p.with_year(p.year() + years)))
        .unwrap_or(d)
}

fn division(rng: &mut ChaCha8Rng, divisions: &'static [Division]) -> &'static Division {
    let total: u32 = divisions.iter().map(|d| d.weight).sum();
    let mut roll = rng.gen_range(0..total.max(1));
    for d in divisions {
        if roll < d.weight {
            return d;
        }
        roll -= d.weight;
    }
    &lists::DIVISIONS[0]
}

fn person_name(rng: &mut ChaCha8Rng, male: bool) -> Result<String, ConnectorError> {
    let given = if male {
        lists::MALE_GIVEN
    } else {
        lists::FEMALE_GIVEN
    };
    let mut name = (*pick(rng, lists::SURNAMES)?).to_owned();
    name.push_str(pick(rng, given)?);
    if rng.gen_bool(0.7) {
        name.push_str(pick(rng, given)?);
    }
    Ok(name)
}

fn street_address(rng: &mut ChaCha8Rng, d: &Division) -> Result<String, ConnectorError> {
    let road = pick(rng, d.roads)?;
    let number = rng.gen_range(1..=3000);
    let building = rng.gen_range(1..=30);
    let room = rng.gen_range(1..=32) * 100 + rng.gen_range(1..=8);
    Ok(format!("{}{road}{number}号{building}栋{room}", d.area))
}

fn resident(rng: &mut ChaCha8Rng, seen: &mut HashSet<String>) -> Result<Resident, ConnectorError> {
    let (from, to) = (date(1940, 1, 1)?, date(2024, 12, 31)?);
    loop {
        let d = division(rng, lists::DIVISIONS);
        let birth = date_between(rng, from, to);
        let male = rng.gen_bool(0.5);
        // The sequence's parity carries the sex: odd male, even female.
        let sequence = rng.gen_range(0..500u32) * 2 + u32::from(male);
        let first17 = format!("{}{}{sequence:03}", d.code, birth.format("%Y%m%d"));
        let check =
            ids::resident_id_check_char(&first17).ok_or_else(|| data_err("resident id body"))?;
        let id = format!("{first17}{check}");
        if !seen.insert(id.clone()) {
            continue;
        }
        let status = if birth.year() < 1960 && rng.gen_bool(0.08) {
            "deceased"
        } else if rng.gen_bool(0.01) {
            "emigrated"
        } else {
            "normal"
        };
        let ethnicity = if rng.gen_bool(0.92) {
            "汉族"
        } else {
            pick(rng, lists::MINORITIES)?
        };
        return Ok(Resident {
            id,
            name: person_name(rng, male)?,
            male,
            birth,
            ethnicity,
            address: street_address(rng, d)?,
            authority: d.police,
            status,
        });
    }
}

/// Indices of living residents born in 2005 or earlier (all residents if none is).
fn adult_pool(residents: &[Resident]) -> Vec<usize> {
    let adult = |r: &Resident| r.birth.year() <= 2005 && r.status == "normal";
    let pool: Vec<usize> = (0..residents.len())
        .filter(|&i| adult(&residents[i]))
        .collect();
    if pool.is_empty() {
        (0..residents.len()).collect()
    } else {
        pool
    }
}

/// GB 11714 organisation code: 8 characters and a MOD 11 check character.
fn organisation_code(body8: &str) -> Result<String, ConnectorError> {
    const WEIGHTS: [u32; 8] = [3, 7, 9, 10, 5, 8, 4, 2];
    let mut sum = 0;
    for (c, w) in body8.chars().zip(WEIGHTS) {
        sum += c
            .to_digit(36)
            .ok_or_else(|| data_err("organisation code body"))?
            * w;
    }
    let check = match 11 - sum % 11 {
        10 => 'X',
        11 => '0',
        n => char::from_digit(n, 10).ok_or_else(|| data_err("organisation check"))?,
    };
    Ok(format!("{body8}{check}"))
}

/// A GB 32100 code whose organisation part also passes its GB 11714 check.
pub(super) fn credit_code(
    authority: char,
    entity: char,
    division: &str,
    org_body8: &str,
) -> Result<String, ConnectorError> {
    let first17 = format!(
        "{authority}{entity}{division}{}",
        organisation_code(org_body8)?
    );
    let check = ids::credit_code_check_char(&first17).ok_or_else(|| data_err("credit code"))?;
    Ok(format!("{first17}{check}"))
}

fn authority_code(a: &Authority) -> Result<String, ConnectorError> {
    credit_code(a.0, a.1, a.2, a.3)
}

fn unique_credit_code(
    rng: &mut ChaCha8Rng,
    seen: &mut HashSet<String>,
    authority: char,
    entity: char,
    division: &str,
) -> Result<String, ConnectorError> {
    // Organisation bodies from the credit-code alphabet; new-style ones start "MA5".
    const BODY_CHARS: &[u8] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
    loop {
        let mut body = String::with_capacity(8);
        let random_len = if rng.gen_bool(0.6) {
            body.push_str("MA5");
            5
        } else {
            8
        };
        for _ in 0..random_len {
            let c = pick(rng, BODY_CHARS)?;
            body.push(char::from(*c));
        }
        let code = credit_code(authority, entity, division, &body)?;
        if seen.insert(code.clone()) {
            return Ok(code);
        }
    }
}

fn legal_person(
    rng: &mut ChaCha8Rng,
    seen: &mut HashSet<String>,
    residents: &[Resident],
    adults: &[usize],
) -> Result<LegalPerson, ConnectorError> {
    let d = division(rng, &lists::DIVISIONS[..lists::SHENZHEN_DIVISIONS]);
    let roll = rng.gen_range(0..100);
    let entity = match roll {
        0..=79 => '1',
        80..=94 => '2',
        _ => '3',
    };
    let code = unique_credit_code(rng, seen, '9', entity, d.code)?;
    // Two different syllables: "智智" reads as a typo.
    let brand: String = lists::BRAND_CHARS
        .choose_multiple(rng, 2)
        .copied()
        .collect();
    let (name, entity_type, scope, capital_yuan) = match entity {
        '1' => {
            let (industry, scope) = pick(rng, lists::INDUSTRIES)?;
            let (form, suffix) = pick(rng, lists::COMPANY_TYPES)?;
            let capital = *pick(rng, lists::CAPITALS_YUAN)?;
            (
                format!("深圳市{brand}{industry}{suffix}"),
                *form,
                *scope,
                capital,
            )
        }
        '2' => {
            let (shop, scope) = pick(rng, lists::SHOPS)?;
            let capital = rng.gen_range(1..=20) * 10_000;
            (
                format!("深圳市{}区{brand}{shop}", d.district),
                "个体工商户",
                *scope,
                capital,
            )
        }
        _ => (
            format!("深圳市{brand}果蔬种植专业合作社"),
            "农民专业合作社",
            "蔬菜、水果种植与销售；农业技术推广服务。",
            500_000,
        ),
    };
    let rep = &residents[*pick(rng, adults)?];
    // Established once the representative was of age.
    let earliest = date(1995, 1, 1)?.max(add_years(rep.birth, 18));
    let established = date_between(rng, earliest, date(2024, 12, 31)?.max(earliest));
    let status = match rng.gen_range(0..100) {
        0..=89 => "active",
        90..=93 => "revoked",
        _ => "deregistered",
    };
    let address = format!(
        "{}{}{}号{}{}",
        d.area,
        pick(rng, d.roads)?,
        rng.gen_range(1..=3000),
        pick(rng, lists::BUILDINGS)?,
        rng.gen_range(1..=30) * 100 + rng.gen_range(1..=20)
    );
    Ok(LegalPerson {
        code,
        name,
        entity_type,
        rep_name: rep.name.clone(),
        rep_id: rep.id.clone(),
        capital_yuan,
        established,
        address,
        status,
        scope: scope.to_owned(),
    })
}

/// Who can hold a licence of a kind.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Holder {
    /// A legal person (business licence, food business licence).
    LegalPerson,
    /// A resident born 2020 or later (birth medical certificate).
    Newborn,
    /// A living adult resident (driving licence).
    Adult,
}

/// A licence type: the parts of its identifier and who holds it.
struct LicenseKind {
    name: &'static str,
    /// Competent department's credit code + 3-digit type number.
    type_code: String,
    holder: Holder,
    weight: u32,
}

impl LicenseKind {
    fn new(
        name: &'static str,
        competent: &Authority,
        number: &str,
        holder: Holder,
        weight: u32,
    ) -> Result<Self, ConnectorError> {
        Ok(LicenseKind {
            name,
            type_code: format!("{}{number}", authority_code(competent)?),
            holder,
            weight,
        })
    }

    /// `1.2.156.3005.2.<type>.<issuer>.<year + 7-digit sequence>.001.<check>`; the
    /// issuer of the absent identifier is the Shenzhen market regulator.
    fn license_id(&self, year: i32, sequence: u32) -> Result<String, ConnectorError> {
        license_id(
            &self.type_code,
            &authority_code(&lists::SZ_AMR.1)?,
            year,
            sequence,
        )
    }
}

fn license_id(
    type_code: &str,
    issuer_code: &str,
    year: i32,
    sequence: u32,
) -> Result<String, ConnectorError> {
    let body = format!("{type_code}.{issuer_code}.{year:04}{sequence:07}.001");
    let check = ids::license_id_check_char(&body).ok_or_else(|| data_err("license id"))?;
    Ok(format!("{}{body}.{check}", ids::LICENSE_ID_PREFIX))
}

/// Hands out holders of each kind in turn, so a holder gets at most one licence of
/// a kind until every candidate has one.
struct HolderQueue {
    order: Vec<usize>,
    next: usize,
}

impl HolderQueue {
    fn new(rng: &mut ChaCha8Rng, mut order: Vec<usize>) -> Self {
        order.shuffle(rng);
        HolderQueue { order, next: 0 }
    }

    fn remaining(&self) -> bool {
        self.next < self.order.len()
    }

    fn take(&mut self) -> Option<usize> {
        let i = self.order.get(self.next).copied();
        self.next += 1;
        i
    }
}

struct LicenseFactory<'a> {
    residents: &'a [Resident],
    legal_persons: &'a [LegalPerson],
    key: &'a Ed25519KeyPair,
    kinds: Vec<LicenseKind>,
    /// One queue per kind, in the order of `kinds`.
    queues: Vec<Option<HolderQueue>>,
    /// Women and men of an age to be parents of a 2020s newborn.
    mothers: Vec<usize>,
    fathers: Vec<usize>,
    sz_amr_code: String,
    traffic_police_code: String,
    hospital_codes: Vec<String>,
    reference: NaiveDate,
}

const BUSINESS: usize = 0;
const BIRTH: usize = 1;
const DRIVING: usize = 2;
const FOOD: usize = 3;

impl<'a> LicenseFactory<'a> {
    fn new(
        residents: &'a [Resident],
        legal_persons: &'a [LegalPerson],
        key: &'a Ed25519KeyPair,
    ) -> Result<Self, ConnectorError> {
        let kinds = vec![
            LicenseKind::new(
                super::BUSINESS_LICENCE,
                &lists::SAMR,
                "001",
                Holder::LegalPerson,
                30,
            )?,
            LicenseKind::new(
                super::BIRTH_CERTIFICATE,
                &lists::NHC,
                "011",
                Holder::Newborn,
                10,
            )?,
            LicenseKind::new("机动车驾驶证", &lists::MPS, "021", Holder::Adult, 45)?,
            LicenseKind::new(
                "食品经营许可证",
                &lists::SAMR,
                "002",
                Holder::LegalPerson,
                15,
            )?,
        ];
        let born_between = |r: &Resident, from: i32, to: i32| {
            (from..=to).contains(&r.birth.year()) && r.status == "normal"
        };
        let select = |f: &dyn Fn(&Resident) -> bool| -> Vec<usize> {
            (0..residents.len()).filter(|&i| f(&residents[i])).collect()
        };
        Ok(LicenseFactory {
            residents,
            legal_persons,
            key,
            kinds,
            queues: Vec::new(),
            mothers: select(&|r| !r.male && born_between(r, 1975, 2000)),
            fathers: select(&|r| r.male && born_between(r, 1970, 2000)),
            sz_amr_code: authority_code(&lists::SZ_AMR.1)?,
            traffic_police_code: authority_code(&lists::SZ_TRAFFIC_POLICE.1)?,
            hospital_codes: lists::HOSPITALS
                .iter()
                .map(|(_, a)| authority_code(a))
                .collect::<Result<_, _>>()?,
            reference: date(REFERENCE_DATE.0, REFERENCE_DATE.1, REFERENCE_DATE.2)?,
        })
    }

    fn fill_queues(&mut self, rng: &mut ChaCha8Rng) {
        let residents = self.residents;
        let newborns: Vec<usize> = (0..residents.len())
            .filter(|&i| residents[i].birth.year() >= 2020)
            .collect();
        let parents_known = !self.mothers.is_empty() && !self.fathers.is_empty();
        let mut queues = Vec::with_capacity(self.kinds.len());
        for kind in &self.kinds {
            let order = match kind.holder {
                Holder::LegalPerson => (0..self.legal_persons.len()).collect(),
                Holder::Newborn if parents_known => newborns.clone(),
                Holder::Newborn => Vec::new(),
                Holder::Adult => adult_pool(residents),
            };
            queues.push(Some(HolderQueue::new(rng, order)));
        }
        self.queues = queues;
    }

    /// Chooses the kind of the `index`-th licence: the first few cover every kind,
    /// the rest follow the weights among kinds with holders left.
    fn choose_kind(&mut self, rng: &mut ChaCha8Rng, index: usize) -> Option<usize> {
        let open = |q: &Option<HolderQueue>| q.as_ref().is_some_and(HolderQueue::remaining);
        if index < self.kinds.len() && open(&self.queues[index]) {
            return Some(index);
        }
        let available: Vec<usize> = (0..self.kinds.len())
            .filter(|&k| open(&self.queues[k]))
            .collect();
        let total: u32 = available.iter().map(|&k| self.kinds[k].weight).sum();
        if total == 0 {
            return None;
        }
        let mut roll = rng.gen_range(0..total);
        for k in available {
            let w = self.kinds[k].weight;
            if roll < w {
                return Some(k);
            }
            roll -= w;
        }
        None
    }

    fn license(&mut self, rng: &mut ChaCha8Rng, index: usize) -> Result<License, ConnectorError> {
        if self.queues.is_empty() {
            self.fill_queues(rng);
        }
        let kind = match self.choose_kind(rng, index) {
            Some(k) => k,
            None => {
                // Every candidate holds every licence it can: start another round.
                self.fill_queues(rng);
                self.choose_kind(rng, index)
                    .ok_or_else(|| data_err("no holders for any licence type"))?
            }
        };
        let holder = self.queues[kind]
            .as_mut()
            .and_then(HolderQueue::take)
            .ok_or_else(|| data_err("holder queue"))?;
        let sequence = u32::try_from(index + 1).map_err(|_| data_err("too many licences"))?;
        let draft = match kind {
            BUSINESS => self.business_licence(rng, holder)?,
            BIRTH => self.birth_certificate(rng, holder)?,
            DRIVING => self.driving_licence(rng, holder)?,
            FOOD => self.food_licence(rng, holder)?,
            _ => return Err(data_err("licence kind")),
        };
        self.finish(&self.kinds[kind], draft, sequence)
    }

    /// Signs a draft and gives it its identifier, status and file digest.
    fn finish(
        &self,
        kind: &LicenseKind,
        draft: Draft,
        sequence: u32,
    ) -> Result<License, ConnectorError> {
        let id = license_id(
            &kind.type_code,
            &draft.issuer_code,
            draft.issued.year(),
            sequence,
        )?;
        let status = match draft.valid_until {
            Some(until) if until < self.reference => "expired",
            _ if draft.revoked => "revoked",
            _ => "valid",
        };
        let content = draft.content.to_string();
        let mut record = Record::new();
        let text = |s: &str| serde_json::Value::String(s.to_owned());
        record.insert("license_type".into(), text(kind.name));
        record.insert("holder_id".into(), text(&draft.holder_id));
        record.insert("holder_name".into(), text(&draft.holder_name));
        record.insert("issuer".into(), text(draft.issuer));
        record.insert("issued_on".into(), text(&draft.issued.to_string()));
        record.insert(
            "valid_until".into(),
            draft
                .valid_until
                .map_or(serde_json::Value::Null, |d| text(&d.to_string())),
        );
        record.insert("status".into(), text(status));
        record.insert(
            "file_sha256".into(),
            text(&super::fake_file_sha256(&id, &content)),
        );
        record.insert("content".into(), serde_json::Value::String(content));
        let signature = self.key.sign(&license_signing_input(&record)?);
        record.insert(
            "issuer_signature".into(),
            text(&super::base64url(signature.as_ref())),
        );
        Ok(License { id, record })
    }

    fn business_licence(&self, rng: &mut ChaCha8Rng, i: usize) -> Result<Draft, ConnectorError> {
        let lp = &self.legal_persons[i];
        let valid_until = rng
            .gen_bool(0.4)
            .then(|| add_years(lp.established, if rng.gen_bool(0.5) { 20 } else { 30 }));
        let content = serde_json::json!({
            "unified_social_credit_code": lp.code,
            "name": lp.name,
            "entity_type": lp.entity_type,
            "legal_representative": lp.rep_name,
            "registered_capital_yuan": lp.capital_yuan,
            "established_on": lp.established.to_string(),
            "registered_address": lp.address,
            "business_scope": lp.scope,
        });
        Ok(Draft {
            holder_id: lp.code.clone(),
            holder_name: lp.name.clone(),
            issuer: lists::SZ_AMR.0,
            issuer_code: self.sz_amr_code.clone(),
            issued: lp.established,
            valid_until,
            revoked: lp.status == "revoked",
            content,
        })
    }

    fn food_licence(&self, rng: &mut ChaCha8Rng, i: usize) -> Result<Draft, ConnectorError> {
        let lp = &self.legal_persons[i];
        let issued = date_between(rng, lp.established, date(2024, 12, 31)?.max(lp.established));
        let permit = format!(
            "JY{}{:08}",
            &lp.code[2..8],
            rng.gen_range(0..100_000_000u32)
        );
        let content = serde_json::json!({
            "permit_number": permit,
            "operator_name": lp.name,
            "legal_representative": lp.rep_name,
            "business_premises": lp.address,
            "main_business": "食品销售经营者",
            "business_items": "预包装食品（含冷藏冷冻食品）销售；散装食品销售",
        });
        Ok(Draft {
            holder_id: lp.code.clone(),
            holder_name: lp.name.clone(),
            issuer: lists::SZ_AMR.0,
            issuer_code: self.sz_amr_code.clone(),
            issued,
            valid_until: Some(add_years(issued, 5)),
            revoked: rng.gen_bool(0.03),
            content,
        })
    }

    fn birth_certificate(&self, rng: &mut ChaCha8Rng, i: usize) -> Result<Draft, ConnectorError> {
        let child = &self.residents[i];
        let mother = &self.residents[*pick(rng, &self.mothers)?];
        let father = &self.residents[*pick(rng, &self.fathers)?];
        let h = rng.gen_range(0..lists::HOSPITALS.len());
        let (hospital, _) = lists::HOSPITALS[h];
        let issued = child
            .birth
            .checked_add_days(Days::new(rng.gen_range(1..=7)))
            .unwrap_or(child.birth);
        let content = serde_json::json!({
            "certificate_number": format!("{}{:09}", "Q44", rng.gen_range(0..1_000_000_000u32)),
            "child_name": child.name,
            "child_sex": if child.male { "male" } else { "female" },
            "birth_date": child.birth.to_string(),
            "birth_place": "广东省深圳市",
            "hospital": hospital,
            "mother_name": mother.name,
            "mother_id": mother.id,
            "father_name": father.name,
            "father_id": father.id,
        });
        Ok(Draft {
            holder_id: child.id.clone(),
            holder_name: child.name.clone(),
            issuer: hospital,
            issuer_code: self.hospital_codes[h].clone(),
            issued,
            valid_until: None,
            revoked: false,
            content,
        })
    }

    fn driving_licence(&self, rng: &mut ChaCha8Rng, i: usize) -> Result<Draft, ConnectorError> {
        let r = &self.residents[i];
        let first = date_between(
            rng,
            add_years(r.birth, 18).max(date(1990, 1, 1)?),
            date(2024, 12, 31)?,
        );
        // Renewed every 6 then 10 years; long-term after that.
        let mut issued = first;
        let mut validity = Some(6);
        while let Some(years) = validity {
            let next = add_years(issued, years);
            if next > date(2024, 12, 31)? {
                break;
            }
            issued = next;
            validity = if years == 6 { Some(10) } else { None };
        }
        let valid_until = validity.map(|y| add_years(issued, y));
        let content = serde_json::json!({
            "licence_number": r.id,
            "name": r.name,
            "sex": if r.male { "male" } else { "female" },
            "address": r.address,
            "class": pick(rng, lists::DRIVING_CLASSES)?,
            "first_issued_on": first.to_string(),
        });
        Ok(Draft {
            holder_id: r.id.clone(),
            holder_name: r.name.clone(),
            issuer: lists::SZ_TRAFFIC_POLICE.0,
            issuer_code: self.traffic_police_code.clone(),
            issued,
            valid_until,
            revoked: rng.gen_bool(0.02),
            content,
        })
    }
}

/// A licence before it is numbered and signed.
struct Draft {
    holder_id: String,
    holder_name: String,
    issuer: &'static str,
    issuer_code: String,
    issued: NaiveDate,
    valid_until: Option<NaiveDate>,
    revoked: bool,
    content: serde_json::Value,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn organisation_and_authority_codes() {
        // The check character, recomputed here straight from GB 11714.
        let body = "D2143569";
        let code = organisation_code(body).unwrap();
        let weights = [3, 7, 9, 10, 5, 8, 4, 2];
        let sum: u32 = body
            .chars()
            .zip(weights)
            .map(|(c, w)| c.to_digit(36).unwrap() * w)
            .sum();
        let c9 = 11 - sum % 11;
        let expected = match c9 {
            10 => 'X',
            11 => '0',
            n => char::from_digit(n, 10).unwrap(),
        };
        assert_eq!(code.chars().last().unwrap(), expected);
        for a in [lists::SAMR, lists::NHC, lists::MPS, lists::SZ_AMR.1] {
            assert_eq!(ids::check_credit_code(&authority_code(&a).unwrap()), Ok(()));
        }
    }

    #[test]
    fn dates() {
        let leap = date(2000, 2, 29).unwrap();
        assert_eq!(add_years(leap, 1), date(2001, 2, 28).unwrap());
        assert_eq!(add_years(leap, 4), date(2004, 2, 29).unwrap());
    }
}
