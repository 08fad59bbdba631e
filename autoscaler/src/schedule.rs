//! Schedule rules: a five-field cron start in an IANA time zone plus a duration, during
//! which the rule's `min` and `max` bound the decision.
//!
//! A rule is in force at `now` when one of its fire times `f` has `f ≤ now < f + duration`.
//! Fire times are wall-clock times in the rule's zone, evaluated by `croner`, which follows
//! the Open Cron Pattern Specification on DST transitions:
//!
//! - spring forward: a fixed-time rule (single minute and hour) whose time does not exist
//!   that day fires at the first instant after the gap (`30 2 * * *` in New York on the
//!   spring-forward day fires at 03:00 EDT); interval rules skip the missing times;
//! - fall back: a fixed-time rule fires once, at the first of the two repeated times, so a
//!   window is not opened twice; interval rules fire on both passes of the repeated hour.
//!
//! The duration is real elapsed time: a 2 h window opened at 01:00 EDT on the fall-back day
//! ends at 02:00 EST.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use tideway_api_types::ScheduleRule;

/// How long to trust "no fire time found" before searching again.
const RESEARCH_AFTER_SECS: i64 = 86_400;

/// Validates one schedule rule: five cron fields (minute hour day-of-month month
/// day-of-week, with names, ranges, steps and lists) and an IANA time zone. The error is a
/// message for people.
pub fn validate_schedule(rule: &ScheduleRule) -> Result<(), String> {
    let parsed = Parsed::new(rule)?;
    if rule.duration_secs == 0 {
        return Err("duration_secs must be positive".to_owned());
    }
    if rule.min > rule.max {
        return Err(format!(
            "min ({}) must not exceed max ({})",
            rule.min, rule.max
        ));
    }
    // A pattern such as `0 0 31 2 *` parses but never fires.
    let probe = DateTime::<Utc>::UNIX_EPOCH.with_timezone(&parsed.tz);
    if parsed.cron.find_next_occurrence(&probe, false).is_err() {
        return Err(format!("cron `{}` never fires", rule.cron));
    }
    Ok(())
}

/// The rule in force at `now`: the highest `priority` among the rules whose window
/// `[fire time, fire time + duration)` holds `now`, the earliest in the list on a tie, with
/// its index. Rules that do not parse are never in force.
pub fn active_schedule(
    rules: &[ScheduleRule],
    now: DateTime<Utc>,
) -> Option<(usize, &ScheduleRule)> {
    let t = now.timestamp();
    let active = rules.iter().enumerate().filter(|(_, rule)| {
        Parsed::new(rule).is_ok_and(|p| p.window_at(t, rule.duration_secs).0.is_some())
    });
    pick(active)
}

/// Highest priority wins; `max_by_key` would keep the last of equals, so compare by hand.
fn pick<'a>(
    active: impl Iterator<Item = (usize, &'a ScheduleRule)>,
) -> Option<(usize, &'a ScheduleRule)> {
    active.fold(None, |best, (i, rule)| match best {
        Some((_, b)) if b.priority >= rule.priority => best,
        _ => Some((i, rule)),
    })
}

/// A rule's cron pattern and zone, parsed.
#[derive(Debug, Clone)]
struct Parsed {
    cron: Cron,
    tz: Tz,
}

impl Parsed {
    fn new(rule: &ScheduleRule) -> Result<Self, String> {
        let fields = rule.cron.split_whitespace().count();
        if fields != 5 {
            return Err(format!(
                "cron `{}` has {fields} fields; it needs five: minute hour day-of-month month day-of-week",
                rule.cron
            ));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(&rule.cron)
            .map_err(|e| format!("cron `{}`: {e}", rule.cron))?;
        let tz = rule
            .timezone
            .parse::<Tz>()
            .map_err(|_| format!("`{}` is not an IANA time zone", rule.timezone))?;
        Ok(Self { cron, tz })
    }

    /// The start of the window holding second `t`, if any, and the second until which that
    /// answer stays true (the window's end, or the next fire time).
    ///
    /// Only the latest fire time at or before `t` can hold it, since every window has the same
    /// length; that is the first fire time after `t - duration` when it is not after `t`.
    fn window_at(&self, t: i64, duration_secs: u32) -> (Option<i64>, i64) {
        let duration = i64::from(duration_secs);
        let Some(origin) = DateTime::from_timestamp(t - duration, 0) else {
            return (None, t + RESEARCH_AFTER_SECS);
        };
        match self
            .cron
            .find_next_occurrence(&origin.with_timezone(&self.tz), false)
        {
            Ok(fire) if fire.timestamp() <= t && duration > 0 => {
                (Some(fire.timestamp()), fire.timestamp() + duration)
            }
            Ok(fire) => (None, fire.timestamp().max(t + 1)),
            Err(_) => (None, t + RESEARCH_AFTER_SECS),
        }
    }
}

/// A target's schedule rules with their parsed patterns and each rule's last answer, so a
/// tick costs a comparison until a window opens or closes.
#[derive(Debug, Clone)]
pub(crate) struct Schedules {
    rules: Vec<ScheduleRule>,
    entries: Vec<Option<Entry>>,
}

#[derive(Debug, Clone)]
struct Entry {
    parsed: Parsed,
    /// The answer holds for seconds in `[from, until)`.
    from: i64,
    until: i64,
    active: bool,
}

impl Schedules {
    pub(crate) fn new(rules: &[ScheduleRule]) -> Self {
        let entries = rules
            .iter()
            .map(|rule| {
                Parsed::new(rule).ok().map(|parsed| Entry {
                    parsed,
                    from: i64::MAX,
                    until: i64::MIN,
                    active: false,
                })
            })
            .collect();
        Self {
            rules: rules.to_vec(),
            entries,
        }
    }

    pub(crate) fn is_for(&self, rules: &[ScheduleRule]) -> bool {
        self.rules == rules
    }

    /// The same answer as [`active_schedule`] at second `t`.
    pub(crate) fn active(&mut self, t: i64) -> Option<(usize, &ScheduleRule)> {
        for (rule, entry) in self.rules.iter().zip(self.entries.iter_mut()) {
            let Some(entry) = entry else { continue };
            if !(entry.from..entry.until).contains(&t) {
                let (start, until) = entry.parsed.window_at(t, rule.duration_secs);
                entry.from = t;
                entry.until = until;
                entry.active = start.is_some();
            }
        }
        let active = self
            .rules
            .iter()
            .zip(&self.entries)
            .enumerate()
            .filter(|(_, (_, e))| e.as_ref().is_some_and(|e| e.active))
            .map(|(i, (rule, _))| (i, rule));
        pick(active)
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        let rules: usize = self
            .rules
            .iter()
            .map(|r| r.cron.capacity() + r.timezone.capacity())
            .sum();
        rules
            + self.rules.capacity() * std::mem::size_of::<ScheduleRule>()
            + self.entries.capacity() * std::mem::size_of::<Option<Entry>>()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn rule(
        cron: &str,
        tz: &str,
        duration_secs: u32,
        min: u32,
        max: u32,
        priority: i32,
    ) -> ScheduleRule {
        ScheduleRule {
            cron: cron.to_owned(),
            timezone: tz.to_owned(),
            duration_secs,
            min,
            max,
            priority,
        }
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    /// One table row: the rules, a time, and the index expected in force (None: none).
    struct Case {
        name: &'static str,
        rules: Vec<ScheduleRule>,
        at: DateTime<Utc>,
        expect: Option<usize>,
    }

    fn check(cases: &[Case]) {
        let mut failures = Vec::new();
        for case in cases {
            let got = active_schedule(&case.rules, case.at).map(|(i, _)| i);
            let mut cached = Schedules::new(&case.rules);
            // The cache must agree, also when it answers from an earlier computation.
            cached.active(case.at.timestamp() - 1);
            let via_cache = cached.active(case.at.timestamp()).map(|(i, _)| i);
            if got != case.expect || via_cache != case.expect {
                failures.push(format!(
                    "{} at {}: expected {:?}, got {:?} (cached {:?})",
                    case.name, case.at, case.expect, got, via_cache
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn windows_across_midnight() {
        // 22:00 Shanghai (UTC+8, no DST) for 6 h: 14:00Z to 20:00Z.
        let night = || vec![rule("0 22 * * *", "Asia/Shanghai", 6 * 3600, 5, 10, 0)];
        // Friday 23:00 New York for 2 h: still in force early Saturday, which `5` does not match.
        let friday = || vec![rule("0 23 * * 5", "America/New_York", 2 * 3600, 3, 10, 0)];
        check(&[
            Case {
                name: "before",
                rules: night(),
                at: utc(2025, 6, 1, 13, 59, 59),
                expect: None,
            },
            Case {
                name: "opens",
                rules: night(),
                at: utc(2025, 6, 1, 14, 0, 0),
                expect: Some(0),
            },
            Case {
                name: "after local midnight",
                rules: night(),
                at: utc(2025, 6, 1, 17, 30, 0),
                expect: Some(0),
            },
            Case {
                name: "last second",
                rules: night(),
                at: utc(2025, 6, 1, 19, 59, 59),
                expect: Some(0),
            },
            Case {
                name: "closed",
                rules: night(),
                at: utc(2025, 6, 1, 20, 0, 0),
                expect: None,
            },
            // 2025-06-06 is a Friday; 23:00 EDT = 03:00Z Saturday.
            Case {
                name: "friday night",
                rules: friday(),
                at: utc(2025, 6, 7, 3, 0, 0),
                expect: Some(0),
            },
            Case {
                name: "saturday 00:30 local",
                rules: friday(),
                at: utc(2025, 6, 7, 4, 30, 0),
                expect: Some(0),
            },
            Case {
                name: "saturday 01:00 local",
                rules: friday(),
                at: utc(2025, 6, 7, 5, 0, 0),
                expect: None,
            },
            Case {
                name: "thursday night",
                rules: friday(),
                at: utc(2025, 6, 6, 3, 30, 0),
                expect: None,
            },
        ]);
    }

    #[test]
    fn spring_forward_gap() {
        // New York, 2025-03-09: 02:00 EST jumps to 03:00 EDT (07:00Z); 02:30 does not exist.
        let gap = || vec![rule("30 2 * * *", "America/New_York", 3600, 4, 10, 0)];
        check(&[
            // The day before: 02:30 EST = 07:30Z, window to 08:30Z.
            Case {
                name: "normal day",
                rules: gap(),
                at: utc(2025, 3, 8, 7, 45, 0),
                expect: Some(0),
            },
            Case {
                name: "normal day, before",
                rules: gap(),
                at: utc(2025, 3, 8, 7, 29, 59),
                expect: None,
            },
            // On the day: fires at the first instant after the gap, 03:00 EDT = 07:00Z.
            Case {
                name: "gap day 01:59 EST",
                rules: gap(),
                at: utc(2025, 3, 9, 6, 59, 59),
                expect: None,
            },
            Case {
                name: "gap day 03:00 EDT",
                rules: gap(),
                at: utc(2025, 3, 9, 7, 0, 0),
                expect: Some(0),
            },
            Case {
                name: "gap day 03:59 EDT",
                rules: gap(),
                at: utc(2025, 3, 9, 7, 59, 59),
                expect: Some(0),
            },
            Case {
                name: "gap day 04:00 EDT",
                rules: gap(),
                at: utc(2025, 3, 9, 8, 0, 0),
                expect: None,
            },
            // The day after: 02:30 EDT = 06:30Z.
            Case {
                name: "day after",
                rules: gap(),
                at: utc(2025, 3, 10, 6, 30, 0),
                expect: Some(0),
            },
        ]);
    }

    #[test]
    fn fall_back_overlap_is_not_counted_twice() {
        // New York, 2025-11-02: 02:00 EDT falls back to 01:00 EST (06:00Z); 01:00–02:00 repeats.
        let once = || vec![rule("30 1 * * *", "America/New_York", 1800, 4, 10, 0)];
        let long = || vec![rule("0 1 * * *", "America/New_York", 2 * 3600, 4, 10, 0)];
        check(&[
            // 01:30 EDT = 05:30Z opens the only window of the day.
            Case {
                name: "first 01:30",
                rules: once(),
                at: utc(2025, 11, 2, 5, 30, 0),
                expect: Some(0),
            },
            Case {
                name: "first 01:59",
                rules: once(),
                at: utc(2025, 11, 2, 5, 59, 59),
                expect: Some(0),
            },
            Case {
                name: "between",
                rules: once(),
                at: utc(2025, 11, 2, 6, 15, 0),
                expect: None,
            },
            // 01:30 EST = 06:30Z: the repeated wall-clock time does not open a second window.
            Case {
                name: "second 01:30",
                rules: once(),
                at: utc(2025, 11, 2, 6, 30, 0),
                expect: None,
            },
            Case {
                name: "second 01:45",
                rules: once(),
                at: utc(2025, 11, 2, 6, 45, 0),
                expect: None,
            },
            // 01:00 EDT = 05:00Z for two real hours: until 07:00Z = 02:00 EST.
            Case {
                name: "2 h from 01:00 EDT",
                rules: long(),
                at: utc(2025, 11, 2, 6, 59, 59),
                expect: Some(0),
            },
            Case {
                name: "ends 02:00 EST",
                rules: long(),
                at: utc(2025, 11, 2, 7, 0, 0),
                expect: None,
            },
        ]);
    }

    #[test]
    fn overlapping_rules_by_priority_then_order() {
        let rules = || {
            vec![
                rule("0 9 * * *", "UTC", 8 * 3600, 2, 10, 0),
                rule("0 12 * * *", "UTC", 3600, 5, 10, 5),
                rule("0 12 * * *", "UTC", 3600, 6, 10, 5),
                rule("0 8 * * *", "UTC", 2 * 3600, 1, 3, -1),
            ]
        };
        check(&[
            Case {
                name: "only low",
                rules: rules(),
                at: utc(2025, 6, 2, 8, 30, 0),
                expect: Some(3),
            },
            Case {
                name: "default beats negative",
                rules: rules(),
                at: utc(2025, 6, 2, 9, 30, 0),
                expect: Some(0),
            },
            Case {
                name: "tie: earliest in list",
                rules: rules(),
                at: utc(2025, 6, 2, 12, 30, 0),
                expect: Some(1),
            },
            Case {
                name: "back to default",
                rules: rules(),
                at: utc(2025, 6, 2, 13, 0, 0),
                expect: Some(0),
            },
            Case {
                name: "none",
                rules: rules(),
                at: utc(2025, 6, 2, 17, 0, 0),
                expect: None,
            },
            // A rule that fires again inside its own window stays in force.
            Case {
                name: "overlapping fires",
                rules: vec![rule("*/5 * * * *", "UTC", 600, 1, 1, 0)],
                at: utc(2025, 6, 2, 12, 3, 0),
                expect: Some(0),
            },
            Case {
                name: "unparsable rules are never in force",
                rules: vec![
                    rule("bogus", "UTC", 600, 1, 1, 9),
                    rule("* * * * *", "Nowhere/Land", 600, 1, 1, 9),
                ],
                at: utc(2025, 6, 2, 12, 3, 0),
                expect: None,
            },
        ]);
    }

    #[test]
    fn cache_follows_time_through_opening_and_closing() {
        let rules = vec![rule("0 22 * * *", "Asia/Shanghai", 6 * 3600, 5, 10, 0)];
        let mut cached = Schedules::new(&rules);
        let start = utc(2025, 6, 1, 13, 0, 0).timestamp();
        for t in (start..start + 8 * 3600).step_by(37) {
            let at = DateTime::from_timestamp(t, 0).unwrap();
            assert_eq!(
                cached.active(t).map(|(i, _)| i),
                active_schedule(&rules, at).map(|(i, _)| i),
                "t={at}"
            );
        }
    }

    #[test]
    fn validation_messages() {
        let ok = rule("0 9 * * MON-FRI", "Asia/Shanghai", 3600, 1, 5, 0);
        assert_eq!(validate_schedule(&ok), Ok(()));
        let cases = [
            (rule("0 9 * *", "UTC", 60, 0, 1, 0), "has 4 fields"),
            (rule("0 0 9 * * *", "UTC", 60, 0, 1, 0), "has 6 fields"),
            (rule("61 * * * *", "UTC", 60, 0, 1, 0), "cron `61 * * * *`"),
            (rule("0 25 * * *", "UTC", 60, 0, 1, 0), "cron `0 25 * * *`"),
            (
                rule("0 9 * * *", "Mars/Olympus_Mons", 60, 0, 1, 0),
                "not an IANA time zone",
            ),
            (rule("0 9 * * *", "UTC", 0, 0, 1, 0), "duration_secs"),
            (rule("0 9 * * *", "UTC", 60, 3, 1, 0), "must not exceed max"),
            (rule("0 0 31 2 *", "UTC", 60, 0, 1, 0), "never fires"),
        ];
        for (rule, expected) in cases {
            let got = validate_schedule(&rule);
            assert!(
                got.as_ref().is_err_and(|e| e.contains(expected)),
                "{}: {got:?}",
                rule.cron
            );
        }
    }
}
