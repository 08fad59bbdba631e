//! What the gateway and the runtime must do for an active release right now.

use tideway_api_types::{MatchRule, Release, ReleaseState, Sticky, Strategy};

use crate::plan::{self, gray_rules};
use crate::Context;

/// Traffic and instances of an active release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    /// The version the release started from (`None` for a first release).
    pub stable: Option<u32>,
    pub target: u32,
    /// Percent of unmatched traffic to the target; the rest goes to `stable`.
    pub weight: u32,
    /// Checked before the weights; each sends matching requests to the target.
    pub rules: Vec<MatchRule>,
    pub sticky: Option<Sticky>,
    /// Whether `x-tideway-preview: 1` (and `preview_host`) reach the target.
    pub preview: bool,
    pub preview_host: Option<String>,
    pub stable_replicas: u32,
    pub target_replicas: u32,
}

/// The routing of a progressing or paused release; `None` otherwise, and then the app's
/// serving version takes all traffic (so an abort or a failure sends everything back to the
/// stable version at once).
pub fn routing(release: &Release, ctx: &Context) -> Option<Routing> {
    if !matches!(
        release.state,
        ReleaseState::Progressing | ReleaseState::Paused
    ) {
        return None;
    }
    let p = &release.progress;
    let ctx = Context {
        replicas: ctx.replicas.max(1),
        stable_version: p.stable_version,
    };
    let target = release.target_version;
    let steps = plan::steps(&release.strategy, target, &ctx);
    let index = usize::try_from(p.step).ok()?;
    let step = steps.get(index)?;
    // A traffic step keeps the previous step's routing until its instances are ready.
    let shown = if step.kind.moves_traffic() && p.step_started_at.is_none() {
        index.checked_sub(1).and_then(|i| steps.get(i))
    } else {
        Some(step)
    };
    let (rules, preview) = shown.map_or((false, false), |s| (s.rules, s.preview));
    let (sticky, preview_host) = match &release.strategy {
        Strategy::Gray(g) if rules => (g.sticky.clone(), None),
        Strategy::BlueGreen(bg) if preview => (None, bg.preview_host.clone()),
        _ => (None, None),
    };
    Some(Routing {
        stable: p.stable_version,
        target,
        weight: p.weight,
        rules: if rules {
            gray_rules(&release.strategy, target)
        } else {
            Vec::new()
        },
        sticky,
        preview,
        preview_host,
        stable_replicas: p.stable_replicas,
        target_replicas: p.target_replicas,
    })
}
