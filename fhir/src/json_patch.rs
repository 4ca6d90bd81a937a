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
    /// The patch would pass a bound on operations or document size (422):
    /// refused before the work or the memory grows.
    #[error("operation {0}: {1}")]
    TooCostly(usize, String),
}

/// What one patch may do: how many operations, and how large the document
/// may be while it is patched and after.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub operations: usize,
    pub bytes: usize,
}

/// The length of a value's JSON text, counted without building it.
fn json_len(v: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Counter(0);
    serde_json::to_writer(&mut c, v).map(|_| c.0).unwrap_or(usize::MAX)
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

/// Checks the patch document on its own, before any resource is read: a
/// malformed patch is a 400 whatever it would have been applied to.
pub fn check(patch: &Value) -> Result<(), PatchError> {
    let ops = patch.as_array().ok_or_else(|| PatchError::Malformed(0, "a JSON Patch is an array".into()))?;
    // An empty patch would write a new version that changes nothing.
    if ops.is_empty() {
        return Err(PatchError::Malformed(0, "a JSON Patch needs at least one operation".into()));
    }
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

/// Applies every operation in order, or none: on error `doc` is unchanged.
/// The document's size is tracked operation by operation (each `add`,
/// `replace` or `copy` counts the value it puts, each `remove` what it
/// takes), and an operation that would take it past `bounds.bytes` is
/// refused before it runs: a patch of a few `copy` operations that double
/// the document each time stops at the bound, not at the memory's end.
pub fn apply(doc: &mut Value, patch: &Value, bounds: Bounds) -> Result<(), PatchError> {
    let ops = patch.as_array().ok_or_else(|| PatchError::Malformed(0, "a JSON Patch is an array".into()))?;
    if ops.len() > bounds.operations {
        return Err(PatchError::TooCostly(
            bounds.operations,
            format!("a patch has at most {} operations", bounds.operations),
        ));
    }
    let mut size = json_len(doc);
    let too_large =
        |n: usize| PatchError::TooCostly(n, format!("the patched resource would exceed {} bytes", bounds.bytes));
    if size > bounds.bytes {
        return Err(too_large(0));
    }
    let mut work = doc.clone();
    for (n, op) in ops.iter().enumerate() {
        let grows = match op["op"].as_str() {
            Some("add" | "replace") => op.get("value").map_or(0, json_len),
            Some("copy") => {
                op["from"].as_str().and_then(tokens).and_then(|from| get(&work, &from).map(json_len)).unwrap_or(0)
            }
            _ => 0,
        };
        if size.saturating_add(grows) > bounds.bytes {
            return Err(too_large(n));
        }
        let shrinks = match op["op"].as_str() {
            Some("remove" | "replace") => {
                op["path"].as_str().and_then(tokens).and_then(|p| get(&work, &p).map(json_len))
            }
            _ => None,
        };
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
                let wanted = value()?;
                if !get(&work, &path).is_some_and(|v| super::decimal::same_value(v, &wanted)) {
                    return Err(failed("test failed"));
                }
            }
            other => return Err(malformed(&format!("unknown op '{}'", other.chars().take(16).collect::<String>()))),
        }
        size = (size + grows).saturating_sub(shrinks.unwrap_or(0));
    }
    // The running size is an estimate (keys and separators uncounted); the
    // result is held to the bound exactly.
    if json_len(&work) > bounds.bytes {
        return Err(too_large(ops.len().saturating_sub(1)));
    }
    *doc = work;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const WIDE: Bounds = Bounds { operations: 100, bytes: 1 << 20 };

    #[test]
    fn doubling_copies_stop_at_the_size_bound_before_memory_grows() {
        // Each copy of the whole document into itself doubles it: 25 of
        // them (about 1 KB of patch) would make 32 million copies.
        let mut d = json!({"a": "x".repeat(1000)});
        let doubling: Vec<Value> =
            (0..25).map(|i| json!({"op": "copy", "from": "", "path": format!("/d{i}")})).collect();
        let bounds = Bounds { operations: 100, bytes: 64 * 1024 };
        for patch in [
            Value::Array(doubling),
            json!([{"op": "add", "path": "/a2", "value": "x".repeat(40_000)}, {"op": "copy", "from": "/a2", "path": "/a3"}]),
        ] {
            let before = d.clone();
            let e = apply(&mut d, &patch, bounds).unwrap_err();
            assert!(matches!(e, PatchError::TooCostly(..)), "{e}");
            assert_eq!(d, before, "nothing applied");
        }
        // At the bound and one byte above it ({"a":""} is 8 bytes, {"a":"","b":"…"} 15 plus the text).
        let bytes = 1024;
        let bounds = Bounds { operations: 10, bytes };
        let add = |len: usize| json!([{"op": "add", "path": "/b", "value": "y".repeat(len)}]);
        let mut at = json!({"a": ""});
        apply(&mut at, &add(bytes - 15), bounds).unwrap();
        assert_eq!(json_len(&at), bytes);
        let mut above = json!({"a": ""});
        assert!(matches!(apply(&mut above, &add(bytes - 14), bounds), Err(PatchError::TooCostly(..))));
    }

    #[test]
    fn operations_are_counted_at_and_above_the_bound() {
        let ops = |n: usize| Value::Array((0..n).map(|_| json!({"op": "test", "path": "/a", "value": 1})).collect());
        let bounds = Bounds { operations: 10, bytes: 1 << 20 };
        let mut d = json!({"a": 1});
        assert_eq!(apply(&mut d, &ops(10), bounds), Ok(()));
        assert!(matches!(apply(&mut d, &ops(11), bounds), Err(PatchError::TooCostly(10, _))));
    }

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
        apply(&mut d, &patch, WIDE).unwrap();
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
        assert!(matches!(check(&json!([])), Err(PatchError::Malformed(0, _))), "an empty patch changes nothing");
        let original = json!({"a": 1});
        let mut d = original.clone();
        let err = apply(
            &mut d,
            &json!([{"op": "replace", "path": "/a", "value": 2}, {"op": "test", "path": "/a", "value": 1}]),
            WIDE,
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
            let e = apply(&mut d, &bad, WIDE).unwrap_err();
            assert_eq!(matches!(e, PatchError::Malformed(..)), malformed, "{bad}: {e}");
        }
    }
}
