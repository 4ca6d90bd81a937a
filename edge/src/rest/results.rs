//! Search result parameters, for every search: `_summary`, `_elements`,
//! `_total`, `_include` and `_revinclude`. They shape the answer, not the
//! match, so they are taken out of the query before the search runs and
//! travel on the paging links beside the cursor.

use crate::audit::AuditEntry;
use crate::error::{Error, Result};
use crate::fhir::clinical::{compartment_of, patient_links};
use crate::fhir::subset::{self, Summary};
use crate::runtime::Runtime;
use crate::service::records::{Query, SearchResult, Stored, MAX_PAGE};
use crate::service::Caller;

pub struct ResultParams {
    pub summary: Summary,
    pub elements: Option<Vec<String>>,
    /// `_total=none` leaves the total out.
    pub total: bool,
    /// `Type:param` links to follow, as sent (validated).
    pub include: Vec<String>,
    pub revinclude: Vec<String>,
    /// The page size asked for (`_count`), shown again on the paging links;
    /// the search itself reads `_count` from the query.
    pub page: Option<usize>,
}

impl Default for ResultParams {
    fn default() -> Self {
        ResultParams {
            summary: Summary::False,
            elements: None,
            total: true,
            include: vec![],
            revinclude: vec![],
            page: None,
        }
    }
}

fn link(value: &str, name: &str) -> Result<(&'static str, &'static str)> {
    patient_links()
        .find(|(t, p)| value.split_once(':') == Some((t, p)))
        .ok_or_else(|| Error::BadRequest(format!("{name} supports the patient links of compartment records only")))
}

impl ResultParams {
    /// Takes the result parameters out of `query` (a search of `ty`).
    pub fn take(query: &mut Query, ty: &str) -> Result<Self> {
        let mut p = ResultParams::default();
        let mut rest = Query::new();
        for (k, v) in query.drain(..) {
            match k.as_str() {
                "_summary" => {
                    p.summary = Summary::parse(&v)
                        .ok_or_else(|| Error::BadRequest("_summary takes true, text, data, count or false".into()))?
                }
                "_elements" => {
                    // Choice elements are asked for by their stem (`value`).
                    let known = subset::element_names(ty);
                    let mut names = vec![];
                    for n in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                        let name =
                            known.iter().find(|k| *k == n || k.strip_suffix("[x]") == Some(n)).ok_or_else(|| {
                                Error::BadRequest(format!("_elements names an element {ty} does not have"))
                            })?;
                        names.push(name.clone());
                    }
                    p.elements = Some(names);
                }
                // R4 search.html#count: `_count=0` asks for the count alone.
                "_count" if v.bytes().all(|b| b == b'0') && !v.is_empty() => p.summary = Summary::Count,
                "_count" => {
                    p.page = crate::service::records::page_size(&v).ok();
                    rest.push((k, v));
                }
                "_total" => {
                    p.total = match v.as_str() {
                        "none" => false,
                        "estimate" | "accurate" => true,
                        _ => return Err(Error::BadRequest("_total takes none, estimate or accurate".into())),
                    }
                }
                "_include" => {
                    let (from, _) = link(&v, "_include")?;
                    if from != ty {
                        return Err(Error::BadRequest("_include must start with the searched type".into()));
                    }
                    p.include.push(v);
                }
                "_revinclude" => {
                    link(&v, "_revinclude")?;
                    if ty != "Patient" {
                        return Err(Error::BadRequest("_revinclude is supported on Patient searches".into()));
                    }
                    p.revinclude.push(v);
                }
                _ => rest.push((k, v)),
            }
        }
        if p.elements.is_some() && p.summary != Summary::False {
            return Err(Error::BadRequest("use _summary or _elements, not both".into()));
        }
        *query = rest;
        Ok(p)
    }

    /// The parameters again, for the paging links (`&`-prefixed).
    pub fn link_suffix(&self) -> String {
        let mut out = String::new();
        let summary = match self.summary {
            Summary::True => Some("true"),
            Summary::Text => Some("text"),
            Summary::Data => Some("data"),
            Summary::Count => Some("count"),
            Summary::False => None,
        };
        if let Some(s) = summary {
            out.push_str(&format!("&_summary={s}"));
        }
        if let Some(e) = &self.elements {
            let names: Vec<&str> = e.iter().map(|n| n.strip_suffix("[x]").unwrap_or(n)).collect();
            out.push_str(&format!("&_elements={}", names.join(",")));
        }
        if !self.total {
            out.push_str("&_total=none");
        }
        if let Some(n) = self.page {
            out.push_str(&format!("&_count={n}"));
        }
        for i in &self.include {
            out.push_str(&format!("&_include={i}"));
        }
        for r in &self.revinclude {
            out.push_str(&format!("&_revinclude={r}"));
        }
        out
    }

    /// Cuts the matches as asked.
    pub fn shape(&self, resources: &mut Vec<Stored>) {
        if self.summary == Summary::Count {
            resources.clear();
            return;
        }
        for s in resources.iter_mut() {
            subset::apply(&mut s.resource, self.summary, self.elements.as_deref());
        }
    }

    /// The resources `_include` and `_revinclude` add to a page: each read
    /// or search as the caller, authorized, consent-checked and audited on
    /// its own. A compartment the caller may not see adds nothing (and
    /// reveals nothing: the same answer as an empty one).
    /// With them, notes on what was cut short (a patient with more than a
    /// page of records of a `_revinclude`d type).
    pub async fn included(
        &self,
        rt: &Runtime,
        caller: &Caller,
        page: &SearchResult,
    ) -> Result<(Vec<Stored>, Vec<crate::fhir::outcome::Issue>)> {
        let svc = &rt.services;
        let mut out: Vec<Stored> = vec![];
        let mut notes = vec![];
        let mut seen = std::collections::BTreeSet::new();
        for inc in &self.include {
            let (ty, _) = link(inc, "_include")?;
            let patients: std::collections::BTreeSet<String> =
                page.resources.iter().filter_map(|s| compartment_of(ty, &s.resource).ok()).collect();
            for p in patients {
                if !seen.insert(format!("Patient/{p}")) {
                    continue;
                }
                let mut audit = svc.draft(Some(caller), "read");
                match svc.read_record(caller, "Patient", &p, None, &mut audit).await {
                    Ok(s) => out.push(s),
                    Err(e) => skip(rt, e, audit, caller).await?,
                }
            }
        }
        for rev in &self.revinclude {
            let (ty, _) = link(rev, "_revinclude")?;
            for patient in &page.resources {
                let mut audit = svc.draft(Some(caller), "search-type");
                // Up to a page of the largest size per patient.
                let q = vec![("patient".to_owned(), patient.id.clone()), ("_count".into(), MAX_PAGE.to_string())];
                match svc.search_records(caller, ty, q, &mut audit).await {
                    Ok(found) => {
                        if found.next_cursor.is_some() {
                            notes.push(crate::fhir::outcome::Issue::warning(
                                "too-costly",
                                format!(
                                    "_revinclude={rev} adds at most {MAX_PAGE} per patient: search {ty}?patient= for the rest"
                                ),
                            ));
                        }
                        out.extend(found.resources.into_iter().filter(|s| seen.insert(format!("{ty}/{}", s.id))))
                    }
                    Err(e) => skip(rt, e, audit, caller).await?,
                }
            }
        }
        notes.dedup();
        Ok((out, notes))
    }
}

/// An included resource the caller may not see is left out (and the denied
/// attempt audited); any other failure fails the search.
async fn skip(rt: &Runtime, e: Error, audit: AuditEntry, caller: &Caller) -> Result<()> {
    match e {
        Error::Forbidden(_) | Error::NotFound | Error::Gone => {
            let status = e.status();
            rt.services.audit_failure(audit, status, Some(caller), None).await;
            Ok(())
        }
        other => Err(other),
    }
}
