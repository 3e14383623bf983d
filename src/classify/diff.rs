//! Deciding whether a live object already holds what we would apply, without a write.
//!
//! The API server adds defaults (e.g. `imagePullPolicy`), drops empty values and rewrites quantities into
//! canonical form (`1024Mi` becomes `1Gi`, `0.0001` becomes `1m`). So "already applied" means: every field we
//! set is present in the live object with an equal value, where empty values match absent ones and quantities
//! compare by their canonical value (rounded up to milli precision, as the API server stores resource lists).
//! A converged instance therefore costs no write at all.

use serde::Serialize;
use serde_json::Value;

use crate::api::quantity::Quantity;

/// Whether every field set in `desired` has the same value in `live`.
pub fn is_applied<D: Serialize, L: Serialize>(desired: &D, live: &L) -> bool {
    match (serde_json::to_value(desired), serde_json::to_value(live)) {
        (Ok(desired), Ok(live)) => contains(&desired, Some(&live)),
        _ => false,
    }
}

fn contains(desired: &Value, live: Option<&Value>) -> bool {
    match (desired, live) {
        (d, None) | (d, Some(Value::Null)) => is_empty(d),
        (Value::Object(d), Some(Value::Object(l))) => {
            d.iter().all(|(key, value)| contains(value, l.get(key)))
        }
        (Value::Array(d), Some(Value::Array(l))) => {
            d.len() == l.len() && d.iter().zip(l).all(|(d, l)| contains(d, Some(l)))
        }
        (Value::String(d), Some(Value::String(l))) => d == l || same_quantity(d, l),
        (Value::String(d), Some(Value::Number(l))) => same_quantity(d, &l.to_string()),
        (Value::Number(d), Some(Value::String(l))) => same_quantity(&d.to_string(), l),
        (d, Some(l)) => d == l,
    }
}

fn same_quantity(a: &str, b: &str) -> bool {
    match (a.parse::<Quantity>(), b.parse::<Quantity>()) {
        (Ok(a), Ok(b)) => a.canonical() == b.canonical(),
        _ => false,
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_empty),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn defaults_added_by_the_server_do_not_count() {
        let desired = json!({"spec": {"containers": [{"name": "redis", "image": "redis:7.2"}]}});
        let live = json!({"spec": {"containers": [{"name": "redis", "image": "redis:7.2",
            "imagePullPolicy": "IfNotPresent"}], "dnsPolicy": "ClusterFirst"}});
        assert!(is_applied(&desired, &live));
    }

    #[test]
    fn a_changed_value_counts() {
        let desired = json!({"spec": {"replicas": 3, "image": "redis:7.2"}});
        assert!(!is_applied(
            &desired,
            &json!({"spec": {"replicas": 2, "image": "redis:7.2"}})
        ));
        assert!(!is_applied(&desired, &json!({"spec": {"replicas": 3}})));
    }

    #[test]
    fn list_length_counts() {
        let desired = json!({"args": ["a", "b"]});
        assert!(!is_applied(&desired, &json!({"args": ["a", "b", "c"]})));
        assert!(!is_applied(&desired, &json!({"args": ["a"]})));
    }

    #[test]
    fn empty_values_match_absent_ones() {
        let desired = json!({"resources": {}, "readOnly": false, "items": [], "name": "x"});
        assert!(is_applied(&desired, &json!({"name": "x"})));
    }

    #[test]
    fn quantities_compare_by_value() {
        let desired = json!({"requests": {"memory": "1024Mi", "cpu": "0.5", "storage": "1"}});
        let live = json!({"requests": {"memory": "1Gi", "cpu": "500m", "storage": 1}});
        assert!(is_applied(&desired, &live));
        assert!(!is_applied(
            &json!({"memory": "1Gi"}),
            &json!({"memory": "1G"})
        ));
    }

    /// The API server stores `cpu: 0.0001` as `1m`: that must not look like a change on every reconcile.
    #[test]
    fn quantities_finer_than_a_milli_match_their_stored_form() {
        let desired = json!({"limits": {"cpu": "0.0001", "memory": "1000001u"}});
        let live = json!({"limits": {"cpu": "1m", "memory": "1001m"}});
        assert!(is_applied(&desired, &live));
        assert!(!is_applied(
            &json!({"cpu": "0.0011"}),
            &json!({"cpu": "1m"})
        ));
    }
}
