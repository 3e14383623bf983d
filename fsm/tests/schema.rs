//! The JSON schemas the operator's CRD embeds for status.

use redis_fsm::{Condition, History, Phase, HISTORY_LIMIT};
use serde_json::{json, Value};

fn schema<T: schemars::JsonSchema>() -> Value {
    serde_json::to_value(schemars::schema_for!(T)).unwrap()
}

#[test]
fn history_schema_is_a_bounded_list_of_camel_case_transitions() {
    let history = schema::<History>();
    assert_eq!(history["type"], "array");
    assert_eq!(history["maxItems"], json!(HISTORY_LIMIT));
    let transition = &history["$defs"]["Transition"]["properties"];
    for field in ["from", "to", "reason", "message", "time", "generation"] {
        assert!(
            transition.get(field).is_some(),
            "{field} missing: {transition}"
        );
    }
}

#[test]
fn phase_schema_lists_the_seven_names() {
    let phase = schema::<Phase>();
    let names: Vec<&str> = phase["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let expected: Vec<&str> = Phase::ALL.iter().map(|p| p.as_str()).collect();
    assert_eq!(names, expected);
}

#[test]
fn condition_serialises_with_kubernetes_field_names() {
    let condition = Condition {
        type_: "Ready".into(),
        status: "True".into(),
        reason: "AllReplicasReady".into(),
        message: "All 3/3 replicas are ready".into(),
        last_transition_time: "2024-05-01T00:00:00Z".into(),
        observed_generation: None,
    };
    assert_eq!(
        serde_json::to_value(&condition).unwrap(),
        json!({
            "type": "Ready",
            "status": "True",
            "reason": "AllReplicasReady",
            "message": "All 3/3 replicas are ready",
            "lastTransitionTime": "2024-05-01T00:00:00Z",
        })
    );
    let properties = &schema::<Condition>()["properties"];
    assert!(properties.get("type").is_some() && properties.get("lastTransitionTime").is_some());
}
