//! Search of the directory (Practitioner, Organization, Location...): a
//! national directory holds millions of entries, so unlike a compartment a
//! directory type is never read whole. Its identifiers, references and name
//! prefixes are held as keyed tokens of the blind index (as a Patient's
//! are); a page walks the entries of the most selective parameter the
//! request names (or every entry of the type) from the cursor, and tests
//! each candidate's decrypted resource on every parameter. A page costs
//! what it examines, and that is bounded (`MEDREC_SEARCH_SCAN_PER_PAGE`).

use super::clinical::DIRECTORY;
use super::clinical_search::{in_order, Filter, Sort};
use super::records::{Query, SearchResult, Stored};
use super::{Caller, Services};
use crate::audit::AuditEntry;
use crate::auth::Action;
use crate::crypto::blind::normalise;
use crate::error::{Error, Result};
use crate::fhir::outcome::Issue;
use crate::fhir::resources::{ResourceDef, SearchParam};
use crate::fhir::search_params::{matches, string_values, values, Modifier};
use crate::ports::{KeyService, RecordStore};
use serde_json::Value;

/// Blind-index tokens per directory resource, as for a Patient: each is a
/// transaction item, and DynamoDB allows 100 per transaction.
const MAX_TOKENS: usize = 40;
/// How many leading characters of a name's string its prefix token holds;
/// a shorter search value cannot use the index.
const PREFIX: usize = 3;
/// The string parameters whose prefixes are indexed: names, what a
/// directory is looked up by. Other strings (addresses) are tested on the
/// candidates an indexed parameter, or the walk of every entry, yields.
const NAME_PARAMS: [&str; 4] = ["name", "family", "given", "alias"];
/// One index parameter for the prefixes of every name parameter: one
/// token per string, whichever is searched.
const PREFIX_PARAM: &str = "name:prefix";
/// The entry every resource of a type has: the walk of the whole type.
const ALL: &str = "_all";

/// A directory search as the request (or its cursor) names it.
pub(crate) struct DirectorySearch<'q> {
    pub def: &'static ResourceDef,
    pub filters: Vec<Filter<'q>>,
    pub sort: Sort,
    pub count: usize,
    /// The id (or, sorted, the sort key) the page continues after.
    pub after: Option<String>,
}

/// What the index holds of a parameter's values.
#[derive(Clone, Copy, PartialEq)]
enum Indexed {
    /// An Identifier's value (the system is tested on the candidate).
    Identifier,
    /// A reference's id (its type, or URL, is tested on the candidate).
    Reference,
    /// The first `PREFIX` normalised characters of each string.
    NamePrefix,
}

fn indexed(param: &SearchParam) -> Option<Indexed> {
    match param.kind.as_str() {
        "reference" => Some(Indexed::Reference),
        "token" if !param.paths.is_empty() && param.paths.iter().all(|p| p.of == "Identifier") => {
            Some(Indexed::Identifier)
        }
        "string" if NAME_PARAMS.contains(&param.name.as_str()) => Some(Indexed::NamePrefix),
        _ => None,
    }
}

fn prefix(value: &str) -> Option<String> {
    let normalised = normalise(value);
    (normalised.chars().count() >= PREFIX).then(|| normalised.chars().take(PREFIX).collect())
}

/// The last segment of a reference (`Organization/1`, `1`, a URL): its id.
fn reference_id(reference: &str) -> &str {
    reference.rsplit('/').next().unwrap_or(reference)
}

/// The index entry (parameter, value) one search value can be found
/// under; None when it cannot (a short prefix, `:contains`, `system|`).
fn entry(how: Indexed, name: &str, modifier: Option<Modifier>, value: &str) -> Option<(String, String)> {
    let value = value.trim();
    match (how, modifier) {
        (Indexed::NamePrefix, None | Some(Modifier::Exact)) => Some((PREFIX_PARAM.into(), prefix(value)?)),
        (Indexed::Identifier, None) => {
            let v = value.split_once('|').map_or(value, |(_, v)| v);
            (!v.is_empty()).then(|| (name.into(), v.into()))
        }
        (Indexed::Reference, None) => Some((name.into(), reference_id(value).into())),
        _ => None,
    }
}

impl<S: RecordStore, K: KeyService> Services<S, K> {
    /// The blind-index tokens a directory resource's current version is
    /// stored under (`Indexed`), and its type's `_all` entry.
    pub(crate) fn directory_tokens(&self, def: &ResourceDef, resource: &Value) -> Result<Vec<String>> {
        let ty = def.name.as_str();
        let mut tokens = vec![self.index.token(ty, ALL, "")];
        for param in &def.params {
            let Some(how) = indexed(param) else { continue };
            let found: Vec<(String, String)> = match how {
                Indexed::NamePrefix => string_values(param, resource)
                    .iter()
                    .filter_map(|s| prefix(s))
                    .map(|p| (PREFIX_PARAM.into(), p))
                    .collect(),
                Indexed::Identifier => values(param, resource)
                    .into_iter()
                    .filter_map(|(v, _)| v["value"].as_str())
                    .map(|v| (param.name.clone(), v.to_owned()))
                    .collect(),
                Indexed::Reference => values(param, resource)
                    .into_iter()
                    .filter_map(|(v, _)| v["reference"].as_str())
                    .map(|r| (param.name.clone(), reference_id(r).to_owned()))
                    .collect(),
            };
            tokens.extend(found.iter().map(|(p, v)| self.index.token(ty, p, v)));
        }
        tokens.sort();
        tokens.dedup();
        if tokens.len() > MAX_TOKENS {
            return Err(Error::Invalid(vec![Issue::error(
                "too-costly",
                format!(
                    "too many searchable values (identifiers, references, names): at most {MAX_TOKENS} index entries"
                ),
            )
            .at(ty)]));
        }
        Ok(tokens)
    }

    /// A directory search: the candidates of the most selective indexed
    /// parameter (any of its values' entries), each tested on its
    /// decrypted resource. Unsorted, pages follow the index (by id);
    /// `_sort` orders the whole result, so it must fit one walk.
    pub(crate) async fn search_directory(
        &self,
        caller: &Caller,
        search: DirectorySearch<'_>,
        params: Query,
        audit: &mut AuditEntry,
    ) -> Result<SearchResult> {
        let DirectorySearch { def, filters, sort, count, after } = search;
        let ty = def.name.as_str();
        self.check(caller, ty, Action::Search, None)?;
        // Each filter's index tokens, when every one of its values has one.
        let admitting: Vec<Option<Vec<String>>> = filters
            .iter()
            .map(|f| {
                let how = indexed(f.param)?;
                let values = self.search_values(f.value).ok()?;
                values
                    .iter()
                    .map(|v| entry(how, &f.param.name, f.modifier, v).map(|(p, v)| self.index.token(ty, &p, &v)))
                    .collect()
            })
            .collect();
        let ids: Option<Vec<String>> = filters
            .iter()
            .find(|f| f.param.name == "_id" && f.modifier.is_none())
            .and_then(|f| self.search_values(f.value).ok())
            .map(|v| v.iter().map(|s| s.trim().to_owned()).collect());
        let driver = admitting.iter().flatten().min_by_key(|t| t.len()).cloned();
        let scan = self.limits.search_scan;
        // Sorted, the cursor holds a sort key: every page walks from the start.
        let walk_after = if sort.is_some() { None } else { after.as_deref() };
        let (candidates, exhausted) = match (ids, driver) {
            (Some(mut ids), _) => {
                ids.retain(|id| walk_after.is_none_or(|a| id.as_str() > a));
                ids.sort();
                ids.dedup();
                (ids, true)
            }
            (None, Some(tokens)) => self.index_walk(ty, &tokens, walk_after, scan).await?,
            (None, None) => self.index_walk(ty, &[self.index.token(ty, ALL, "")], walk_after, scan).await?,
        };
        if sort.is_some() && !exhausted {
            return Err(Error::TooCostly(format!(
                "_sort orders a whole result, and this search selects more than {scan} {ty} resources (MEDREC_SEARCH_SCAN_PER_PAGE): name an identifier, name or reference to narrow it"
            )));
        }
        // Opened once something is to be decrypted: a directory nothing was
        // ever written to has no key.
        let mut key = None;
        let (mut hits, mut examined, mut last_examined) = (vec![], 0, None);
        for id in &candidates {
            if sort.is_none() && hits.len() == count {
                break;
            }
            examined += 1;
            last_examined = Some(id.clone());
            let Some(current) = self.store.current(DIRECTORY, ty, id).await?.filter(|c| !c.deleted) else { continue };
            // The tokens decide what they can before anything is decrypted.
            if !admitting.iter().flatten().all(|t| t.iter().any(|x| current.tokens.contains(x))) {
                continue;
            }
            let key = match &key {
                Some(k) => k,
                None => key.insert(self.patient_key(DIRECTORY).await?),
            };
            let resource =
                self.decrypt_record(key, DIRECTORY, ty, id, current.version, current.ciphertext.as_deref())?;
            if filters.iter().all(|f| matches(f.param, f.modifier, &resource, f.value)) {
                hits.push(Stored::new(id.clone(), current.version, current.last_updated, resource));
            }
        }
        let (resources, total, next_after, mut notes) = match sort {
            Some(_) => {
                let page = in_order(hits, sort, after.as_deref(), count);
                (page.resources, Some(page.total), page.next_after, vec![])
            }
            None => {
                let has_more = examined < candidates.len() || !exhausted;
                // A total without reading past the page: only a whole result's.
                let total = (after.is_none() && !has_more).then_some(hits.len());
                (hits, total, last_examined.filter(|_| has_more), vec![])
            }
        };
        if next_after.is_some() && resources.len() < count {
            notes.push(Issue::warning(
                "too-costly",
                format!("this page stopped after examining {examined} {ty} resources (MEDREC_SEARCH_SCAN_PER_PAGE); the next link continues"),
            ));
        }
        audit.entities = resources.iter().map(|r| format!("{ty}/{}/_history/{}", r.id, r.version)).collect();
        self.audit_read(caller, audit).await?;
        let next_cursor = next_after.map(|last| self.next_page(caller, ty, params, count, last));
        Ok(SearchResult { total, resources, next_cursor, notes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::resources::directory_type;

    #[test]
    fn identifiers_references_and_name_prefixes_are_what_the_index_holds() {
        let practitioner = directory_type("Practitioner").unwrap();
        let how = |name: &str| indexed(practitioner.param(name).unwrap());
        assert!(how("identifier") == Some(Indexed::Identifier));
        assert!(how("name") == Some(Indexed::NamePrefix) && how("family") == Some(Indexed::NamePrefix));
        assert!(how("address-city").is_none() && how("gender").is_none() && how("active").is_none());
        let role = directory_type("PractitionerRole").unwrap();
        assert!(indexed(role.param("practitioner").unwrap()) == Some(Indexed::Reference));

        assert_eq!(entry(Indexed::NamePrefix, "name", None, " Müller "), Some((PREFIX_PARAM.into(), "mul".into())));
        assert_eq!(entry(Indexed::NamePrefix, "name", None, "Mu"), None);
        assert_eq!(entry(Indexed::NamePrefix, "name", Some(Modifier::Contains), "Muller"), None);
        let npi = Some(("identifier".to_owned(), "123".to_owned()));
        assert_eq!(entry(Indexed::Identifier, "identifier", None, "http://hl7.org/fhir/sid/us-npi|123"), npi);
        assert_eq!(entry(Indexed::Identifier, "identifier", None, "|123"), npi);
        assert_eq!(entry(Indexed::Identifier, "identifier", None, "123"), npi);
        assert_eq!(entry(Indexed::Identifier, "identifier", None, "http://hl7.org/fhir/sid/us-npi|"), None);
        assert_eq!(entry(Indexed::Identifier, "identifier", Some(Modifier::Not), "123"), None);
        let org = Some(("organization".to_owned(), "o1".to_owned()));
        for v in ["Organization/o1", "o1", "https://ehr.example/fhir/Organization/o1"] {
            assert_eq!(entry(Indexed::Reference, "organization", None, v), org);
        }
    }
}
