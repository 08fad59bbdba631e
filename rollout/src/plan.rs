//! The plan of a release: the steps each strategy expands into, with the traffic and the
//! instance counts each one asks for. [`plan`] is the dry run users see, and the machine
//! walks the very same list (`progress.step` indexes it), so the two cannot disagree.

use tideway_api_types::{
    CanaryStep, CanaryStrategy, GrayStrategy, PauseStep, PlannedStep, ReleasePlan, Strategy,
};

use crate::Context;

/// What a step does and what ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Everything at once (the `immediate` strategy, and any first release): ends when the
    /// target has all its instances ready.
    Immediate,
    /// A canary weight: ends when the target's instances are ready and the gateway applies
    /// the weight.
    SetWeight,
    /// The gray phase: rules (and a share of the rest) to the target; ends like `SetWeight`.
    Gray,
    /// All traffic to the target; ends like `SetWeight`, and the release succeeds.
    Promote,
    /// One batch of instances (and the matching share of traffic); ends like `SetWeight`.
    Batch,
    /// Blue-green: the target at full size behind the preview route; ends when it is ready.
    Preview,
    /// Blue-green: all traffic to the target at once; ends when the gateway applies it.
    Switch,
    /// A timed pause (`Some(secs)`) or one that waits for `promote`.
    Pause(Option<u32>),
    /// Ends after this many consecutive passing analysis checks.
    Analysis(u32),
    /// Blue-green: the old version stays up this long after the switch.
    KeepOld(u32),
}

impl Kind {
    /// Steps that move traffic: they first bring the target's instances up, then change the
    /// routing (`progress.step_started_at` is set at that moment), then wait for the gateway.
    pub(crate) fn moves_traffic(self) -> bool {
        matches!(
            self,
            Kind::SetWeight | Kind::Gray | Kind::Promote | Kind::Batch | Kind::Switch
        )
    }
}

/// One step with the state it leaves behind and the instances it asks for while it runs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Step {
    pub kind: Kind,
    pub action: String,
    pub waits_for: String,
    /// Percent of unmatched traffic to the target once the step has moved it.
    pub weight: u32,
    /// Whether the gray rules send matching requests to the target.
    pub rules: bool,
    /// Whether the preview route reaches the target.
    pub preview: bool,
    /// Instances left behind by the step.
    pub target_replicas: u32,
    pub stable_replicas: u32,
    /// Instances asked for while the step runs: enough for the traffic before and after it
    /// (the stable shrinks only once the next step starts, or with the release's success).
    pub during_target: u32,
    pub during_stable: u32,
}

/// The dry run of a release: the steps `step` will walk for this strategy and app.
pub fn plan(strategy: &Strategy, target_version: u32, ctx: &Context) -> ReleasePlan {
    let steps = steps(strategy, target_version, ctx)
        .into_iter()
        .zip(0u32..)
        .map(|(s, index)| PlannedStep {
            index,
            action: s.action,
            weight: s.weight,
            rules: if s.rules {
                gray_rules(strategy, target_version)
            } else {
                Vec::new()
            },
            preview: s.preview,
            target_replicas: s.target_replicas,
            stable_replicas: s.stable_replicas,
            waits_for: s.waits_for,
        })
        .collect();
    ReleasePlan {
        target_version,
        stable_version: ctx.stable_version,
        strategy: strategy.clone(),
        steps,
    }
}

/// The gray rules pointed at `target`; empty for other strategies.
pub(crate) fn gray_rules(strategy: &Strategy, target: u32) -> Vec<tideway_api_types::MatchRule> {
    match strategy {
        Strategy::Gray(g) => g.rules.iter().map(|r| r.to_version(target)).collect(),
        _ => Vec::new(),
    }
}

/// Whether the release has a version to compare with and fall back to. Without one (a first
/// release, or a release of the serving version itself) every strategy is a plain switch.
pub(crate) fn is_gradual(strategy: &Strategy, target: u32, stable: Option<u32>) -> bool {
    !matches!(strategy, Strategy::Immediate) && stable.is_some_and(|s| s != target)
}

/// The steps of a release. Their number never depends on `ctx.replicas`, so a release whose
/// app is rescaled keeps its place.
pub(crate) fn steps(strategy: &Strategy, target: u32, ctx: &Context) -> Vec<Step> {
    let replicas = ctx.replicas.max(1);
    let sizes = Sizes { replicas };
    let stable = match ctx.stable_version {
        Some(s) if is_gradual(strategy, target, ctx.stable_version) => s,
        _ => {
            let action = match (strategy, ctx.stable_version) {
                (Strategy::Immediate, _) => {
                    format!("switch all traffic and instances to v{target}")
                }
                (_, None) => format!("start v{target} (first release: all traffic at once)"),
                (_, Some(_)) => format!("restart v{target} (already serving: all at once)"),
            };
            return vec![Step {
                kind: Kind::Immediate,
                action,
                waits_for: "ready".into(),
                weight: 100,
                rules: false,
                preview: false,
                target_replicas: replicas,
                stable_replicas: 0,
                during_target: replicas,
                during_stable: 0,
            }];
        }
    };
    let mut out = Builder {
        sizes,
        target,
        stable,
        steps: Vec::new(),
    };
    match strategy {
        Strategy::Immediate => {}
        Strategy::Canary(c) => out.canary(c),
        Strategy::Gray(g) => out.gray(g),
        Strategy::Batch(b) => {
            let n = b.batches.max(1);
            for k in 1..=n {
                out.batch(k, n);
                if k < n {
                    let secs = if b.beta && k == 1 {
                        None
                    } else {
                        b.interval_secs
                    };
                    out.pause(secs);
                }
            }
        }
        Strategy::BlueGreen(bg) => {
            out.push(
                Kind::Preview,
                format!("start v{target} at full size behind the preview route"),
                "ready".into(),
                |s| {
                    s.preview = true;
                    s.target_replicas = replicas;
                },
            );
            out.pause(bg.auto_promote_secs);
            out.push(
                Kind::Switch,
                format!("switch all traffic to v{target}"),
                "ready".into(),
                |s| {
                    s.weight = 100;
                    s.preview = false;
                },
            );
            out.push(
                Kind::KeepOld(bg.keep_old_secs),
                format!("keep v{stable} for {}s, then stop it", bg.keep_old_secs),
                format!("timer {}s", bg.keep_old_secs),
                |s| s.stable_replicas = 0,
            );
        }
    }
    out.steps
}

#[derive(Debug, Clone, Copy)]
struct Sizes {
    replicas: u32,
}

impl Sizes {
    /// Target instances for a share of traffic: `ceil(replicas × percent / 100)`, at least 1.
    fn for_percent(self, percent: u32) -> u32 {
        let wanted = u64::from(self.replicas) * u64::from(percent.min(100));
        u32::try_from(wanted.div_ceil(100))
            .unwrap_or(self.replicas)
            .max(1)
    }

    /// Target instances after batch `k` of `n`: `ceil(replicas × k / n)`.
    fn for_batch(self, k: u32, n: u32) -> u32 {
        let wanted = (u64::from(self.replicas) * u64::from(k)).div_ceil(u64::from(n.max(1)));
        u32::try_from(wanted).unwrap_or(self.replicas)
    }

    /// The share of traffic that follows `target` of `replicas` instances, rounded.
    fn percent_of(self, target: u32) -> u32 {
        let r = u64::from(self.replicas);
        let p = (u64::from(target) * 200 + r) / (2 * r);
        u32::try_from(p.min(100)).unwrap_or(100)
    }
}

/// Appends steps, each starting from the state the previous one left behind.
struct Builder {
    sizes: Sizes,
    target: u32,
    stable: u32,
    steps: Vec<Step>,
}

impl Builder {
    /// The state before the next step: what the last one left behind, or nothing on the
    /// target yet.
    fn last(&self) -> Step {
        self.steps.last().cloned().unwrap_or(Step {
            kind: Kind::Pause(None),
            action: String::new(),
            waits_for: String::new(),
            weight: 0,
            rules: false,
            preview: false,
            target_replicas: 0,
            stable_replicas: self.sizes.replicas,
            during_target: 0,
            during_stable: self.sizes.replicas,
        })
    }

    /// Adds a step that starts from the previous state, changed by `change`.
    fn push(
        &mut self,
        kind: Kind,
        action: String,
        waits_for: String,
        change: impl FnOnce(&mut Step),
    ) {
        let before = self.last();
        let mut step = Step {
            kind,
            action,
            waits_for,
            ..before.clone()
        };
        change(&mut step);
        step.during_target = if kind.moves_traffic() {
            before.target_replicas.max(step.target_replicas)
        } else {
            step.target_replicas
        };
        step.during_stable = before.stable_replicas.max(step.stable_replicas);
        self.steps.push(step);
    }

    fn set_weight(&mut self, weight: u32) {
        let target = self.sizes.for_percent(weight);
        self.push(
            Kind::SetWeight,
            format!("set weight {weight}%"),
            "ready".into(),
            |s| {
                s.weight = weight;
                s.target_replicas = target;
            },
        );
    }

    fn pause(&mut self, secs: Option<u32>) {
        let (action, waits_for) = match secs {
            Some(d) => (format!("pause {d}s"), format!("timer {d}s")),
            None => ("pause until promoted".to_string(), "promote".to_string()),
        };
        self.push(Kind::Pause(secs), action, waits_for, |_| {});
    }

    fn analysis(&mut self, checks: u32) {
        let plural = if checks == 1 { "" } else { "s" };
        self.push(
            Kind::Analysis(checks),
            format!("analysis ({checks} check{plural})"),
            "analysis".into(),
            |_| {},
        );
    }

    fn promote(&mut self) {
        let replicas = self.sizes.replicas;
        let (target, stable) = (self.target, self.stable);
        self.push(
            Kind::Promote,
            format!("promote: all traffic to v{target}, then stop v{stable}"),
            "ready".into(),
            |s| {
                s.weight = 100;
                s.rules = false;
                s.target_replicas = replicas;
                s.stable_replicas = 0;
            },
        );
    }

    fn canary(&mut self, c: &CanaryStrategy) {
        let shorthand: Vec<u32> = match &c.linear {
            Some(l) if c.steps.is_empty() && c.weights.is_empty() => {
                let step = l.step.clamp(1, 100);
                (1..)
                    .map(|i| i * step)
                    .take_while(|w| *w <= l.up_to.min(100))
                    .collect()
            }
            _ => c.weights.clone(),
        };
        if c.steps.is_empty() {
            for w in shorthand {
                self.set_weight(w);
                self.pause(c.pause_secs);
                if c.analysis.is_some() {
                    self.analysis(1);
                }
            }
        } else {
            for s in &c.steps {
                match s {
                    CanaryStep::SetWeight(w) => self.set_weight(*w),
                    CanaryStep::Pause(PauseStep { duration_secs }) => self.pause(*duration_secs),
                    CanaryStep::Analysis(a) => self.analysis(a.checks),
                }
            }
        }
        self.promote();
    }

    fn gray(&mut self, g: &GrayStrategy) {
        // Rules send a share of traffic we cannot know; hash ranges say theirs.
        let hashed: u32 = g
            .rules
            .iter()
            .filter_map(|r| r.hash.as_ref())
            .map(|h| h.to.saturating_sub(h.from))
            .sum();
        let target = self.sizes.for_percent(g.weight.saturating_add(hashed));
        let n = g.rules.len();
        let plural = if n == 1 { "" } else { "s" };
        let action = if g.weight == 0 {
            format!("gray: {n} rule{plural} to v{}", self.target)
        } else {
            format!(
                "gray: {n} rule{plural} and {}% of the rest to v{}",
                g.weight, self.target
            )
        };
        self.push(Kind::Gray, action, "ready".into(), |s| {
            s.weight = g.weight;
            s.rules = true;
            s.target_replicas = target;
        });
        self.pause(g.pause_secs);
        self.promote();
    }

    fn batch(&mut self, k: u32, n: u32) {
        let target = self.sizes.for_batch(k, n);
        let weight = self.sizes.percent_of(target);
        let stable = self.sizes.replicas - target.min(self.sizes.replicas);
        self.push(Kind::Batch, format!("batch {k}/{n}"), "ready".into(), |s| {
            s.weight = weight;
            s.target_replicas = target;
            s.stable_replicas = stable;
        });
    }
}
