//! Every way a release ends early: analysis, a target that cannot run, a user's abort.

use chrono::TimeDelta;
use tideway_api_types::{CheckOutcome, ReleaseState};

use super::{Health, World};
use crate::{routing, Control, TargetStatus};

/// A canary holding 50% for ten minutes, checked every 10s.
fn canary(analysis: &str) -> World {
    let json =
        format!(r#"{{"type":"canary","weights":[50],"pause_secs":600,"analysis":{analysis}}}"#);
    let mut w = World::new(&json, 4);
    w.run_until(10, |w| w.step_index() == 1);
    w
}

/// Ticks 10s at a time until the release ends; returns the last transition.
fn until_end(w: &mut World) -> crate::Transition {
    for _ in 0..100 {
        if !w.state().is_active() {
            break;
        }
        w.tick(10);
    }
    assert!(!w.state().is_active(), "still {}", w.describe());
    w.log.last().unwrap().clone()
}

fn assert_back_to_stable(w: &World) {
    assert_eq!(
        routing(&w.release, &w.ctx()),
        None,
        "all traffic back to the stable"
    );
    assert_eq!(w.serving, Some(1));
}

/// `(analysis, health, reason)`: each aborts at its failure limit.
#[test]
fn analysis_failures_abort_at_the_limit() {
    let cases = [
        (
            r#"{"interval_secs":10}"#,
            Health::Errors(30),
            "analysis failed: success rate 70.0% < 99.0% (1400 requests); failed checks: 2 (limit 2); all traffic back to v1",
        ),
        (
            r#"{"interval_secs":10,"insufficient":"fail","failure_limit":3}"#,
            Health::Quiet,
            "analysis failed: too little traffic: 3 requests < 20 required; failed checks: 3 (limit 3); all traffic back to v1",
        ),
        (
            r#"{"interval_secs":10,"p99_max_ms":500,"failure_limit":1}"#,
            Health::Slow(800.0),
            "analysis failed: p99 800ms > 500ms; failed checks: 1 (limit 1); all traffic back to v1",
        ),
        (
            r#"{"interval_secs":10,"p99_max_factor":2,"failure_limit":1}"#,
            Health::Slow(300.0),
            "analysis failed: p99 300ms > 2 × stable p99 100ms (200ms); failed checks: 1 (limit 1); all traffic back to v1",
        ),
    ];
    for (analysis, health, reason) in cases {
        let mut w = canary(analysis);
        w.health = health;
        let last = until_end(&mut w);
        assert_eq!(
            (last.kind, last.to, last.reason.as_str()),
            ("ReleaseAborted", ReleaseState::Aborted, reason),
            "{analysis}"
        );
        let p = &w.release.progress;
        assert_eq!(p.failed_checks as usize, p.checks.len(), "{analysis}");
        assert!(p.checks.iter().all(|c| c.outcome == CheckOutcome::Failed));
        assert_eq!(last.details["check"]["outcome"], "failed");
        assert_back_to_stable(&w);
        let kinds = w.kinds();
        let failed = kinds.iter().filter(|k| **k == "AnalysisFailed").count();
        assert_eq!(
            failed + 1,
            p.failed_checks as usize,
            "{analysis}: {kinds:?}"
        );
    }
}

#[test]
fn the_relative_bound_needs_a_stable_p99() {
    let mut w = canary(r#"{"interval_secs":10,"p99_max_factor":2,"failure_limit":1}"#);
    w.health = Health::SlowNoBaseline(300.0);
    w.run(700);
    assert_eq!(w.state(), ReleaseState::Succeeded);
}

#[test]
fn too_little_traffic_waits_without_counting() {
    let mut w = World::new(
        r#"{"type":"canary","steps":[{"set_weight":10},{"analysis":{"checks":2}}],"analysis":{"interval_secs":10,"failure_limit":1}}"#,
        2,
    );
    w.health = Health::Quiet;
    for _ in 0..30 {
        w.tick(10);
    }
    let p = &w.release.progress;
    assert_eq!(
        (w.state(), p.step),
        (ReleaseState::Progressing, 1),
        "the analysis step waits"
    );
    assert_eq!(p.failed_checks, 0);
    assert!(p
        .checks
        .iter()
        .all(|c| c.outcome == CheckOutcome::Inconclusive));
    assert!(w.kinds().contains(&"AnalysisInconclusive"));
    w.health = Health::Good;
    w.run(100);
    assert_eq!(w.state(), ReleaseState::Succeeded);
}

#[test]
fn failures_need_not_be_consecutive_and_break_a_row_of_passes() {
    let mut w = World::new(
        r#"{"type":"canary","steps":[{"set_weight":10},{"analysis":{"checks":3}}],"analysis":{"interval_secs":10,"failure_limit":2}}"#,
        2,
    );
    w.run_until(10, |w| w.step_index() == 1);
    let due = |w: &World| w.release.progress.next_check_at.unwrap();
    for (health, outcome) in [
        (Health::Good, "AnalysisPassed"),
        (Health::Good, "AnalysisPassed"),
        (Health::Errors(5), "AnalysisFailed"),
        (Health::Good, "AnalysisPassed"),
        (Health::Errors(5), "ReleaseAborted"),
    ] {
        w.health = health;
        w.now = due(&w) - TimeDelta::seconds(1);
        w.tick(1);
        assert_eq!(w.log.last().unwrap().kind, outcome);
        if outcome == "AnalysisFailed" {
            assert_eq!(w.release.progress.passed_in_row, 0);
        }
    }
    assert_eq!(
        w.release.progress.step, 1,
        "never reached 3 passes in a row"
    );
}

#[test]
fn checks_are_kept_to_100_and_catch_up_when_late() {
    let mut w = canary(r#"{"interval_secs":1,"min_requests":0}"#);
    let before = w.release.progress.checks.len();
    for _ in 0..150 {
        w.tick(1);
    }
    let p = &w.release.progress;
    assert_eq!(p.checks.len(), 100);
    assert!(
        p.checks.windows(2).all(|c| c[0].at < c[1].at),
        "oldest first"
    );
    // The control plane was down for an hour: one check, then the next an interval later.
    w.now += TimeDelta::hours(1);
    w.tick(1);
    let p = &w.release.progress;
    assert_eq!(p.next_check_at, Some(w.now + TimeDelta::seconds(1)));
    assert_eq!(
        w.log.iter().filter(|t| t.kind == "AnalysisPassed").count(),
        before + 151
    );
}

#[test]
fn a_target_that_cannot_run_fails_the_release_anywhere() {
    /// `(name, strategy, how to get there)`.
    type Situation = (&'static str, &'static str, fn(&mut World));
    let situations: [Situation; 6] = [
        ("pending", r#"{"type":"canary","weights":[10]}"#, |_| {}),
        ("moving", r#"{"type":"canary","weights":[10]}"#, |w| {
            w.ready_cap = Some(0);
            w.tick(1);
        }),
        ("step pause", r#"{"type":"canary","weights":[10]}"#, |w| {
            w.run_until(10, |w| w.state() == ReleaseState::Paused)
        }),
        (
            "user paused",
            r#"{"type":"canary","weights":[10],"pause_secs":60}"#,
            |w| {
                w.run_until(10, |w| w.step_index() == 1);
                w.control(Control::Pause).unwrap();
            },
        ),
        (
            "mid batch",
            r#"{"type":"batch","batches":3,"interval_secs":60}"#,
            |w| w.run_until(10, |w| w.step_index() == 1),
        ),
        (
            "keeping old",
            r#"{"type":"blue_green","auto_promote_secs":0}"#,
            |w| w.run_until(10, |w| w.step_index() == 3),
        ),
    ];
    for (name, json, setup) in situations {
        let mut w = World::new(json, 3);
        setup(&mut w);
        w.target = TargetStatus::Failed("instance cart-2-a is crash-looping: exit 1".into());
        w.tick(1);
        let last = w.log.last().unwrap();
        assert_eq!(
            (last.kind, last.to),
            ("ReleaseFailed", ReleaseState::Failed),
            "{name}"
        );
        assert_eq!(
            last.reason,
            "v2 failed: instance cart-2-a is crash-looping: exit 1"
        );
        assert_eq!(last.set_current_version, None);
        assert_back_to_stable(&w);
    }
}

#[test]
fn a_user_abort_at_any_step_of_any_strategy_restores_the_stable() {
    for json in [
        r#"{"type":"canary","weights":[10,50],"pause_secs":5,"analysis":{"interval_secs":2}}"#,
        r#"{"type":"gray","rules":[{"header":{"name":"x-beta","prefix":"y"}}],"weight":10,"pause_secs":5}"#,
        r#"{"type":"batch","batches":3,"interval_secs":5}"#,
        r#"{"type":"blue_green","auto_promote_secs":5,"keep_old_secs":5}"#,
    ] {
        let mut full = World::new(json, 3);
        full.run(500);
        let steps = full.log.iter().map(|t| t.progress.step).max().unwrap();
        for at in 0..=steps {
            let mut w = World::new(json, 3);
            w.run_to_step(500, at);
            let t = w.control(Control::Abort).unwrap();
            assert_eq!(
                (t.kind, t.to, t.set_current_version),
                ("ReleaseAborted", ReleaseState::Aborted, None)
            );
            assert!(t.reason.contains("all traffic back to v1"), "{}", t.reason);
            assert_back_to_stable(&w);
            w.tick(1);
            assert_eq!(
                w.state(),
                ReleaseState::Aborted,
                "{json} at {at}: stays aborted"
            );
        }
    }
}
