//! Each control in each state, and what promote, pause and resume do to timers.

use chrono::TimeDelta;
use tideway_api_types::ReleaseState;

use super::World;
use crate::{routing, Control};

const CANARY: &str = r#"{"type":"canary","steps":[{"set_weight":20},{"pause":{"duration_secs":60}},{"pause":{}},{"analysis":{"checks":2}}],"analysis":{"interval_secs":10,"min_requests":0}}"#;

/// Releases in each state a control can meet.
fn at(situation: &str) -> World {
    let mut w = World::new(CANARY, 5);
    match situation {
        "pending" => {}
        "moving traffic" => {
            w.ready_cap = Some(0);
            w.tick(1);
        }
        "timed pause" => w.run_until(20, |w| w.step_index() == 1),
        "step pause" => w.run_until(100, |w| w.step_index() == 2),
        "user paused" => {
            w.run_until(20, |w| w.step_index() == 1);
            w.control(Control::Pause).unwrap();
        }
        "analysis" => {
            w.run_until(100, |w| w.step_index() == 2);
            w.control(Control::Promote { full: false }).unwrap();
            w.tick(1);
        }
        "promoting" => {
            w.run_until(20, |w| w.step_index() == 1);
            w.control(Control::Promote { full: true }).unwrap();
        }
        "succeeded" => w.run(300),
        "aborted" => {
            w.tick(1);
            w.control(Control::Abort).unwrap();
        }
        "failed" => {
            w.tick(1);
            w.target = crate::TargetStatus::Failed("crash".into());
            w.tick(1);
        }
        "superseded" => w.release.state = ReleaseState::Superseded,
        other => panic!("{other}"),
    }
    w
}

#[test]
fn each_control_in_each_state() {
    let promote = Control::Promote { full: false };
    let full = Control::Promote { full: true };
    use Control::{Abort, Pause, Resume};
    use ReleaseState::{Aborted, Paused, Progressing, Succeeded};
    // (situation, control, Ok((kind, state, step)) or Err(code))
    type Expect = Result<(&'static str, ReleaseState, u32), &'static str>;
    let cases: &[(&str, Control, Expect)] = &[
        ("pending", promote, Err("release_pending")),
        ("pending", full, Err("release_pending")),
        ("pending", Pause, Err("release_pending")),
        ("pending", Resume, Err("release_not_paused")),
        ("pending", Abort, Ok(("ReleaseAborted", Aborted, 0))),
        ("moving traffic", promote, Err("release_step_in_progress")),
        (
            "moving traffic",
            full,
            Ok(("ReleasePromoted", Progressing, 4)),
        ),
        ("moving traffic", Pause, Ok(("ReleasePaused", Paused, 0))),
        ("moving traffic", Resume, Err("release_not_paused")),
        ("moving traffic", Abort, Ok(("ReleaseAborted", Aborted, 0))),
        ("timed pause", promote, Ok(("ReleasePromoted", Paused, 2))),
        ("timed pause", full, Ok(("ReleasePromoted", Progressing, 4))),
        ("timed pause", Pause, Ok(("ReleasePaused", Paused, 1))),
        ("timed pause", Resume, Err("release_not_paused")),
        ("timed pause", Abort, Ok(("ReleaseAborted", Aborted, 1))),
        (
            "step pause",
            promote,
            Ok(("ReleasePromoted", Progressing, 3)),
        ),
        ("step pause", full, Ok(("ReleasePromoted", Progressing, 4))),
        ("step pause", Pause, Err("release_paused")),
        ("step pause", Resume, Err("release_awaiting_promote")),
        ("step pause", Abort, Ok(("ReleaseAborted", Aborted, 2))),
        ("user paused", promote, Ok(("ReleasePromoted", Paused, 2))),
        ("user paused", full, Ok(("ReleasePromoted", Progressing, 4))),
        ("user paused", Pause, Err("release_paused")),
        (
            "user paused",
            Resume,
            Ok(("ReleaseResumed", Progressing, 1)),
        ),
        ("user paused", Abort, Ok(("ReleaseAborted", Aborted, 1))),
        ("analysis", promote, Ok(("ReleasePromoted", Progressing, 4))),
        ("analysis", full, Ok(("ReleasePromoted", Progressing, 4))),
        ("analysis", Pause, Ok(("ReleasePaused", Paused, 3))),
        ("analysis", Abort, Ok(("ReleaseAborted", Aborted, 3))),
        ("promoting", promote, Err("release_step_in_progress")),
        ("promoting", full, Err("release_step_in_progress")),
        ("promoting", Abort, Ok(("ReleaseAborted", Aborted, 4))),
        ("succeeded", promote, Err("release_not_active")),
        ("succeeded", Abort, Err("release_not_active")),
        ("aborted", Resume, Err("release_not_active")),
        ("failed", full, Err("release_not_active")),
        ("superseded", Pause, Err("release_not_active")),
    ];
    for (situation, c, expect) in cases {
        let mut w = at(situation);
        let before = w.release.clone();
        let got = w
            .control(*c)
            .map(|t| (t.kind, t.to, t.progress.step))
            .map_err(|e| {
                assert!(!e.message.is_empty());
                e.code
            });
        assert_eq!(&got, expect, "{situation}: {c:?}");
        if got.is_err() {
            assert_eq!(
                w.release.progress, before.progress,
                "{situation}: errors change nothing"
            );
            assert_eq!(w.release.state, before.state);
        }
        if got.is_ok_and(|(_, to, _)| to == Aborted) {
            assert_eq!(
                routing(&w.release, &w.ctx()),
                None,
                "{situation}: all traffic to stable"
            );
            assert_eq!(w.serving, Some(1));
        }
        // Whatever the control did, the machine continues from it; a user pause holds.
        w.tick(1);
        if *c == Pause && got.is_ok() {
            assert_eq!(w.state(), Paused);
        }
    }
    // Promoting a step pause that ends the plan's waits still reaches success.
    let mut w = at("step pause");
    w.control(promote).unwrap();
    w.run(300);
    assert_eq!(w.state(), Succeeded);
}

#[test]
fn pause_freezes_a_timed_pause_and_resume_rearms_it() {
    let mut w = World::new(CANARY, 2);
    w.run_until(20, |w| w.step_index() == 1);
    let until = w.release.progress.pause_until.unwrap();
    w.tick(15);
    let left = (until - w.now).num_milliseconds();
    let t = w.control(Control::Pause).unwrap();
    assert_eq!(t.progress.pause_remaining_ms, Some(left));
    assert_eq!(t.progress.pause_until, None);
    assert!(t.progress.paused_by_user);
    assert!(
        t.reason
            .contains(&format!("{}s of the pause left", left / 1000)),
        "{}",
        t.reason
    );
    // An hour of pause, and a restart of the control plane.
    for _ in 0..60 {
        w.tick(60);
    }
    w.release = super::stored(&w.release);
    assert_eq!((w.state(), w.step_index()), (ReleaseState::Paused, 1));
    let t = w.control(Control::Resume).unwrap();
    assert_eq!(
        t.progress.pause_until,
        Some(w.now + TimeDelta::milliseconds(left))
    );
    assert_eq!(t.progress.pause_remaining_ms, None);
    w.tick(1);
    assert_eq!(w.step_index(), 1, "the rest of the pause still runs");
    w.now += TimeDelta::milliseconds(left - 1000);
    w.tick(1);
    assert_eq!(w.step_index(), 2, "then the next step");
}

#[test]
fn a_user_pause_holds_traffic_steps_but_not_analysis() {
    let mut w = World::new(
        r#"{"type":"canary","weights":[20,60],"pause_secs":5,"analysis":{"interval_secs":5,"failure_limit":1}}"#,
        5,
    );
    w.ready_cap = Some(1);
    w.tick(1);
    w.tick(1);
    w.run_until(30, |w| w.step_index() == 3);
    w.control(Control::Pause).unwrap();
    w.ready_cap = None;
    for _ in 0..20 {
        w.tick(1);
    }
    assert_eq!(
        w.describe(),
        "3 paused w20 t3 s5",
        "no traffic moves while paused"
    );
    w.health = super::Health::Errors(30);
    w.tick(5);
    assert_eq!(w.state(), ReleaseState::Aborted, "checks run while paused");
}

#[test]
fn full_promotion_from_every_step_waits_for_the_gateway() {
    let plan_len = 5;
    for at_step in 0..plan_len - 1 {
        let mut w = World::new(CANARY, 4);
        w.run_to_step(200, at_step);
        let t = w.control(Control::Promote { full: true }).unwrap();
        assert_eq!((t.kind, t.progress.step), ("ReleasePromoted", plan_len - 1));
        w.gateway_stuck = true;
        for _ in 0..10 {
            w.tick(1);
        }
        assert_eq!(w.state(), ReleaseState::Progressing, "from step {at_step}");
        assert_eq!(
            w.describe(),
            "4 progressing w100 t4 s4",
            "from step {at_step}"
        );
        assert_eq!(
            w.serving,
            Some(1),
            "the old version serves until the gateway moved"
        );
        w.gateway_stuck = false;
        w.tick(1);
        assert_eq!(w.state(), ReleaseState::Succeeded, "from step {at_step}");
        assert_eq!(w.serving, Some(2));
    }
}

#[test]
fn blue_green_controls() {
    let bg = r#"{"type":"blue_green","preview_host":"next.example.com","keep_old_secs":600}"#;
    // Promote ends the preview wait; the old version stays for keep_old_secs after the switch.
    let mut w = World::new(bg, 2);
    w.run_until(10, |w| w.state() == ReleaseState::Paused);
    let r = routing(&w.release, &w.ctx()).unwrap();
    assert!(r.preview);
    assert_eq!(r.preview_host.as_deref(), Some("next.example.com"));
    assert_eq!((r.weight, r.target_replicas, r.stable_replicas), (0, 2, 2));
    w.control(Control::Promote { full: false }).unwrap();
    w.run_until(10, |w| w.step_index() == 3);
    let p = &w.release.progress;
    let switched = p.switched_at.unwrap();
    assert_eq!(p.keep_old_until, Some(switched + TimeDelta::seconds(600)));
    let r = routing(&w.release, &w.ctx()).unwrap();
    assert!(!r.preview);
    assert_eq!(
        (r.weight, r.target_replicas, r.stable_replicas),
        (100, 2, 2)
    );
    // Abort while the old version is kept: everything back to it at once.
    let mut aborted = w.clone();
    aborted.control(Control::Abort).unwrap();
    assert_eq!(routing(&aborted.release, &aborted.ctx()), None);
    assert_eq!(aborted.serving, Some(1));
    // Promote cuts the keep-old window short.
    w.tick(10);
    let t = w.control(Control::Promote { full: false }).unwrap();
    assert_eq!(
        (t.kind, t.to, t.set_current_version),
        ("ReleaseSucceeded", ReleaseState::Succeeded, Some(2))
    );

    // Full promotion from the preview: switch, then stop the old version at once.
    let mut w = World::new(bg, 2);
    w.run_until(10, |w| w.state() == ReleaseState::Paused);
    let t = w.control(Control::Promote { full: true }).unwrap();
    assert_eq!(t.progress.step, 2);
    w.gateway_stuck = true;
    w.tick(1);
    w.tick(1);
    assert_eq!(
        w.state(),
        ReleaseState::Progressing,
        "waits for the gateway"
    );
    w.gateway_stuck = false;
    w.tick(1);
    assert_eq!(w.state(), ReleaseState::Succeeded);
    assert!(w.log.len() < 12, "{:?}", w.kinds());

    // Full promotion while switching, and a second one.
    let mut w = World::new(bg, 2);
    w.run_until(10, |w| w.state() == ReleaseState::Paused);
    w.control(Control::Promote { full: false }).unwrap();
    w.gateway_stuck = true;
    w.tick(1);
    assert_eq!(w.step_index(), 2);
    assert_eq!(
        w.control(Control::Promote { full: true }).unwrap().kind,
        "ReleasePromoted"
    );
    assert_eq!(
        w.control(Control::Promote { full: true }).unwrap_err().code,
        "release_step_in_progress"
    );
    w.gateway_stuck = false;
    w.tick(1);
    w.tick(1);
    assert_eq!(w.state(), ReleaseState::Succeeded);
}

#[test]
fn aborting_an_immediate_release_serves_the_previous_version_again() {
    let mut w = World::new(r#"{"type":"immediate"}"#, 2);
    w.ready_cap = Some(0);
    w.tick(1);
    assert_eq!(w.serving, Some(2));
    let t = w.control(Control::Abort).unwrap();
    assert_eq!(
        (t.to, t.set_current_version),
        (ReleaseState::Aborted, Some(1))
    );
    assert_eq!(w.serving, Some(1));

    let mut first = World::with_stable(super::strategy(r#"{"type":"immediate"}"#), 2, None);
    first.ready_cap = Some(0);
    first.tick(1);
    let t = first.control(Control::Abort).unwrap();
    assert_eq!(t.set_current_version, None, "nothing to go back to");
    assert!(t.reason.contains("keeps serving"), "{}", t.reason);
}
