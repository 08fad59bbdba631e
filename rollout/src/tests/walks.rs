//! Every strategy walked to success, with the routing after every tick.

use tideway_api_types::ReleaseState;

use super::World;

/// `(strategy, replicas, routing trail)`; step pauses are promoted as soon as they pause.
const WALKS: &[(&str, u32, &[&str])] = &[
    (
        r#"{"type":"immediate"}"#,
        3,
        &["0 progressing w100 t3 s0", "succeeded"],
    ),
    (
        r#"{"type":"canary","weights":[1,2,10,80],"pause_secs":60}"#,
        10,
        &[
            "0 progressing w0 t1 s10",
            "0 progressing w1 t1 s10",
            "1 progressing w1 t1 s10",
            "2 progressing w2 t1 s10",
            "3 progressing w2 t1 s10",
            "4 progressing w10 t1 s10",
            "5 progressing w10 t1 s10",
            "6 progressing w10 t8 s10",
            "6 progressing w80 t8 s10",
            "7 progressing w80 t8 s10",
            "8 progressing w80 t10 s10",
            "8 progressing w100 t10 s10",
            "succeeded",
        ],
    ),
    (
        r#"{"type":"canary","linear":{"step":20,"up_to":60},"analysis":{"interval_secs":5}}"#,
        5,
        &[
            "0 progressing w0 t1 s5",
            "0 progressing w20 t1 s5",
            "1 paused w20 t1 s5",
            "2 progressing w20 t1 s5",
            "3 progressing w20 t2 s5",
            "3 progressing w40 t2 s5",
            "4 paused w40 t2 s5",
            "5 progressing w40 t2 s5",
            "6 progressing w40 t3 s5",
            "6 progressing w60 t3 s5",
            "7 paused w60 t3 s5",
            "8 progressing w60 t3 s5",
            "9 progressing w60 t5 s5",
            "9 progressing w100 t5 s5",
            "succeeded",
        ],
    ),
    (
        r#"{"type":"canary","steps":[{"set_weight":50},{"pause":{"duration_secs":10}},{"set_weight":20},{"pause":{}}]}"#,
        4,
        &[
            "0 progressing w0 t2 s4",
            "0 progressing w50 t2 s4",
            "1 progressing w50 t2 s4",
            "2 progressing w20 t2 s4",
            "3 paused w20 t1 s4",
            "4 progressing w100 t4 s4",
            "succeeded",
        ],
    ),
    (
        r#"{"type":"gray","rules":[{"header":{"name":"x-beta","exact":"1"}},{"hash":{"cookie":"uid","from":0,"to":10}}],"weight":5,"sticky":{"cookie":"uid"},"pause_secs":30}"#,
        10,
        &[
            "0 progressing w0 t2 s10",
            "0 progressing w5 t2 s10 rules",
            "1 progressing w5 t2 s10 rules",
            "2 progressing w5 t10 s10 rules",
            "2 progressing w100 t10 s10",
            "succeeded",
        ],
    ),
    (
        r#"{"type":"batch","batches":3,"interval_secs":20}"#,
        6,
        &[
            "0 progressing w0 t2 s6",
            "0 progressing w33 t2 s6",
            "1 progressing w33 t2 s4",
            "2 progressing w33 t4 s4",
            "2 progressing w67 t4 s4",
            "3 progressing w67 t4 s2",
            "4 progressing w67 t6 s2",
            "4 progressing w100 t6 s2",
            "succeeded",
        ],
    ),
    (
        r#"{"type":"batch","batches":2,"beta":true,"interval_secs":20,"min_available":2}"#,
        4,
        &[
            "0 progressing w0 t2 s2",
            "0 progressing w50 t2 s2",
            "1 paused w50 t2 s2",
            "2 progressing w100 t4 s1",
            "succeeded",
        ],
    ),
    (
        r#"{"type":"blue_green","preview_host":"preview.cart.example.com","auto_promote_secs":30,"keep_old_secs":60,"analysis":{"interval_secs":10}}"#,
        3,
        &[
            "0 progressing w0 t3 s3 preview",
            "1 progressing w0 t3 s3 preview",
            "2 progressing w100 t3 s3",
            "3 progressing w100 t3 s3",
            "succeeded",
        ],
    ),
];

#[test]
fn every_strategy_walks_to_success() {
    for (json, replicas, trail) in WALKS {
        let mut w = World::new(json, *replicas);
        w.run(2000);
        assert_eq!(w.trail, *trail, "{json}");
        assert_eq!(w.state(), ReleaseState::Succeeded, "{json}");
        assert_eq!(w.serving, Some(2), "{json}: the target serves");
        let last = w.log.last().unwrap();
        assert_eq!(last.kind, "ReleaseSucceeded");
        assert_eq!(last.set_current_version, Some(2));
        assert!(
            w.log[..w.log.len() - 1]
                .iter()
                .all(|t| t.set_current_version.is_none())
                || json.contains("immediate"),
            "{json}: only success changes the serving version"
        );
    }
}

#[test]
fn timed_pauses_take_their_time() {
    let mut w = World::new(r#"{"type":"canary","weights":[10,50],"pause_secs":60}"#, 2);
    w.run(500);
    let took = (w.now - super::t0()).num_seconds();
    assert!(
        (120..130).contains(&took),
        "two 60s pauses and a few seconds of steps: {took}s"
    );
}

#[test]
fn weights_wait_for_ready_instances_then_for_the_gateway() {
    let mut w = World::new(r#"{"type":"canary","weights":[50],"pause_secs":10}"#, 4);
    w.ready_cap = Some(1);
    for _ in 0..5 {
        w.tick(1);
    }
    assert_eq!(
        w.describe(),
        "0 progressing w0 t2 s4",
        "no traffic to instances that are not ready"
    );
    w.ready_cap = None;
    w.gateway_stuck = true;
    for _ in 0..5 {
        w.tick(1);
    }
    assert_eq!(
        w.describe(),
        "0 progressing w50 t2 s4",
        "the step waits for the gateway"
    );
    w.gateway_stuck = false;
    w.tick(1);
    assert_eq!(w.describe(), "1 progressing w50 t2 s4");

    // Promotion: the old version stops only after the gateway moved all traffic.
    w.run_until(100, |w| {
        w.step_index() == 2 && w.release.progress.weight == 100
    });
    w.gateway_stuck = true;
    for _ in 0..5 {
        w.tick(1);
    }
    assert_eq!(w.state(), ReleaseState::Progressing);
    assert_eq!(w.serving, Some(1));
    w.gateway_stuck = false;
    w.tick(1);
    assert_eq!(w.state(), ReleaseState::Succeeded);
}

#[test]
fn batches_never_drop_below_min_available() {
    for (json, replicas) in [
        (r#"{"type":"batch","batches":3,"interval_secs":5}"#, 6),
        (
            r#"{"type":"batch","batches":4,"interval_secs":5,"min_available":3}"#,
            5,
        ),
        (
            r#"{"type":"batch","batches":2,"interval_secs":5,"min_available":0}"#,
            2,
        ),
    ] {
        let floor: u32 = serde_json::from_str::<serde_json::Value>(json).unwrap()["min_available"]
            .as_u64()
            .map_or(replicas, |m| m as u32);
        let mut w = World::new(json, replicas);
        w.ready_cap = Some(0);
        // Target instances come up one per tick: count what is ready at every tick.
        let mut up = 0;
        while w.state().is_active() {
            up += 1;
            w.ready_cap = Some(up / 2);
            w.tick(1);
            if w.state().is_active() {
                assert!(
                    w.target_ready + w.stable_ready >= floor,
                    "{json}: {} ready at {}",
                    w.target_ready + w.stable_ready,
                    w.describe()
                );
            }
            assert!(up < 500, "{json}: stuck at {}", w.describe());
        }
        assert_eq!(w.state(), ReleaseState::Succeeded);
    }
}

#[test]
fn a_rescaled_app_rescales_the_release() {
    let mut w = World::new(r#"{"type":"canary","weights":[50],"pause_secs":60}"#, 4);
    w.run_until(20, |w| w.step_index() == 1);
    assert_eq!(w.describe(), "1 progressing w50 t2 s4");
    w.replicas = 8;
    w.tick(1);
    assert_eq!(w.log.last().unwrap().kind, "ReleaseReplicasSet");
    assert_eq!(w.describe(), "1 progressing w50 t4 s8");
    w.tick(1);
    assert_eq!(
        w.log.last().unwrap().kind,
        "ReleaseReplicasSet",
        "no new decision"
    );
}

#[test]
fn a_first_release_switches_at_once() {
    for json in [
        r#"{"type":"canary","weights":[10],"analysis":{}}"#,
        r#"{"type":"blue_green"}"#,
        r#"{"type":"batch","batches":3}"#,
        r#"{"type":"immediate"}"#,
    ] {
        let mut w = World::with_stable(super::strategy(json), 3, None);
        w.tick(1);
        let start = &w.log[0];
        assert_eq!(start.kind, "ReleaseStarted");
        assert_eq!(
            start.set_current_version,
            Some(1),
            "{json}: serves the target at once"
        );
        assert_eq!(w.state(), ReleaseState::Progressing);
        w.run(10);
        assert_eq!(w.state(), ReleaseState::Succeeded, "{json}");
        assert_eq!(w.log.len(), 2, "{json}: {:?}", w.kinds());
    }
}

#[test]
fn immediate_keeps_its_behaviour() {
    let mut w = World::new(r#"{"type":"immediate"}"#, 2);
    w.ready_cap = Some(1);
    w.tick(1);
    let start = &w.log[0];
    assert_eq!(
        (start.to, start.set_current_version),
        (ReleaseState::Progressing, Some(2))
    );
    w.tick(1);
    w.tick(1);
    assert_eq!(
        w.state(),
        ReleaseState::Progressing,
        "1 of 2 instances ready"
    );
    w.ready_cap = None;
    w.tick(1);
    assert_eq!(w.state(), ReleaseState::Succeeded);
    assert!(w
        .log
        .last()
        .unwrap()
        .reason
        .contains("all 2 instances ready"));
}

#[test]
fn a_building_target_waits() {
    let mut w = World::new(r#"{"type":"canary","weights":[10]}"#, 2);
    w.target = crate::TargetStatus::Building;
    for _ in 0..3 {
        w.tick(1);
    }
    assert!(w.log.is_empty());
    assert_eq!(w.state(), ReleaseState::Pending);
    assert_eq!(crate::routing(&w.release, &w.ctx()), None);
    w.target = crate::TargetStatus::Runnable;
    w.tick(1);
    assert_eq!(w.kinds(), ["ReleaseStarted"]);
    assert_eq!(w.release.progress.stable_version, Some(1));
}

#[test]
fn finished_releases_never_move() {
    for state in [
        ReleaseState::Succeeded,
        ReleaseState::Failed,
        ReleaseState::Aborted,
        ReleaseState::Superseded,
    ] {
        let mut w = World::new(r#"{"type":"canary","weights":[10]}"#, 2);
        w.release.state = state;
        w.tick(1);
        w.target = crate::TargetStatus::Failed("crash".into());
        w.tick(1);
        assert!(w.log.is_empty(), "{state:?}");
        assert_eq!(crate::routing(&w.release, &w.ctx()), None);
    }
}

#[test]
fn events_say_what_happened_and_why() {
    let mut w = World::new(r#"{"type":"canary","weights":[10,80],"pause_secs":60}"#, 10);
    w.run(500);
    let events: Vec<String> = w
        .log
        .iter()
        .map(|t| format!("{}: {}", t.kind, t.reason))
        .collect();
    assert_eq!(
        events,
        [
            "ReleaseStarted: v2 can run; set weight 10% (step 1 of 5)",
            "ReleaseWeightSet: set weight 10% (step 1 of 5): v2 has 1/1 instances ready; sending it 10% of traffic",
            "ReleaseStepStarted: the gateway sends 10% to v2; pause 60s (step 2 of 5)",
            "ReleaseStepStarted: pause over; set weight 80% (step 3 of 5)",
            "ReleaseWeightSet: set weight 80% (step 3 of 5): v2 has 8/8 instances ready; sending it 80% of traffic",
            "ReleaseStepStarted: the gateway sends 80% to v2; pause 60s (step 4 of 5)",
            "ReleaseStepStarted: pause over; promote: all traffic to v2, then stop v1 (step 5 of 5)",
            "ReleaseWeightSet: promote: all traffic to v2, then stop v1 (step 5 of 5): v2 has 10/10 instances ready; sending it 100% of traffic",
            "ReleaseSucceeded: the gateway sends 100% to v2; v2 is the serving version; stopping v1",
        ]
    );
    let weight_set = &w.log[1].details;
    assert_eq!(weight_set["step"], 0);
    assert_eq!(weight_set["weight"], 10);
    assert_eq!(weight_set["target_replicas"], 1);
    assert_eq!(weight_set["observed"]["target_ready"], 1);
}

#[test]
fn routing_carries_rules_sticky_and_preview_only_when_they_apply() {
    let gray = r#"{"type":"gray","rules":[{"cookie":{"name":"beta","value":"yes"}}],"weight":10,"sticky":{"header":"x-user"}}"#;
    let mut w = World::new(gray, 4);
    w.ready_cap = Some(0);
    w.tick(1);
    let r = crate::routing(&w.release, &w.ctx()).unwrap();
    assert_eq!((r.stable, r.target, r.weight), (Some(1), 2, 0));
    assert!(
        r.rules.is_empty() && r.sticky.is_none(),
        "nothing to v2 before it is ready"
    );
    w.ready_cap = None;
    w.run_until(10, |w| w.state() == ReleaseState::Paused);
    let r = crate::routing(&w.release, &w.ctx()).unwrap();
    assert_eq!(r.weight, 10);
    assert_eq!(r.rules.len(), 1);
    assert_eq!(r.rules[0].version, 2);
    assert_eq!(r.rules[0].cookie.as_ref().unwrap().name, "beta");
    assert_eq!(r.sticky.as_ref().unwrap().header.as_deref(), Some("x-user"));
    assert!(!r.preview && r.preview_host.is_none());

    let canary = r#"{"type":"canary","weights":[30]}"#;
    let mut w = World::new(canary, 4);
    w.run_until(10, |w| w.state() == ReleaseState::Paused);
    let r = crate::routing(&w.release, &w.ctx()).unwrap();
    assert!(r.rules.is_empty() && r.sticky.is_none() && !r.preview);
    assert_eq!((r.weight, r.target_replicas, r.stable_replicas), (30, 2, 4));
}
