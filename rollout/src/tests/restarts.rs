//! A control plane restarted at any moment continues exactly where the store says: the
//! release read back from its JSON walks on to the same transitions at the same times.
//! (Every single decision is also compared with the stored release's in `World::settle`.)

use tideway_api_types::ReleaseState;

use super::World;
use crate::Control;

const STRATEGIES: &[&str] = &[
    r#"{"type":"immediate"}"#,
    r#"{"type":"canary","weights":[1,2,10,80],"pause_secs":5,"analysis":{"interval_secs":2}}"#,
    r#"{"type":"canary","steps":[{"set_weight":30},{"pause":{}},{"analysis":{"checks":2}},{"set_weight":10},{"pause":{"duration_secs":4}}],"analysis":{"interval_secs":3}}"#,
    r#"{"type":"gray","rules":[{"header":{"name":"x-beta","exact":"1"}}],"weight":20,"sticky":{"header":"x-user"},"pause_secs":6,"analysis":{"interval_secs":2}}"#,
    r#"{"type":"batch","batches":3,"interval_secs":4,"beta":true,"min_available":2}"#,
    r#"{"type":"blue_green","auto_promote_secs":3,"keep_old_secs":5,"analysis":{"interval_secs":2}}"#,
];

/// One second of the world, promoting step pauses as a user would.
fn drive(w: &mut World) {
    if w.state() == ReleaseState::Paused && !w.release.progress.paused_by_user {
        w.control(Control::Promote { full: false }).unwrap();
    }
    w.tick(1);
}

#[test]
fn a_restart_at_any_tick_continues_the_same_walk() {
    for json in STRATEGIES {
        let mut reference = World::new(json, 4);
        reference.ready_cap = Some(1);
        let mut ticks = 0;
        while reference.state().is_active() {
            // Instances come up slowly, so every step is seen waiting for them.
            reference.ready_cap = Some(ticks / 2);
            drive(&mut reference);
            ticks += 1;
            assert!(ticks < 500, "{json}");
        }
        assert_eq!(reference.state(), ReleaseState::Succeeded, "{json}");
        let mut steps_seen = std::collections::BTreeSet::new();
        for restart_at in 0..ticks {
            let mut w = World::new(json, 4);
            for t in 0..restart_at {
                w.ready_cap = Some(t / 2);
                drive(&mut w);
            }
            steps_seen.insert(w.step_index());
            let mut restarted = w.clone();
            restarted.release = super::stored(&w.release);
            restarted.log.clear();
            for t in restart_at..ticks {
                restarted.ready_cap = Some(t / 2);
                drive(&mut restarted);
            }
            assert_eq!(
                restarted.log,
                reference.log[w.log.len()..],
                "{json}: restarted after tick {restart_at}"
            );
            assert_eq!(restarted.now, reference.now);
        }
        let plan_len = crate::plan(
            &super::strategy(json),
            2,
            &crate::Context {
                replicas: 4,
                stable_version: Some(1),
            },
        )
        .steps
        .len();
        assert_eq!(
            steps_seen.len(),
            plan_len,
            "{json}: restarted at every step"
        );
    }
}

#[test]
fn a_restart_mid_pause_keeps_the_remaining_time() {
    let mut w = World::new(r#"{"type":"canary","weights":[50],"pause_secs":300}"#, 2);
    w.run_until(10, |w| w.step_index() == 1);
    let until = w.release.progress.pause_until.unwrap();
    w.tick(100);
    // Down for two minutes; the stored pause ends when it always did.
    w.now += chrono::TimeDelta::seconds(120);
    w.release = super::stored(&w.release);
    w.tick(1);
    assert_eq!(w.release.progress.pause_until, Some(until));
    assert_eq!(w.step_index(), 1);
    w.now = until - chrono::TimeDelta::seconds(1);
    w.tick(1);
    assert_eq!(w.step_index(), 2, "the pause ends on time, not later");
}
