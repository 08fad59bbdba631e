//! The dry run: what each strategy expands into.

use crate::{plan, Context};

/// One line per step: `index action | weight target/stable | waits_for`, with `rules` and
/// `preview` when on.
fn lines(json: &str, replicas: u32, stable: Option<u32>) -> Vec<String> {
    let p = plan(
        &super::strategy(json),
        2,
        &Context {
            replicas,
            stable_version: stable,
        },
    );
    assert_eq!(p.target_version, 2);
    assert_eq!(p.stable_version, stable);
    p.steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            assert_eq!(s.index as usize, i);
            let mut line = format!(
                "{} {} | w{} t{} s{} | {}",
                s.index, s.action, s.weight, s.target_replicas, s.stable_replicas, s.waits_for
            );
            if !s.rules.is_empty() {
                line.push_str(&format!(" | {} rules", s.rules.len()));
            }
            if s.preview {
                line.push_str(" | preview");
            }
            line
        })
        .collect()
}

fn check(json: &str, replicas: u32, expect: &[&str]) {
    assert_eq!(lines(json, replicas, Some(1)), expect, "{json}");
}

#[test]
fn canary_weights_shorthand() {
    check(
        r#"{"type":"canary","weights":[1,2,10,80],"pause_secs":60,"analysis":{}}"#,
        10,
        &[
            "0 set weight 1% | w1 t1 s10 | ready",
            "1 pause 60s | w1 t1 s10 | timer 60s",
            "2 analysis (1 check) | w1 t1 s10 | analysis",
            "3 set weight 2% | w2 t1 s10 | ready",
            "4 pause 60s | w2 t1 s10 | timer 60s",
            "5 analysis (1 check) | w2 t1 s10 | analysis",
            "6 set weight 10% | w10 t1 s10 | ready",
            "7 pause 60s | w10 t1 s10 | timer 60s",
            "8 analysis (1 check) | w10 t1 s10 | analysis",
            "9 set weight 80% | w80 t8 s10 | ready",
            "10 pause 60s | w80 t8 s10 | timer 60s",
            "11 analysis (1 check) | w80 t8 s10 | analysis",
            "12 promote: all traffic to v2, then stop v1 | w100 t10 s0 | ready",
        ],
    );
}

#[test]
fn canary_linear_without_pause_waits_for_promote() {
    check(
        r#"{"type":"canary","linear":{"step":20,"up_to":60}}"#,
        3,
        &[
            "0 set weight 20% | w20 t1 s3 | ready",
            "1 pause until promoted | w20 t1 s3 | promote",
            "2 set weight 40% | w40 t2 s3 | ready",
            "3 pause until promoted | w40 t2 s3 | promote",
            "4 set weight 60% | w60 t2 s3 | ready",
            "5 pause until promoted | w60 t2 s3 | promote",
            "6 promote: all traffic to v2, then stop v1 | w100 t3 s0 | ready",
        ],
    );
    // Multiples of the step up to `up_to`, never past it.
    let l = lines(
        r#"{"type":"canary","linear":{"step":30,"up_to":100}}"#,
        1,
        Some(1),
    );
    assert_eq!(l.iter().filter(|s| s.contains("set weight")).count(), 3);
}

#[test]
fn canary_steps_as_written() {
    check(
        r#"{"type":"canary","steps":[{"set_weight":5},{"pause":{"duration_secs":30}},{"analysis":{"checks":3}},{"set_weight":50},{"pause":{}}],"analysis":{}}"#,
        4,
        &[
            "0 set weight 5% | w5 t1 s4 | ready",
            "1 pause 30s | w5 t1 s4 | timer 30s",
            "2 analysis (3 checks) | w5 t1 s4 | analysis",
            "3 set weight 50% | w50 t2 s4 | ready",
            "4 pause until promoted | w50 t2 s4 | promote",
            "5 promote: all traffic to v2, then stop v1 | w100 t4 s0 | ready",
        ],
    );
}

#[test]
fn gray_rules_then_promotion() {
    check(
        r#"{"type":"gray","rules":[{"header":{"name":"x-beta","exact":"1"}},{"hash":{"header":"x-user","from":0,"to":20}}],"weight":10}"#,
        10,
        &[
            "0 gray: 2 rules and 10% of the rest to v2 | w10 t3 s10 | ready | 2 rules",
            "1 pause until promoted | w10 t3 s10 | promote | 2 rules",
            "2 promote: all traffic to v2, then stop v1 | w100 t10 s0 | ready",
        ],
    );
    let p = plan(
        &super::strategy(
            r#"{"type":"gray","rules":[{"cookie":{"name":"beta","value":"yes"}}],"pause_secs":600}"#,
        ),
        2,
        &Context {
            replicas: 2,
            stable_version: Some(1),
        },
    );
    assert_eq!(p.steps[0].action, "gray: 1 rule to v2");
    assert_eq!(
        p.steps[0].rules[0].version, 2,
        "rules send matching requests to the target"
    );
    assert_eq!(p.steps[1].waits_for, "timer 600s");
}

#[test]
fn batch_with_beta() {
    check(
        r#"{"type":"batch","batches":3,"beta":true,"interval_secs":120}"#,
        10,
        &[
            "0 batch 1/3 | w40 t4 s6 | ready",
            "1 pause until promoted | w40 t4 s6 | promote",
            "2 batch 2/3 | w70 t7 s3 | ready",
            "3 pause 120s | w70 t7 s3 | timer 120s",
            "4 batch 3/3 | w100 t10 s0 | ready",
        ],
    );
    check(
        r#"{"type":"batch","batches":2}"#,
        3,
        &[
            "0 batch 1/2 | w67 t2 s1 | ready",
            "1 pause until promoted | w67 t2 s1 | promote",
            "2 batch 2/2 | w100 t3 s0 | ready",
        ],
    );
}

#[test]
fn blue_green() {
    check(
        r#"{"type":"blue_green","preview_host":"next.cart.example.com","auto_promote_secs":300}"#,
        4,
        &[
            "0 start v2 at full size behind the preview route | w0 t4 s4 | ready | preview",
            "1 pause 300s | w0 t4 s4 | timer 300s | preview",
            "2 switch all traffic to v2 | w100 t4 s4 | ready",
            "3 keep v1 for 600s, then stop it | w100 t4 s0 | timer 600s",
        ],
    );
    check(
        r#"{"type":"blue_green","keep_old_secs":30}"#,
        1,
        &[
            "0 start v2 at full size behind the preview route | w0 t1 s1 | ready | preview",
            "1 pause until promoted | w0 t1 s1 | promote | preview",
            "2 switch all traffic to v2 | w100 t1 s1 | ready",
            "3 keep v1 for 30s, then stop it | w100 t1 s0 | timer 30s",
        ],
    );
}

#[test]
fn immediate_and_first_releases_are_one_switch() {
    assert_eq!(
        lines(r#"{"type":"immediate"}"#, 3, Some(1)),
        ["0 switch all traffic and instances to v2 | w100 t3 s0 | ready"]
    );
    assert_eq!(
        lines(r#"{"type":"canary","weights":[10,50]}"#, 3, None),
        ["0 start v2 (first release: all traffic at once) | w100 t3 s0 | ready"]
    );
}

#[test]
fn step_count_does_not_depend_on_replicas() {
    for json in [
        r#"{"type":"canary","weights":[1,2,10,80]}"#,
        r#"{"type":"batch","batches":5,"beta":true}"#,
        r#"{"type":"blue_green"}"#,
        r#"{"type":"gray","rules":[{"query":{"name":"beta","value":"1"}}]}"#,
    ] {
        let counts: Vec<usize> = [1, 2, 3, 7, 100]
            .iter()
            .map(|r| lines(json, *r, Some(1)).len())
            .collect();
        assert!(
            counts.windows(2).all(|w| w[0] == w[1]),
            "{json}: {counts:?}"
        );
    }
}
