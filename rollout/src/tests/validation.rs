//! Strategies that are refused, and the field each refusal names.

use crate::validate;

/// `(strategy, field, part of the message)`.
const REFUSED: &[(&str, &str, &str)] = &[
    (
        r#"{"type":"canary"}"#,
        "strategy",
        "one of steps, weights or linear",
    ),
    (
        r#"{"type":"canary","weights":[10],"linear":{"step":10,"up_to":50}}"#,
        "strategy",
        "only one of",
    ),
    (
        r#"{"type":"canary","steps":[{"set_weight":10}],"weights":[20]}"#,
        "strategy",
        "only one of",
    ),
    (
        r#"{"type":"canary","weights":[1,2,101]}"#,
        "strategy.weights[2]",
        "not a percentage",
    ),
    (
        r#"{"type":"canary","weights":[10,10]}"#,
        "strategy.weights[1]",
        "does not increase",
    ),
    (
        r#"{"type":"canary","weights":[50,20]}"#,
        "strategy.weights[1]",
        "does not increase",
    ),
    (
        r#"{"type":"canary","weights":[10],"pause_secs":0}"#,
        "strategy.pause_secs",
        "at least 1",
    ),
    (
        r#"{"type":"canary","linear":{"step":0,"up_to":50}}"#,
        "strategy.linear.step",
        "1–100",
    ),
    (
        r#"{"type":"canary","linear":{"step":101,"up_to":100}}"#,
        "strategy.linear.step",
        "1–100",
    ),
    (
        r#"{"type":"canary","linear":{"step":10,"up_to":120}}"#,
        "strategy.linear.up_to",
        "not a percentage",
    ),
    (
        r#"{"type":"canary","linear":{"step":30,"up_to":20}}"#,
        "strategy.linear.up_to",
        "below the first step",
    ),
    (
        r#"{"type":"canary","steps":[{"set_weight":10},{"pause":{}},{"set_weight":200}]}"#,
        "strategy.steps[2].set_weight",
        "not a percentage",
    ),
    (
        r#"{"type":"canary","steps":[{"set_weight":10},{"pause":{"duration_secs":0}}]}"#,
        "strategy.steps[1].pause.duration_secs",
        "at least 1",
    ),
    (
        r#"{"type":"canary","steps":[{"set_weight":10},{"analysis":{}}]}"#,
        "strategy.steps[1].analysis",
        "needs strategy.analysis",
    ),
    (
        r#"{"type":"canary","steps":[{"analysis":{}}],"analysis":{}}"#,
        "strategy.steps[0].analysis",
        "needs traffic",
    ),
    (
        r#"{"type":"canary","steps":[{"set_weight":10},{"analysis":{"checks":0}}],"analysis":{}}"#,
        "strategy.steps[1].analysis.checks",
        "1–100",
    ),
    (
        r#"{"type":"canary","steps":[{"set_weight":10}],"pause_secs":30}"#,
        "strategy.pause_secs",
        "weights and linear only",
    ),
    (
        r#"{"type":"canary","weights":[10],"analysis":{"interval_secs":0}}"#,
        "strategy.analysis.interval_secs",
        "1–3600",
    ),
    (
        r#"{"type":"canary","weights":[10],"analysis":{"interval_secs":3601}}"#,
        "strategy.analysis.interval_secs",
        "1–3600",
    ),
    (
        r#"{"type":"canary","weights":[10],"analysis":{"success_rate_percent":100.5}}"#,
        "strategy.analysis.success_rate_percent",
        "percentage",
    ),
    (
        r#"{"type":"canary","weights":[10],"analysis":{"success_rate_percent":-1}}"#,
        "strategy.analysis.success_rate_percent",
        "percentage",
    ),
    (
        r#"{"type":"canary","weights":[10],"analysis":{"p99_max_ms":0}}"#,
        "strategy.analysis.p99_max_ms",
        "above 0",
    ),
    (
        r#"{"type":"canary","weights":[10],"analysis":{"p99_max_factor":-2}}"#,
        "strategy.analysis.p99_max_factor",
        "above 0",
    ),
    (
        r#"{"type":"canary","weights":[10],"analysis":{"failure_limit":0}}"#,
        "strategy.analysis.failure_limit",
        "at least 1",
    ),
    (
        r#"{"type":"gray","rules":[]}"#,
        "strategy.rules",
        "at least one rule",
    ),
    (
        r#"{"type":"gray","rules":[{}]}"#,
        "strategy.rules[0]",
        "exactly one of header, cookie, query, hash",
    ),
    (
        r#"{"type":"gray","rules":[{"cookie":{"name":"a","value":"1"},"query":{"name":"b","value":"2"}}]}"#,
        "strategy.rules[0]",
        "exactly one of",
    ),
    (
        r#"{"type":"gray","rules":[{"header":{"name":"x beta","exact":"1"}}]}"#,
        "strategy.rules[0].header.name",
        "cannot hold",
    ),
    (
        r#"{"type":"gray","rules":[{"header":{"name":"","exact":"1"}}]}"#,
        "strategy.rules[0].header.name",
        "1–256",
    ),
    (
        r#"{"type":"gray","rules":[{"header":{"name":"x-beta"}}]}"#,
        "strategy.rules[0].header",
        "exactly one of exact, prefix, regex",
    ),
    (
        r#"{"type":"gray","rules":[{"header":{"name":"x-beta","exact":"1","prefix":"1"}}]}"#,
        "strategy.rules[0].header",
        "exactly one of exact",
    ),
    (
        r#"{"type":"gray","rules":[{"cookie":{"name":"a;b","value":"1"}}]}"#,
        "strategy.rules[0].cookie.name",
        "cannot hold",
    ),
    (
        r#"{"type":"gray","rules":[{"query":{"name":"","value":"1"}}]}"#,
        "strategy.rules[0].query.name",
        "1–256",
    ),
    (
        r#"{"type":"gray","rules":[{"hash":{"header":"x-user","from":50,"to":50}}]}"#,
        "strategy.rules[0].hash",
        "from < to",
    ),
    (
        r#"{"type":"gray","rules":[{"hash":{"header":"x-user","from":0,"to":101}}]}"#,
        "strategy.rules[0].hash",
        "within 0–100",
    ),
    (
        r#"{"type":"gray","rules":[{"hash":{"from":0,"to":10}}]}"#,
        "strategy.rules[0].hash",
        "exactly one of header, cookie",
    ),
    (
        r#"{"type":"gray","rules":[{"hash":{"header":"a","cookie":"b","from":0,"to":10}}]}"#,
        "strategy.rules[0].hash",
        "exactly one of header, cookie",
    ),
    (
        r#"{"type":"gray","rules":[{"cookie":{"name":"beta","value":"1"}}],"weight":101}"#,
        "strategy.weight",
        "not a percentage",
    ),
    (
        r#"{"type":"gray","rules":[{"cookie":{"name":"beta","value":"1"}}],"sticky":{}}"#,
        "strategy.sticky",
        "exactly one of header, cookie",
    ),
    (
        r#"{"type":"gray","rules":[{"cookie":{"name":"beta","value":"1"}}],"sticky":{"cookie":"a b"}}"#,
        "strategy.sticky.cookie",
        "cannot hold",
    ),
    (
        r#"{"type":"gray","rules":[{"cookie":{"name":"beta","value":"1"}}],"pause_secs":0}"#,
        "strategy.pause_secs",
        "at least 1",
    ),
    (
        r#"{"type":"gray","rules":[{"cookie":{"name":"beta","value":"1"}}],"analysis":{"interval_secs":0}}"#,
        "strategy.analysis.interval_secs",
        "1–3600",
    ),
    (
        r#"{"type":"batch","batches":0}"#,
        "strategy.batches",
        "1–100",
    ),
    (
        r#"{"type":"batch","batches":101}"#,
        "strategy.batches",
        "1–100",
    ),
    (
        r#"{"type":"batch","batches":1,"beta":true}"#,
        "strategy.beta",
        "at least 2 batches",
    ),
    (
        r#"{"type":"batch","batches":3,"interval_secs":0}"#,
        "strategy.interval_secs",
        "at least 1",
    ),
    (
        r#"{"type":"batch","batches":3,"analysis":{"failure_limit":0}}"#,
        "strategy.analysis.failure_limit",
        "at least 1",
    ),
    (
        r#"{"type":"blue_green","preview_host":"Preview.Example.com"}"#,
        "strategy.preview_host",
        "lowercase host name",
    ),
    (
        r#"{"type":"blue_green","preview_host":"-a.example.com"}"#,
        "strategy.preview_host",
        "lowercase host name",
    ),
    (
        r#"{"type":"blue_green","preview_host":"a..example.com"}"#,
        "strategy.preview_host",
        "lowercase host name",
    ),
    (
        r#"{"type":"blue_green","analysis":{"p99_max_ms":-1}}"#,
        "strategy.analysis.p99_max_ms",
        "above 0",
    ),
];

#[test]
fn refused_strategies_name_their_field() {
    for (json, field, message) in REFUSED {
        let err = validate(&super::strategy(json)).expect_err(json);
        assert_eq!(err.field, *field, "{json}: {err}");
        assert!(err.message.contains(message), "{json}: {err}");
        assert_eq!(err.to_string(), format!("{}: {}", err.field, err.message));
    }
}

#[test]
fn accepted_strategies() {
    for json in [
        r#"{"type":"immediate"}"#,
        r#"{"type":"canary","weights":[1,2,10,80]}"#,
        r#"{"type":"canary","weights":[0,100],"pause_secs":1}"#,
        r#"{"type":"canary","linear":{"step":20,"up_to":60},"pause_secs":60,"analysis":{"interval_secs":3600,"success_rate_percent":0,"p99_max_ms":250,"p99_max_factor":1.5,"min_requests":0,"insufficient":"fail","failure_limit":1}}"#,
        r#"{"type":"canary","linear":{"step":100,"up_to":100}}"#,
        r#"{"type":"canary","steps":[{"set_weight":50},{"set_weight":20},{"pause":{}},{"set_weight":20},{"analysis":{"checks":100}}],"analysis":{}}"#,
        r#"{"type":"gray","rules":[{"header":{"name":"X-Beta","regex":"^(a|b)$"}},{"cookie":{"name":"beta","value":"yes"}},{"query":{"name":"beta","value":"1"}},{"hash":{"cookie":"uid","from":0,"to":100}}],"weight":0,"sticky":{"header":"x-user"}}"#,
        r#"{"type":"batch","batches":1}"#,
        r#"{"type":"batch","batches":100,"interval_secs":1,"beta":true,"min_available":0}"#,
        r#"{"type":"blue_green","preview_host":"next.cart.example-1.com","auto_promote_secs":0,"keep_old_secs":0}"#,
    ] {
        assert_eq!(validate(&super::strategy(json)), Ok(()), "{json}");
    }
}
