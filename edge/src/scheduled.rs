//! What scheduled functions share: the period an on-demand invocation may
//! name instead of the schedule's (`medrec audit anomalies`, a compliance
//! report for another month).

use serde_json::Value;
use time::OffsetDateTime;

/// `{"since": instant, "until": instant}` of an invocation: both or
/// neither (None: the schedule's own period), each a FHIR instant or date.
pub fn requested_window(event: &Value) -> Result<Option<(OffsetDateTime, OffsetDateTime)>, String> {
    let instant = |k: &str| -> Result<Option<OffsetDateTime>, String> {
        match event.get(k) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .and_then(crate::fhir::primitives::datetime_bounds)
                .map(|(t, _)| Some(t))
                .ok_or(format!("{k} is not an instant")),
        }
    };
    match (instant("since")?, instant("until")?) {
        (Some(s), Some(u)) if u > s => Ok(Some((s, u))),
        (Some(_), Some(_)) => Err("until must be after since".into()),
        (None, None) => Ok(None),
        _ => Err("give since and until together".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::requested_window;
    use serde_json::json;

    #[test]
    fn a_window_is_both_instants_in_order_or_none() {
        assert_eq!(requested_window(&json!({})).unwrap(), None);
        let w = requested_window(&json!({"since": "2026-12-01T00:00:00Z", "until": "2026-12-02"})).unwrap();
        assert_eq!(w.map(|(s, u)| (u - s).whole_hours()), Some(24));
        assert!(requested_window(&json!({"since": "2026-12-01T00:00:00Z"})).is_err());
        assert!(requested_window(&json!({"since": "yesterday", "until": "2026-12-02T00:00:00Z"})).is_err());
        assert!(requested_window(&json!({"since": "2026-12-02", "until": "2026-12-01"})).is_err());
    }
}
