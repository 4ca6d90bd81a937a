//! The FHIR REST edge every resource function shares: the response for a
//! stored resource (ETag, Location), history paging parameters and the
//! history Bundle.

use crate::error::{Error, Result};
use crate::fhir::bundle::{self, HistoryEntry};
use crate::http;
use crate::service::records::{HistoryResult, Stored, DEFAULT_PAGE, MAX_PAGE};
use lambda_http::{Body, Request, Response};

/// A stored resource with its version as ETag; `location` for create and update.
pub fn resource_response(status: u16, base: &str, resource_type: &str, s: &Stored, location: bool) -> Response<Body> {
    let mut headers = vec![("etag", format!("W/\"{}\"", s.version))];
    if location {
        headers.push(("location", format!("{base}/fhir/{resource_type}/{}/_history/{}", s.id, s.version)));
    }
    http::response(status, Some(&s.resource), &headers)
}

/// A version id from the path: a positive integer.
pub fn version_id(raw: &str) -> Result<u64> {
    raw.parse::<u64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| Error::BadRequest("version id must be a positive integer".into()))
}

/// `_count` and `_cursor`, the only parameters history takes.
pub fn history_params(req: &Request) -> Result<(usize, Option<String>)> {
    let mut count = DEFAULT_PAGE;
    let mut cursor = None;
    for (k, v) in http::query(req)? {
        match k.as_str() {
            "_count" => {
                count = v
                    .parse()
                    .ok()
                    .filter(|c| (1..=MAX_PAGE).contains(c))
                    .ok_or_else(|| Error::BadRequest(format!("_count must be 1 to {MAX_PAGE}")))?
            }
            "_cursor" => cursor = Some(v),
            _ => return Err(Error::BadRequest("history supports _count and _cursor only".into())),
        }
    }
    Ok((count, cursor))
}

/// The history Bundle of one resource.
pub fn history_response(base: &str, resource_type: &str, id: &str, h: HistoryResult) -> Response<Body> {
    let entries = h
        .items
        .into_iter()
        .map(|i| HistoryEntry {
            full_url: format!("{base}/fhir/{resource_type}/{id}"),
            resource: i.resource,
            method: match (i.deleted, i.first) {
                (true, _) => "DELETE",
                (false, true) => "POST",
                (false, false) => "PUT",
            },
            url: if i.first { resource_type.to_owned() } else { format!("{resource_type}/{id}") },
            status: match (i.deleted, i.first) {
                (true, _) => "204",
                (false, true) => "201",
                (false, false) => "200",
            },
            version: i.version,
            last_updated: i.last_updated,
        })
        .collect();
    let self_link = format!("{base}/fhir/{resource_type}/{id}/_history");
    let next = h.next_cursor.map(|c| format!("{self_link}?_cursor={c}"));
    http::response(200, Some(&bundle::history(self_link, next, h.total, entries)), &[])
}
