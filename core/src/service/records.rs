//! What every resource type's use cases share: the stored shape returned to
//! callers, optimistic concurrency, and history over a compartment's
//! versions.

use super::{Caller, Services};
use crate::audit::AuditEntry;
use crate::cursor::Cursor;
use crate::error::{Error, Result};
use crate::ports::{KeyService, RecordStore};
use serde_json::Value;

pub const MAX_PAGE: usize = 100;
pub const DEFAULT_PAGE: usize = 20;

/// A `_count`: a positive integer; above `MAX_PAGE` the page is `MAX_PAGE`
/// (R4 search.html#count lets a server return fewer; `count_note` tells
/// the client).
pub fn page_size(value: &str) -> Result<usize> {
    page_size_within(value, MAX_PAGE)
}

/// A `_count` of a request whose pages hold at most `max`.
pub fn page_size_within(value: &str, max: usize) -> Result<usize> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) || value.bytes().all(|b| b == b'0') {
        return Err(Error::BadRequest(format!("_count must be a positive integer (pages hold at most {max})")));
    }
    // All digits: too long for a usize is as large as one.
    Ok(value.parse::<usize>().unwrap_or(usize::MAX).min(max))
}

/// The note a search Bundle carries when its `_count` asked for more than
/// a page holds.
pub fn count_note(query: &Query) -> Option<crate::fhir::outcome::Issue> {
    let asked = query.iter().find(|(k, _)| k == "_count")?;
    (page_size(&asked.1).ok()? < asked.1.parse::<usize>().unwrap_or(usize::MAX)).then(|| {
        crate::fhir::outcome::Issue::information(
            "informational",
            format!("_count is at most {MAX_PAGE}: this search's pages hold {MAX_PAGE} entries"),
        )
    })
}

pub(crate) const CURSOR_TTL_SECONDS: i64 = 900;

/// A stored resource as returned to the caller.
pub struct Stored {
    pub id: String,
    pub version: u64,
    pub last_updated: String,
    pub resource: Value,
    /// A write by a caller who may not read what they wrote (their scopes,
    /// or the patient's consent): the answer carries no body.
    pub withheld: bool,
}

impl Stored {
    pub fn new(id: impl Into<String>, version: u64, last_updated: impl Into<String>, resource: Value) -> Self {
        Stored { id: id.into(), version, last_updated: last_updated.into(), resource, withheld: false }
    }
}

pub struct SearchResult {
    /// The number of matches, when known without reading them all.
    pub total: Option<usize>,
    pub resources: Vec<Stored>,
    pub next_cursor: Option<String>,
    /// What the client should know about this page (a limit that cut it
    /// short), sent as the Bundle's OperationOutcome entry.
    pub notes: Vec<crate::fhir::outcome::Issue>,
}

pub struct HistoryItem {
    pub resource_type: String,
    pub id: String,
    pub version: u64,
    pub last_updated: String,
    pub deleted: bool,
    pub resource: Option<Value>,
    pub first: bool,
}

pub struct HistoryResult {
    pub total: usize,
    pub items: Vec<HistoryItem>,
    pub next_cursor: Option<String>,
}

/// Search parameters as (name, value) pairs, in the order sent.
pub type Query = Vec<(String, String)>;

pub(crate) fn expect_version(if_match: u64, current: u64) -> Result<()> {
    if if_match == current {
        Ok(())
    } else {
        Err(Error::PreconditionFailed(format!("If-Match names version {if_match}, the current version is {current}")))
    }
}

pub(crate) fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl<S: RecordStore, K: KeyService> Services<S, K> {
    /// A search request's parameters: as sent, or recovered from a paging
    /// cursor (which must come alone, and only from the caller it was made
    /// for, on the same route); with the id to continue after.
    pub(crate) fn search_params(&self, caller: &Caller, route: &str, params: Query) -> Result<(Query, Option<String>)> {
        self.search_resume(caller, route, params).map(|(q, after, _)| (q, after))
    }

    /// `search_params`, with the total the first page counted.
    pub(crate) fn search_resume(
        &self,
        caller: &Caller,
        route: &str,
        params: Query,
    ) -> Result<(Query, Option<String>, Option<usize>)> {
        let count = params.iter().find(|(k, _)| k == "_count");
        match params.iter().find(|(k, _)| k == "_cursor") {
            // A paging link carries its page size, which the client may change.
            Some((_, token)) if params.len() == 1 + usize::from(count.is_some()) => {
                let mut c = self
                    .cursors
                    .decode(token, &caller.principal.subject, route, now_unix())
                    .map_err(|e| Error::BadRequest(e.to_string()))?;
                if let Some(count) = count {
                    c.q.retain(|(k, _)| k != "_count");
                    c.q.push(count.clone());
                }
                Ok((c.q, Some(c.after), c.total))
            }
            Some(_) => Err(Error::BadRequest("a paging request takes _cursor and _count only".into())),
            None => Ok((params, None, None)),
        }
    }

    /// One page of a blind index walk: at most `scan` ids of a type indexed
    /// under any of `tokens`, sorted, after `after`; and whether the walk
    /// is complete (nothing beyond them).
    pub(crate) async fn index_walk(
        &self,
        ty: &str,
        tokens: &[String],
        after: Option<&str>,
        scan: usize,
    ) -> Result<(Vec<String>, bool)> {
        let mut merged = Vec::new();
        let mut complete = true;
        for t in tokens {
            let page = self.store.ids_for_token_page(ty, t, after, scan + 1).await?;
            complete &= page.len() <= scan;
            merged.extend(page);
        }
        merged.sort();
        merged.dedup();
        complete &= merged.len() <= scan;
        merged.truncate(scan);
        Ok((merged, complete))
    }

    /// The cursor of the next page, carrying the query (with its page size)
    /// sealed for this caller and route.
    pub(crate) fn next_page(&self, caller: &Caller, route: &str, query: Query, count: usize, after: String) -> String {
        self.next_page_counted(caller, route, query, count, after, None)
    }

    /// `next_page`, carrying the search's total to the pages after.
    pub(crate) fn next_page_counted(
        &self,
        caller: &Caller,
        route: &str,
        mut query: Query,
        count: usize,
        after: String,
        total: Option<usize>,
    ) -> String {
        if !query.is_empty() && !query.iter().any(|(k, _)| k == "_count") {
            query.push(("_count".into(), count.to_string()));
        }
        let c = Cursor { q: query, after, exp: now_unix() + CURSOR_TTL_SECONDS, total };
        self.cursors.encode(&c, &caller.principal.subject, route)
    }

    /// Logical delete of (patient, type, id): a tombstone version, index
    /// entries removed, history kept; deleting again only audits.
    pub(crate) async fn tombstone(
        &self,
        audit: &mut AuditEntry,
        (patient, resource_type, id): (&str, &'static str, &str),
        if_match: Option<u64>,
        event_type: &'static str,
    ) -> Result<()> {
        let current = self.store.current(patient, resource_type, id).await?.ok_or(Error::NotFound)?;
        if let Some(expected) = if_match {
            expect_version(expected, current.version)?;
        }
        audit.status = 204;
        if current.deleted {
            return self.store.audit(audit, vec![]).await.map_err(Into::into);
        }
        let now = crate::fhir::now_instant();
        self.commit_next_version(audit, (patient, resource_type, id), current, &now, None, vec![], event_type).await
    }

    /// A page of a resource's versions, newest first, behind a cursor bound
    /// to the caller and the route. The caller has authorized the read;
    /// versions the patient's consents refuse them are left out.
    pub(crate) async fn record_history(
        &self,
        caller: &Caller,
        (patient, resource_type, id): (&str, &str, &str),
        consents: &super::consent_gate::ConsentView,
        count: usize,
        cursor: Option<&str>,
        audit: &mut AuditEntry,
    ) -> Result<HistoryResult> {
        let route = format!("{resource_type}/{id}/_history");
        let before = match cursor {
            Some(t) => {
                let c = self
                    .cursors
                    .decode(t, &caller.principal.subject, &route, now_unix())
                    .map_err(|e| Error::BadRequest(e.to_string()))?;
                Some(
                    c.after
                        .parse::<u64>()
                        .map_err(|_| Error::BadRequest("the paging cursor is invalid or expired".into()))?,
                )
            }
            None => None,
        };
        let current = self.store.current(patient, resource_type, id).await?.ok_or(Error::NotFound)?;
        let key = self.patient_key(patient).await?;
        // A resource the caller may not read now has no history for them
        // either (403, as its read); older versions are decided one by one.
        if let Some(ct) = current.ciphertext.as_deref().filter(|_| !current.deleted) {
            let now = self.decrypt_record(&key, patient, resource_type, id, current.version, Some(ct))?;
            self.consent_on(caller, consents, super::consent_gate::Subject::read(resource_type, id, &now))?;
        }
        let mut versions = self.store.versions(patient, resource_type, id, before, count + 1).await?;
        let next = (versions.len() > count).then(|| {
            versions.truncate(count);
            versions.last().map(|v| v.version)
        });
        let mut items = Vec::with_capacity(versions.len());
        for v in &versions {
            let resource = match v.deleted {
                true => None,
                false => {
                    Some(self.decrypt_record(&key, patient, resource_type, id, v.version, v.ciphertext.as_deref())?)
                }
            };
            let subject = resource.as_ref().map(|r| super::consent_gate::Subject::read(resource_type, id, r));
            if subject.is_some_and(|s| self.consent_on(caller, consents, s).is_err()) {
                continue;
            }
            items.push(HistoryItem {
                resource_type: resource_type.to_owned(),
                id: id.to_owned(),
                version: v.version,
                last_updated: v.last_updated.clone(),
                deleted: v.deleted,
                resource,
                first: v.version == 1,
            });
        }
        audit.entities = items.iter().map(|v| format!("{resource_type}/{id}/_history/{}", v.version)).collect();
        self.audit_read(caller, audit).await?;
        let next_cursor = next.flatten().map(|after| self.next_page(caller, &route, vec![], count, after.to_string()));
        Ok(HistoryResult { total: current.version as usize, items, next_cursor })
    }
}
