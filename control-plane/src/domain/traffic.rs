//! Traffic policies: which versions a policy names, and whether a policy is one the
//! gateway can follow for the versions an app has.

use std::collections::BTreeSet;

use tideway_api_types::TrafficPolicy;

use super::{ensure, Invalid};

const MAX_RULES: usize = 64;

/// Versions the policy sends traffic to (positive weight) or names in a rule; they must
/// keep running while the policy stands.
pub fn referenced_versions(policy: &TrafficPolicy) -> BTreeSet<u32> {
    policy
        .weights
        .iter()
        .filter(|w| w.weight > 0)
        .map(|w| w.version)
        .chain(policy.rules.iter().map(|r| r.version))
        .collect()
}

/// Checks the policy against the app's versions (`existing`).
pub fn validate_traffic(policy: &TrafficPolicy, existing: &BTreeSet<u32>) -> Result<(), Invalid> {
    let mut seen = BTreeSet::new();
    let mut total = 0u32;
    for (i, w) in policy.weights.iter().enumerate() {
        let field = format!("weights[{i}]");
        ensure(w.weight <= 100, &format!("{field}.weight"), "must be 0–100")?;
        ensure(
            seen.insert(w.version),
            &format!("{field}.version"),
            "each version may appear once",
        )?;
        ensure(
            existing.contains(&w.version),
            &format!("{field}.version"),
            format!("the app has no version {}", w.version),
        )?;
        total += w.weight;
    }
    ensure(
        policy.weights.is_empty() || total == 100,
        "weights",
        format!("weights must sum to 100, not {total}"),
    )?;
    ensure(
        policy.rules.len() <= MAX_RULES,
        "rules",
        format!("at most {MAX_RULES} rules"),
    )?;
    for (i, rule) in policy.rules.iter().enumerate() {
        let field = format!("rules[{i}]");
        let matchers = [
            rule.header.is_some(),
            rule.cookie.is_some(),
            rule.query.is_some(),
            rule.hash.is_some(),
        ];
        ensure(
            matchers.iter().filter(|m| **m).count() == 1,
            &field,
            "give exactly one of header, cookie, query, hash",
        )?;
        if let Some(h) = &rule.hash {
            ensure(
                h.header.is_some() != h.cookie.is_some(),
                &format!("{field}.hash"),
                "give exactly one of header, cookie",
            )?;
            ensure(
                h.from < h.to && h.to <= 100,
                &format!("{field}.hash.from"),
                "needs 0 <= from < to <= 100",
            )?;
        }
        ensure(
            existing.contains(&rule.version),
            &format!("{field}.version"),
            format!("the app has no version {}", rule.version),
        )?;
        if let Some(h) = &rule.header {
            ensure(
                !h.name.is_empty()
                    && h.name.len() <= 256
                    && h.name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)),
                &format!("{field}.header.name"),
                "must be a header name",
            )?;
            let tests = [h.exact.is_some(), h.prefix.is_some(), h.regex.is_some()];
            ensure(
                tests.iter().filter(|t| **t).count() == 1,
                &format!("{field}.header"),
                "give exactly one of exact, prefix, regex",
            )?;
            if let Some(re) = &h.regex {
                ensure(
                    re.len() <= 1024 && regex::Regex::new(re).is_ok(),
                    &format!("{field}.header.regex"),
                    "must be a valid regular expression of at most 1024 bytes",
                )?;
            }
        }
        for (kind, m) in [("cookie", &rule.cookie), ("query", &rule.query)] {
            if let Some(m) = m {
                ensure(
                    !m.name.is_empty() && m.name.len() <= 256,
                    &format!("{field}.{kind}.name"),
                    "must be 1–256 bytes",
                )?;
            }
        }
    }
    if let Some(sticky) = &policy.sticky {
        ensure(
            sticky.header.is_some() != sticky.cookie.is_some(),
            "sticky",
            "give exactly one of header, cookie",
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(v: serde_json::Value) -> TrafficPolicy {
        serde_json::from_value(v).unwrap()
    }

    fn field(p: &TrafficPolicy) -> Option<String> {
        validate_traffic(p, &[1, 2].into()).err().map(|e| e.field)
    }

    #[test]
    fn accepts_splits_rules_and_sticky() {
        let p = policy(serde_json::json!({
            "weights": [{"version": 1, "weight": 90}, {"version": 2, "weight": 10}],
            "rules": [{"header": {"name": "x-canary", "exact": "true"}, "version": 2},
                      {"cookie": {"name": "canary", "value": "always"}, "version": 2}],
            "sticky": {"cookie": "session"}
        }));
        assert_eq!(field(&p), None);
        assert_eq!(referenced_versions(&p), [1, 2].into());
    }

    #[test]
    fn names_the_broken_field() {
        let cases = [
            (
                serde_json::json!({"weights": [{"version": 1, "weight": 90}]}),
                "weights",
            ),
            (
                serde_json::json!({"weights": [{"version": 3, "weight": 100}]}),
                "weights[0].version",
            ),
            (
                serde_json::json!({"weights": [{"version": 1, "weight": 50}, {"version": 1, "weight": 50}]}),
                "weights[1].version",
            ),
            (serde_json::json!({"rules": [{"version": 2}]}), "rules[0]"),
            (
                serde_json::json!({"rules": [{"header": {"name": "x", "regex": "("}, "version": 2}]}),
                "rules[0].header.regex",
            ),
            (
                serde_json::json!({"rules": [{"header": {"name": "x", "exact": "a", "prefix": "b"}, "version": 2}]}),
                "rules[0].header",
            ),
            (serde_json::json!({"sticky": {}}), "sticky"),
        ];
        for (v, expected) in cases {
            assert_eq!(field(&policy(v.clone())).as_deref(), Some(expected), "{v}");
        }
    }

    #[test]
    fn zero_weight_versions_need_not_run() {
        let p = policy(serde_json::json!({
            "weights": [{"version": 1, "weight": 100}, {"version": 2, "weight": 0}]
        }));
        assert_eq!(referenced_versions(&p), [1].into());
    }
}
