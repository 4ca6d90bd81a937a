//! Route templates matched as API Gateway's HTTP API matches them, the one
//! matcher behind a function's routes, a Bundle entry's, the `Allow` header
//! of a 405 and the local gateway.
//!
//! The functions match the raw path again instead of trusting API Gateway's
//! `routeKey` and `pathParameters`: API Gateway hands path parameters over
//! percent-decoded, and medrec validates ids on the raw segment (`%2E%2E`
//! is refused as an id; decoded it would be `..`, which the id syntax
//! allows). Bundle entries, which no gateway routes, need the matcher
//! anyway.

/// Path parameters, by name, in template order.
pub type Params<'t, 'p> = Vec<(&'t str, &'p str)>;

/// The path parameters of `path` under `template`, in template order, when
/// it fits: a literal segment matches itself, `{name}` one non-empty
/// segment, `{name+}` the non-empty rest of the path.
pub fn fit<'t, 'p>(template: &'t str, path: &'p str) -> Option<Params<'t, 'p>> {
    // What is left of the path; None once its last segment is used.
    let mut rest = Some(path.strip_prefix('/')?);
    let mut params = vec![];
    for t in template.strip_prefix('/')?.split('/') {
        let r = rest?;
        if let Some(name) = t.strip_prefix('{').and_then(|t| t.strip_suffix("+}")) {
            return (!r.is_empty()).then(|| {
                params.push((name, r));
                params
            });
        }
        let (segment, next) = match r.split_once('/') {
            Some((segment, next)) => (segment, Some(next)),
            None => (r, None),
        };
        match t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
            Some(name) if !segment.is_empty() => params.push((name, segment)),
            Some(_) => return None,
            None if t == segment => {}
            None => return None,
        }
        rest = next;
    }
    rest.is_none().then_some(params)
}

/// How specific a template is: a greedy one least, then more literal
/// segments beat fewer (`/fhir/Patient/_search` beats `/fhir/Patient/{id}`).
pub fn specificity(template: &str) -> (bool, usize) {
    (!template.contains("+}"), template.split('/').filter(|s| !s.is_empty() && !s.starts_with('{')).count())
}

/// The candidates whose template `path` fits, the most specific only,
/// each with its path parameters.
pub fn most_specific<'t, 'p, T>(
    candidates: impl IntoIterator<Item = (T, &'t str)>,
    path: &'p str,
) -> Vec<(T, Params<'t, 'p>)> {
    let fits: Vec<(T, &'t str, Params<'t, 'p>)> =
        candidates.into_iter().filter_map(|(c, t)| Some((c, t, fit(t, path)?))).collect();
    let Some(best) = fits.iter().map(|(_, t, _)| specificity(t)).max() else { return vec![] };
    fits.into_iter().filter(|(_, t, _)| specificity(t) == best).map(|(c, _, params)| (c, params)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_fit_as_api_gateway_fits_them() {
        assert_eq!(fit("/fhir/Patient/{id}", "/fhir/Patient/abc"), Some(vec![("id", "abc")]));
        assert_eq!(fit("/fhir/{type}/{id}", "/fhir/Observation/o1"), Some(vec![("type", "Observation"), ("id", "o1")]));
        assert_eq!(fit("/fhir/Patient", "/fhir/Patient"), Some(vec![]));
        assert_eq!(fit("/fhir/Patient/{id}", "/fhir/Patient/abc/x"), None, "more segments than the template");
        assert_eq!(fit("/fhir/Patient/{id}", "/fhir/Patient"), None, "fewer segments");
        assert_eq!(fit("/fhir/Patient/{id}", "/fhir/Patient/"), None, "an empty segment is no parameter");
        assert_eq!(fit("/fhir/Patient", "/fhir/Patient/"), None, "a trailing slash is a segment");
        assert_eq!(fit("/fhir/{type}/{id}", "/fhir//x"), None);
        assert_eq!(fit("/fhir/Patient", "/fhir/Observation"), None);
        assert_eq!(fit("/files/{path+}", "/files/a/b/c"), Some(vec![("path", "a/b/c")]));
        assert_eq!(fit("/files/{path+}", "/files"), None, "greedy needs at least one character");
        assert_eq!(fit("/files/{path+}", "/files/"), None);
        assert_eq!(fit("/fhir", "fhir"), None, "a path starts with a slash");
    }

    #[test]
    fn literal_segments_beat_variables_and_greedy_comes_last() {
        let routes = ["/fhir/{type}/{id}", "/fhir/Patient/{id}", "/fhir/Patient/_search", "/{proxy+}"];
        let best = |path| most_specific(routes.iter().map(|t| (*t, *t)), path);
        assert_eq!(best("/fhir/Patient/_search")[0].0, "/fhir/Patient/_search");
        assert_eq!(best("/fhir/Patient/p1")[0].0, "/fhir/Patient/{id}");
        assert_eq!(best("/fhir/Observation/o1")[0].0, "/fhir/{type}/{id}");
        assert_eq!(best("/other/x")[0], ("/{proxy+}", vec![("proxy", "other/x")]));
        assert!(most_specific([((), "/a")], "/b").is_empty());
    }
}
