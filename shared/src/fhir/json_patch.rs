//! JSON Patch (RFC 6902) with JSON Pointer (RFC 6901), for FHIR's PATCH
//! interaction. The patched resource is validated like any update; a patch
//! may not change what the server owns (`resourceType`, `id`, `meta`).

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PatchError {
    /// The patch document itself is malformed (400).
    #[error("operation {0}: {1}")]
    Malformed(usize, String),
    /// The patch does not apply to this resource, or a `test` failed (422).
    #[error("operation {0}: {1}")]
    Failed(usize, String),
}

fn tokens(pointer: &str) -> Option<Vec<String>> {
    if pointer.is_empty() {
        return Some(vec![]);
    }
    let rest = pointer.strip_prefix('/')?;
    Some(rest.split('/').map(|t| t.replace("~1", "/").replace("~0", "~")).collect())
}

fn index(token: &str, len: usize, allow_end: bool) -> Option<usize> {
    if token == "-" {
        return allow_end.then_some(len);
    }
    if token.len() > 1 && token.starts_with('0') {
        return None;
    }
    let i: usize = token.parse().ok()?;
    (i < len || (allow_end && i == len)).then_some(i)
}

fn get<'v>(doc: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(doc, |v, t| match v {
        Value::Object(o) => o.get(t),
        Value::Array(a) => a.get(index(t, a.len(), false)?),
        _ => None,
    })
}

fn parent_mut<'v>(doc: &'v mut Value, path: &[String]) -> Option<&'v mut Value> {
    path[..path.len() - 1].iter().try_fold(doc, |v, t| match v {
        Value::Object(o) => o.get_mut(t),
        Value::Array(a) => {
            let i = index(t, a.len(), false)?;
            a.get_mut(i)
        }
        _ => None,
    })
}

fn add(doc: &mut Value, path: &[String], value: Value) -> Option<()> {
    let Some(last) = path.last() else {
        *doc = value;
        return Some(());
    };
    match parent_mut(doc, path)? {
        Value::Object(o) => {
            o.insert(last.clone(), value);
        }
        Value::Array(a) => {
            let i = index(last, a.len(), true)?;
            a.insert(i, value);
        }
        _ => return None,
    }
    Some(())
}

fn remove(doc: &mut Value, path: &[String]) -> Option<Value> {
    let last = path.last()?;
    match parent_mut(doc, path)? {
        Value::Object(o) => o.remove(last),
        Value::Array(a) => {
            let i = index(last, a.len(), false)?;
            Some(a.remove(i))
        }
        _ => None,
    }
}

/// Applies every operation in order, or none: on error `doc` is unchanged.
/// Checks the patch document on its own, before any resource is read: a
/// malformed patch is a 400 whatever it would have been applied to.
pub fn check(patch: &Value) -> Result<(), PatchError> {
    let ops = patch.as_array().ok_or_else(|| PatchError::Malformed(0, "a JSON Patch is an array".into()))?;
    for (n, op) in ops.iter().enumerate() {
        let malformed = |m: &str| Err(PatchError::Malformed(n, m.to_owned()));
        let pointer = |k: &str| op[k].as_str().and_then(tokens).is_some();
        let Some(name) = op["op"].as_str() else { return malformed("no op") };
        if !pointer("path") {
            return malformed("path is not a JSON Pointer");
        }
        match name {
            "add" | "replace" | "test" if op.get("value").is_none() => return malformed("value is missing"),
            "move" | "copy" if !pointer("from") => return malformed("from is not a JSON Pointer"),
            "add" | "remove" | "replace" | "move" | "copy" | "test" => {}
            other => return malformed(&format!("unknown op '{}'", other.chars().take(16).collect::<String>())),
        }
    }
    Ok(())
}

pub fn apply(doc: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let ops = patch.as_array().ok_or_else(|| PatchError::Malformed(0, "a JSON Patch is an array".into()))?;
    let mut work = doc.clone();
    for (n, op) in ops.iter().enumerate() {
        let malformed = |m: &str| PatchError::Malformed(n, m.to_owned());
        let failed = |m: &str| PatchError::Failed(n, m.to_owned());
        let name = op["op"].as_str().ok_or_else(|| malformed("no op"))?;
        let path = op["path"].as_str().and_then(tokens).ok_or_else(|| malformed("path is not a JSON Pointer"))?;
        let from = || op["from"].as_str().and_then(tokens).ok_or_else(|| malformed("from is not a JSON Pointer"));
        let value = || op.get("value").cloned().ok_or_else(|| malformed("value is missing"));
        match name {
            "add" => add(&mut work, &path, value()?).ok_or_else(|| failed("the target location does not exist"))?,
            "remove" => {
                remove(&mut work, &path).ok_or_else(|| failed("nothing to remove at path"))?;
            }
            "replace" => {
                let v = value()?;
                remove(&mut work, &path).ok_or_else(|| failed("nothing to replace at path"))?;
                add(&mut work, &path, v).ok_or_else(|| failed("the target location does not exist"))?;
            }
            "move" | "copy" => {
                let from = from()?;
                if name == "move" && path.len() > from.len() && path[..from.len()] == from[..] {
                    return Err(malformed("cannot move a value into itself"));
                }
                let v = if name == "move" { remove(&mut work, &from) } else { get(&work, &from).cloned() }
                    .ok_or_else(|| failed("nothing at from"))?;
                add(&mut work, &path, v).ok_or_else(|| failed("the target location does not exist"))?;
            }
            "test" => {
                if get(&work, &path) != Some(&value()?) {
                    return Err(failed("test failed"));
                }
            }
            other => return Err(malformed(&format!("unknown op '{}'", other.chars().take(16).collect::<String>()))),
        }
    }
    *doc = work;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc6902_operations() {
        let mut d = json!({"a": {"b": [1, 2]}, "c~/d": 1});
        let patch = json!([
            {"op": "add", "path": "/a/b/-", "value": 3},
            {"op": "add", "path": "/a/b/0", "value": 0},
            {"op": "replace", "path": "/c~0~1d", "value": 2},
            {"op": "copy", "from": "/a/b", "path": "/e"},
            {"op": "move", "from": "/e/0", "path": "/f"},
            {"op": "remove", "path": "/a/b/1"},
            {"op": "test", "path": "/f", "value": 0}
        ]);
        apply(&mut d, &patch).unwrap();
        assert_eq!(d, json!({"a": {"b": [0, 2, 3]}, "c~/d": 2, "e": [1, 2, 3], "f": 0}));
    }

    #[test]
    fn malformed_documents_are_refused_before_any_target() {
        for bad in [
            json!({}),
            json!([{"path": "/a"}]),
            json!([{"op": "add", "path": "/a"}]),
            json!([{"op": "add", "path": "a", "value": 1}]),
            json!([{"op": "move", "path": "/a"}]),
            json!([{"op": "frobnicate", "path": "/a"}]),
        ] {
            assert!(matches!(check(&bad), Err(PatchError::Malformed(..))), "{bad}");
        }
        assert_eq!(
            check(&json!([{"op": "remove", "path": "/a/0"}, {"op": "copy", "from": "/b", "path": "/c"}])),
            Ok(())
        );
    }

    #[test]
    fn all_or_nothing_and_errors_by_kind() {
        let original = json!({"a": 1});
        let mut d = original.clone();
        let err = apply(
            &mut d,
            &json!([{"op": "replace", "path": "/a", "value": 2}, {"op": "test", "path": "/a", "value": 1}]),
        );
        assert_eq!(err, Err(PatchError::Failed(1, "test failed".into())));
        assert_eq!(d, original, "a failed patch changes nothing");
        for (bad, malformed) in [
            (json!({"op": "add"}), true),
            (json!([{"op": "jump", "path": "/a"}]), true),
            (json!([{"op": "add", "path": "a", "value": 1}]), true),
            (json!([{"op": "add", "path": "/a"}]), true),
            (json!([{"op": "move", "from": "/a", "path": "/a/b"}]), true),
            (json!([{"op": "remove", "path": "/zz"}]), false),
            (json!([{"op": "add", "path": "/x/y", "value": 1}]), false),
            (json!([{"op": "replace", "path": "/a/01", "value": 1}]), false),
        ] {
            let e = apply(&mut d, &bad).unwrap_err();
            assert_eq!(matches!(e, PatchError::Malformed(..)), malformed, "{bad}: {e}");
        }
    }
}
