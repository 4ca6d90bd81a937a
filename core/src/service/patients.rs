//! Finding patients: a Patient is its own compartment, so unlike a record
//! it is found across compartments, by the keyed tokens of its blind index
//! (never by decrypting every patient).

use super::clinical_search::{in_order, sort_param, Sort};
use super::consent_gate::Subject;
use super::{Caller, Services};
use crate::audit::AuditEntry;
use crate::auth::Action;
use crate::crypto::blind::normalise;
use crate::error::{Error, Result};
use crate::fhir::outcome::Issue;
use crate::fhir::resources::SearchParam;
use crate::fhir::search_params::{matches, well_formed, Modifier};
use crate::fhir::{patient, primitives};
use crate::ports::{Current, KeyService, RecordStore};
use serde_json::Value;

pub use super::records::{SearchResult, Stored, DEFAULT_PAGE};

const TYPE: &str = "Patient";
/// Blind-index tokens per resource. Each is a transaction item and DynamoDB
/// allows 100 per transaction, updates may remove and add a full set.
const MAX_TOKENS: usize = 40;
/// The string parameters, searched as R4 says: starts-with by default,
/// `:exact`, `:contains`.
const STRING_PARAMS: [&str; 3] = ["name", "family", "given"];
/// How many leading characters of a name part its prefix token holds.
/// A search value this long or longer walks that token's entries; a
/// shorter one (or `:contains`) walks every patient's, page by page.
const PREFIX: usize = 3;
/// The index parameter of name-part prefixes (every part of every name,
/// whichever string parameter is searched: one token per part).
const PREFIX_PARAM: &str = "name:prefix";

/// The first `PREFIX` characters of a normalised value.
fn prefix(normalised: &str) -> String {
    normalised.chars().take(PREFIX).collect()
}

/// The index parameter of the security labels that flag a patient for the
/// access-anomaly detectors.
pub(crate) const FLAG_PARAM: &str = "_security:flag";

/// The parameters every type has that the blind index does not hold: a
/// Patient search tests them on each candidate's decrypted resource.
const UNINDEXED: [&str; 4] = ["_lastUpdated", "_tag", "_profile", "_security"];

/// The parameters a Patient search takes: `_id`, those of its row, and
/// the other parameters every type has.
pub fn search_params() -> impl Iterator<Item = &'static str> {
    let row = crate::fhir::resources::patient_type().params.iter().map(|p| p.name.as_str());
    std::iter::once("_id").chain(row).chain(UNINDEXED)
}

/// What a Patient search parameter matches, as the index serves it.
pub fn documentation(param: &str) -> &'static str {
    match param {
        "_id" => "Exact logical id.",
        "name" => "Any part of any name (family, given, prefix, suffix, text) starts with the value, ignoring case and accents; :exact matches as written, :contains anywhere.",
        "family" => "A family name starts with the value, ignoring case and accents; :exact, :contains.",
        "given" => "A given name starts with the value, ignoring case and accents; :exact, :contains.",
        "birthdate" => "Birth date equal to YYYY, YYYY-MM or YYYY-MM-DD (eq only).",
        "gender" => "administrative-gender code.",
        "identifier" => "system|value or value (|value means any system).",
        _ => "As on every type (tested on the decrypted resource, so it walks every patient unless an indexed parameter narrows the search).",
    }
}

impl<S: RecordStore, K: KeyService> Services<S, K> {
    /// The blind-index tokens a Patient's current version is stored under.
    pub(crate) fn patient_tokens(&self, resource: &Value) -> Result<Vec<String>> {
        let values = patient::search_values(resource);
        let mut tokens: Vec<String> = values.iter().map(|(p, v)| self.index.token(TYPE, p, v)).collect();
        for (_, part) in values.iter().filter(|(p, _)| *p == "name") {
            let normalised = normalise(part);
            if normalised.chars().count() >= PREFIX {
                tokens.push(self.index.token(TYPE, PREFIX_PARAM, &prefix(&normalised)));
            }
        }
        tokens.push(self.index.token(TYPE, "_all", ""));
        // Found by the access-anomaly detectors, not by search (`_security`
        // is tested on each decrypted candidate).
        let flags = crate::audit::anomaly::flags(resource);
        tokens.extend(flags.iter().map(|f| self.index.token(TYPE, FLAG_PARAM, f)));
        tokens.sort();
        tokens.dedup();
        if tokens.len() > MAX_TOKENS {
            return Err(Error::Invalid(vec![Issue::error(
                "too-costly",
                format!("too many searchable values (names, identifiers, dates): at most {MAX_TOKENS} index entries"),
            )
            .at("Patient")]));
        }
        Ok(tokens)
    }

    /// Search. `params` are (name, value) pairs as the client sent them, or
    /// as recovered from a cursor. A page walks one parameter's index (the
    /// most selective there is, or every patient) in id order from the
    /// cursor, checks the other parameters against each candidate's index
    /// entries, then its consents: so a page costs what it examines, never
    /// the whole index, and both are bounded (`Limits`). Patients whose
    /// consent refuses the caller are skipped, in the entries and the total.
    /// Every patient returned gets their own audit record.
    pub async fn search_patients(
        &self,
        caller: &Caller,
        params: Vec<(String, String)>,
        audit: &mut AuditEntry,
    ) -> Result<SearchResult> {
        self.check(caller, TYPE, Action::Search, None)?;
        let (params, after, carried_total) = self.search_resume(caller, TYPE, params)?;
        // Names only, and only names medrec defines: a client could put PHI
        // in an unknown parameter's name, and audit attributes are plaintext.
        audit.query_params = params
            .iter()
            .map(|(k, _)| {
                let base = k.split(':').next().unwrap_or("");
                let known = base == "_count" || base == "_sort" || search_params().any(|p| p == base);
                if known {
                    base.to_owned()
                } else {
                    "unrecognised".to_owned()
                }
            })
            .collect();
        let mut count = DEFAULT_PAGE;
        let mut sort = None;
        let mut groups: Vec<Group> = Vec::new();
        for (name, value) in &params {
            match name.as_str() {
                "_count" => {
                    count = super::records::page_size(value)?;
                    continue;
                }
                "_sort" => {
                    sort = sort_param(crate::fhir::resources::patient_type(), value)?;
                    continue;
                }
                _ => {}
            }
            let (base, modifier) = match name.split_once(':') {
                Some((base, modifier)) => (base, Some(modifier)),
                None => (name.as_str(), None),
            };
            let unsupported = || super::unsupported_parameter(name, &search_params().collect::<Vec<_>>());
            let param = search_params().find(|p| *p == base).ok_or_else(unsupported)?;
            let how = match (STRING_PARAMS.contains(&param), modifier) {
                (false, None) => None,
                (true, None) => Some(StringMatch::StartsWith),
                (true, Some("exact")) => Some(StringMatch::Exact),
                (true, Some("contains")) => Some(StringMatch::Contains),
                (false, Some(_)) if UNINDEXED.contains(&param) => None,
                _ => return Err(unsupported()),
            };
            let values = self.search_values(value)?;
            if let Some(how) = how {
                groups.push(self.string_group(param, how, values)?);
                continue;
            }
            if UNINDEXED.contains(&param) {
                groups.push(self.element_group(param, modifier, value, &values)?);
                continue;
            }
            let mut group = match param {
                "_id" => Group::Ids(vec![]),
                _ => Group::Tokens { tokens: vec![], test: None },
            };
            for v in values {
                match (&mut group, self.search_value(param, v)?) {
                    (Group::Ids(ids), Searched::Id(id)) => ids.push(id),
                    (Group::Tokens { tokens, .. }, Searched::Token(t)) => tokens.push(t),
                    _ => unreachable!("a parameter is either _id or indexed"),
                }
            }
            groups.push(group);
        }
        // The driver: the ids asked for, the caller's own, or one index.
        groups.sort_by_key(Group::rank);
        if sort.is_some() {
            let search = Sorted { groups, sort, count, after };
            return self.search_patients_sorted(caller, search, params, audit).await;
        }
        let (candidates, exhausted) = self.candidates(caller, &groups, after.as_deref()).await?;
        // The first page of a result that fits the scan also counts it (the
        // total then rides on the cursor); a larger one has no total.
        let counting = after.is_none() && exhausted;
        let (mut page, mut examined, mut lookups, mut permitted, mut notes) = (vec![], 0, 0, 0, vec![]);
        let mut last_examined = None;
        let mut counted = counting;
        for id in &candidates {
            let paging = page.len() < count;
            if !paging && !counting {
                break;
            }
            let current = self.admitted(caller, id, &groups).await?;
            if current.is_some() && lookups == self.limits.consent_lookups {
                match paging {
                    true => notes.push(Issue::warning(
                        "too-costly",
                        format!("this page stopped after reading {lookups} patients' consents (MEDREC_SEARCH_CONSENT_LOOKUPS); the next link continues"),
                    )),
                    false => counted = false,
                }
                break;
            }
            if paging {
                examined += 1;
                last_examined = Some(id.clone());
            }
            let Some(current) = current else { continue };
            lookups += 1;
            if let Some(hit) = self.permitted(caller, id, current, &groups).await? {
                permitted += 1;
                if paging {
                    page.push(hit);
                }
            }
        }
        let has_more = match counting && counted {
            // Every match was counted: more pages only if more were permitted.
            true => permitted > page.len(),
            false => examined < candidates.len() || !exhausted,
        };
        if has_more && page.len() < count && notes.is_empty() {
            notes.push(Issue::warning(
                "too-costly",
                format!("this page stopped after examining {examined} patients (MEDREC_SEARCH_SCAN_PER_PAGE); the next link continues"),
            ));
        }
        let disclosed =
            page.iter().map(|r| (r.id.clone(), vec![format!("Patient/{}/_history/{}", r.id, r.version)])).collect();
        let mut entries = Self::per_patient(audit, disclosed);
        self.audit_reads(caller, &mut entries).await?;
        let total = if counting { counted.then_some(permitted) } else { carried_total };
        let next_cursor = last_examined
            .filter(|_| has_more)
            .map(|last| self.next_page_counted(caller, TYPE, params, count, last, total));
        Ok(SearchResult { total, resources: page, next_cursor, notes })
    }

    /// The candidates of a search from after `after`, in id order: the ids
    /// it names, the caller's own, or one walk of its driver's index
    /// entries (bounded by the scan); and whether nothing follows them.
    async fn candidates(&self, caller: &Caller, groups: &[Group], after: Option<&str>) -> Result<(Vec<String>, bool)> {
        let later = |id: &String| after.is_none_or(|a| id.as_str() > a);
        match (groups.first(), &caller.principal.patient) {
            (Some(Group::Ids(ids)), _) => {
                let mut ids: Vec<String> = ids.iter().filter(|id| later(id)).cloned().collect();
                ids.sort();
                ids.dedup();
                Ok((ids, true))
            }
            // A patient-bound token (authorization refused one without its
            // patient) searches its own compartment only.
            (_, Some(own)) => Ok((later(own).then(|| own.clone()).into_iter().collect(), true)),
            (driver, None) => {
                let tokens = match driver {
                    Some(Group::Tokens { tokens, .. }) => tokens.clone(),
                    _ => vec![self.index.token(TYPE, "_all", "")],
                };
                self.index_walk(TYPE, &tokens, after, self.limits.search_scan).await
            }
        }
    }

    /// A candidate's current version, if it exists and its index entries
    /// admit it to every group (a patient-bound caller's own only).
    async fn admitted(&self, caller: &Caller, id: &str, groups: &[Group]) -> Result<Option<Current>> {
        if caller.principal.patient.as_deref().is_some_and(|own| own != id) {
            return Ok(None);
        }
        let current = self.store.current(id, TYPE, id).await?.filter(|c| !c.deleted);
        Ok(current.filter(|c| groups.iter().all(|g| g.admits(id, &c.tokens))))
    }

    /// An admitted candidate as a hit: its consents let the caller read
    /// it, and its decrypted values match (a token only admitted it).
    async fn permitted(&self, caller: &Caller, id: &str, current: Current, groups: &[Group]) -> Result<Option<Stored>> {
        let consents = self.consents_of(caller, id).await?;
        if self.consent_before(caller, &consents, TYPE).is_err() {
            return Ok(None);
        }
        let key = self.patient_key(id).await?;
        let resource = self.decrypt_record(&key, id, TYPE, id, current.version, current.ciphertext.as_deref())?;
        if !groups.iter().all(|g| g.holds(&resource))
            || self.consent_on(caller, &consents, Subject::read(TYPE, id, &resource)).is_err()
        {
            return Ok(None);
        }
        Ok(Some(Stored::new(id, current.version, current.last_updated, resource)))
    }

    /// A Patient search with `_sort`: order is known only once every match
    /// is decrypted, so the whole result is read on every page, and it
    /// must fit one walk of the index and the consent-lookup bound (else
    /// 400 too-costly, naming what narrows it). The blind index cannot
    /// order: an order-preserving token would leak the order of names and
    /// birth dates.
    async fn search_patients_sorted(
        &self,
        caller: &Caller,
        search: Sorted,
        params: Vec<(String, String)>,
        audit: &mut AuditEntry,
    ) -> Result<SearchResult> {
        let Sorted { groups, sort, count, after } = search;
        let (candidates, exhausted) = self.candidates(caller, &groups, None).await?;
        let too_costly = |what: String| {
            Error::TooCostly(format!(
                "_sort orders a whole result, and this search {what}: name an identifier, a name of 3 letters or more, or a birthdate to narrow it"
            ))
        };
        if !exhausted {
            return Err(too_costly(format!(
                "selects more than {} patients (MEDREC_SEARCH_SCAN_PER_PAGE)",
                self.limits.search_scan
            )));
        }
        let (mut hits, mut lookups) = (vec![], 0);
        for id in &candidates {
            let Some(current) = self.admitted(caller, id, &groups).await? else { continue };
            if lookups == self.limits.consent_lookups {
                return Err(too_costly(format!(
                    "needs more than {lookups} patients' consents (MEDREC_SEARCH_CONSENT_LOOKUPS)"
                )));
            }
            lookups += 1;
            hits.extend(self.permitted(caller, id, current, &groups).await?);
        }
        let page = in_order(hits, sort, after.as_deref(), count);
        let disclosed = page
            .resources
            .iter()
            .map(|r| (r.id.clone(), vec![format!("Patient/{}/_history/{}", r.id, r.version)]))
            .collect();
        let mut entries = Self::per_patient(audit, disclosed);
        self.audit_reads(caller, &mut entries).await?;
        let next_cursor = page.next_after.map(|last| self.next_page(caller, TYPE, params, count, last));
        Ok(SearchResult { total: Some(page.total), resources: page.resources, next_cursor, notes: vec![] })
    }

    /// A string parameter's values: the index token that admits candidates
    /// (the exact value's, its prefix's, or every patient's), and what a
    /// candidate's decrypted values must then satisfy.
    fn string_group(&self, param: &'static str, how: StringMatch, values: Vec<&str>) -> Result<Group> {
        let mut tokens = vec![];
        let mut wanted = vec![];
        for value in values {
            let value = value.trim();
            if value.is_empty() {
                return Err(Error::BadRequest(format!("search parameter '{param}' needs a value")));
            }
            let normalised = normalise(value);
            tokens.push(match how {
                StringMatch::Exact => self.index.token(TYPE, param, value),
                StringMatch::StartsWith if normalised.chars().count() >= PREFIX => {
                    self.index.token(TYPE, PREFIX_PARAM, &prefix(&normalised))
                }
                _ => self.index.token(TYPE, "_all", ""),
            });
            wanted.push(match how {
                StringMatch::Exact => value.to_owned(),
                _ => normalised,
            });
        }
        tokens.sort();
        tokens.dedup();
        Ok(Group::Tokens { tokens, test: Some(Test::Strings(Strings { param, how, values: wanted })) })
    }

    /// A parameter the index does not hold (`_lastUpdated`, `_tag`...): it
    /// walks every patient and tests each candidate's decrypted resource,
    /// with the modifiers and prefixes of record search.
    fn element_group(&self, name: &str, modifier: Option<&str>, value: &str, values: &[&str]) -> Result<Group> {
        let param = crate::fhir::resources::patient_type().param(name).ok_or(Error::NotFound)?;
        let modifier = match modifier {
            None => None,
            Some(m) => Some(Modifier::parse(&param.kind, m).ok_or_else(|| {
                Error::BadRequest(format!("{name} ({}) does not take the modifier :{m}", param.kind))
            })?),
        };
        if !values.iter().all(|v| well_formed(param, modifier, v)) {
            return Err(Error::BadRequest(format!("'{name}' has a value that is not a valid {}", param.kind)));
        }
        let test = Test::Element { param, modifier, value: value.to_owned() };
        Ok(Group::Tokens { tokens: vec![self.index.token(TYPE, "_all", "")], test: Some(test) })
    }

    /// One search value, checked and turned into what the index holds.
    fn search_value(&self, name: &str, value: &str) -> Result<Searched> {
        let value = value.trim();
        if value.is_empty() {
            return Err(Error::BadRequest(format!("search parameter '{name}' needs a value")));
        }
        let token = match name {
            "_id" => {
                if !primitives::is_id(value) {
                    return Err(Error::BadRequest("_id must be a valid id".into()));
                }
                return Ok(Searched::Id(value.to_owned()));
            }
            "gender" => {
                if !patient::GENDERS.contains(&value) {
                    return Err(Error::BadRequest("gender must be one of male, female, other, unknown".into()));
                }
                self.index.token(TYPE, name, value)
            }
            "birthdate" => {
                let date = value.strip_prefix("eq").unwrap_or(value);
                if !primitives::is_date(date) {
                    return Err(Error::BadRequest(
                        "birthdate must be YYYY, YYYY-MM or YYYY-MM-DD (only eq is supported)".into(),
                    ));
                }
                self.index.token(TYPE, name, date)
            }
            // identifier: the string parameters are string groups, the
            // unindexed ones element groups.
            _ => {
                let v = if value.contains('|') { value.to_owned() } else { format!("|{value}") };
                if v.ends_with('|') {
                    return Err(Error::BadRequest("identifier needs a value after '|'".into()));
                }
                self.index.token(TYPE, name, &v)
            }
        };
        Ok(Searched::Token(token))
    }
}

/// A Patient search with `_sort`, as parsed.
struct Sorted {
    groups: Vec<Group>,
    sort: Sort,
    count: usize,
    /// The sort key the page continues after.
    after: Option<String>,
}

/// One search value as the index knows it.
enum Searched {
    Id(String),
    Token(String),
}

/// How a string parameter matches (R4 search.html#string): case- and
/// accent-insensitive starts-with by default, or `:exact` (as written),
/// or `:contains`.
#[derive(Clone, Copy, PartialEq)]
enum StringMatch {
    StartsWith,
    Exact,
    Contains,
}

/// A string parameter's test on a candidate's decrypted values.
#[derive(Clone)]
struct Strings {
    param: &'static str,
    how: StringMatch,
    /// Normalised, except for `:exact`.
    values: Vec<String>,
}

impl Strings {
    /// Whether its index walk covers every patient (a short prefix or
    /// `:contains`).
    fn scans(&self) -> bool {
        match self.how {
            StringMatch::Exact => false,
            StringMatch::StartsWith => self.values.iter().any(|v| v.chars().count() < PREFIX),
            StringMatch::Contains => true,
        }
    }

    fn holds(&self, resource: &Value) -> bool {
        let found = patient::search_values(resource);
        found.iter().filter(|(p, _)| *p == self.param).any(|(_, v)| match self.how {
            StringMatch::Exact => self.values.iter().any(|w| w == v),
            StringMatch::StartsWith => self.values.iter().any(|w| normalise(v).starts_with(w.as_str())),
            StringMatch::Contains => self.values.iter().any(|w| normalise(v).contains(w.as_str())),
        })
    }
}

/// What a candidate's decrypted resource must satisfy beyond its tokens.
#[derive(Clone)]
enum Test {
    Strings(Strings),
    /// A parameter the index does not hold, evaluated as record search does.
    Element {
        param: &'static SearchParam,
        modifier: Option<Modifier>,
        value: String,
    },
}

impl Test {
    /// Whether its index walk covers every patient.
    fn scans(&self) -> bool {
        match self {
            Test::Strings(s) => s.scans(),
            Test::Element { .. } => true,
        }
    }

    fn holds(&self, resource: &Value) -> bool {
        match self {
            Test::Strings(s) => s.holds(resource),
            Test::Element { param, modifier, value } => matches(param, *modifier, resource, value),
        }
    }
}

/// One search parameter: the ids it names, or the index tokens any of
/// which a match carries (and what the resource must then satisfy).
#[derive(Clone)]
enum Group {
    Ids(Vec<String>),
    Tokens { tokens: Vec<String>, test: Option<Test> },
}

impl Group {
    /// Which parameter drives a page: named ids first, then the one with
    /// fewest values (each value is one index walk), a walk over every
    /// patient last.
    fn rank(&self) -> (u8, usize) {
        match self {
            Group::Ids(ids) => (0, ids.len()),
            Group::Tokens { test: Some(t), tokens } if t.scans() => (2, tokens.len()),
            Group::Tokens { tokens, .. } => (1, tokens.len()),
        }
    }

    fn admits(&self, id: &str, tokens: &[String]) -> bool {
        match self {
            Group::Ids(ids) => ids.iter().any(|i| i == id),
            Group::Tokens { tokens: t, .. } => t.iter().any(|x| tokens.contains(x)),
        }
    }

    /// Whether the candidate's decrypted resource satisfies it (its token
    /// only admitted the candidate).
    fn holds(&self, resource: &Value) -> bool {
        match self {
            Group::Tokens { test: Some(t), .. } => t.holds(resource),
            _ => true,
        }
    }
}
