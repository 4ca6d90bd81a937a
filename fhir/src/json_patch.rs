//! JSON Patch (RFC 6902) with JSON Pointer (RFC 6901), for FHIR's PATCH
//! interaction: the `json-patch` crate applies each operation; medrec adds
//! the bounds (operations, size while patching), refuses malformed patches
//! before any resource is read, and compares `test` values as FHIR does.
//! The patched resource is validated like any update; a patch may not
//! change what the server owns (`resourceType`, `id`, `meta`).

use json_patch::{PatchErrorKind, PatchOperation};
use serde::Deserialize;
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

/// Whether `pointer` is a JSON Pointer (RFC 6901).
fn is_pointer(pointer: Option<&str>) -> bool {
    pointer.is_some_and(|p| json_patch::jsonptr::Pointer::parse(p).is_ok())
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
        let pointer = |k: &str| is_pointer(op[k].as_str());
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
        let malformed = |m: &str| PatchError::Malformed(n, m.to_owned());
        let failed = |m: &str| PatchError::Failed(n, m.to_owned());
        let name = op["op"].as_str().ok_or_else(|| malformed("no op"))?;
        if !["add", "remove", "replace", "move", "copy", "test"].contains(&name) {
            return Err(malformed(&format!("unknown op '{}'", name.chars().take(16).collect::<String>())));
        }
        let op = PatchOperation::deserialize(op)
            .map_err(|_| malformed("path or from is not a JSON Pointer, or a value is missing"))?;
        let at = |pointer: &json_patch::jsonptr::Pointer| work.pointer(pointer.as_str()).map(json_len);
        let grows = match &op {
            PatchOperation::Add(o) => json_len(&o.value),
            PatchOperation::Replace(o) => json_len(&o.value),
            PatchOperation::Copy(o) => at(&o.from).unwrap_or(0),
            _ => 0,
        };
        if size.saturating_add(grows) > bounds.bytes {
            return Err(too_large(n));
        }
        let shrinks = match &op {
            PatchOperation::Remove(o) => at(&o.path),
            PatchOperation::Replace(o) => at(&o.path),
            _ => None,
        };
        match &op {
            // A FHIR decimal is compared by value (1.0 = 1.00); the crate's
            // `test` compares the text medrec keeps of every number.
            PatchOperation::Test(t) => {
                if !work.pointer(t.path.as_str()).is_some_and(|v| super::decimal::same_value(v, &t.value)) {
                    return Err(failed("test failed"));
                }
            }
            _ => json_patch::patch(&mut work, std::slice::from_ref(&op)).map_err(|e| match (e.kind, &op) {
                (PatchErrorKind::CannotMoveInsideItself, _) => malformed("cannot move a value into itself"),
                (PatchErrorKind::InvalidFromPointer, _) => failed("nothing at from"),
                (_, PatchOperation::Remove(_)) => failed("nothing to remove at path"),
                (_, PatchOperation::Replace(_)) => failed("nothing to replace at path"),
                _ => failed("the target location does not exist"),
            })?,
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

    #[test]
    fn test_compares_decimals_by_value_and_the_rest_by_json_equality() {
        let mut d: Value = serde_json::from_str(r#"{"v": 37.50, "s": "37.5", "a": [1, 2]}"#).unwrap();
        let test = |path: &str, value: &str| {
            serde_json::from_str(&format!(r#"[{{"op": "test", "path": "{path}", "value": {value}}}]"#)).unwrap()
        };
        for (path, value) in [("/v", "37.5"), ("/v", "37.500"), ("/s", "\"37.5\""), ("/a", "[1, 2.0]")] {
            assert_eq!(apply(&mut d, &test(path, value), WIDE), Ok(()), "{path} {value}");
        }
        for (path, value) in [("/v", "37.51"), ("/v", "\"37.5\""), ("/s", "37.5"), ("/a", "[2, 1]"), ("/zz", "1")] {
            assert!(matches!(apply(&mut d, &test(path, value), WIDE), Err(PatchError::Failed(0, _))), "{path} {value}");
        }
    }
}
