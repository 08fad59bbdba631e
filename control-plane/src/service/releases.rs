//! Releases: starting (or planning) one, the user's controls over an active one, and
//! rollback. The release reconciler walks them; this module only records intent.

use serde_json::json;
use tideway_api_types::{Release, ReleaseCreate, ReleasePlan, ReleaseState, Strategy};
use tideway_rollout::Control;

use crate::api::error::ApiError;
use crate::api::AppState;
use crate::domain::event::NewEvent;
use crate::domain::name::Name;
use crate::domain::placement::context_of;
use crate::domain::token::{Action, Principal};
use crate::domain::Invalid;
use crate::store::{AppRecord, PageRequest, StoreError};

/// Checks a strategy as release creation does (`validation_failed` with the field path,
/// e.g. `strategy.steps[0].set_weight`).
pub fn validate_strategy(strategy: &Strategy) -> Result<(), ApiError> {
    tideway_rollout::validate(strategy)
        .map_err(|e| ApiError::Validation(Invalid::new(e.field, e.message)))
}

/// Authorization, the strategy and the app, in the order every release creation checks them.
async fn prepare(
    s: &AppState,
    p: &Principal,
    ns: &Name,
    app: &Name,
    body: &ReleaseCreate,
) -> Result<(Strategy, AppRecord), ApiError> {
    p.authorize(Action::Deploy, Some(ns.as_str()))?;
    let strategy = body.strategy.clone().unwrap_or(Strategy::Immediate);
    validate_strategy(&strategy)?;
    let record = s.store.get_app(ns, app).await?;
    Ok((strategy, record))
}

fn no_version(version: u32) -> ApiError {
    ApiError::Validation(Invalid::new(
        "target_version",
        format!("the app has no version {version}"),
    ))
}

/// The plan of a release (steps, instance counts, weights, routes); changes nothing.
pub async fn plan(
    s: &AppState,
    p: &Principal,
    ns: &Name,
    app: &Name,
    body: &ReleaseCreate,
) -> Result<ReleasePlan, ApiError> {
    let (strategy, record) = prepare(s, p, ns, app, body).await?;
    match s.store.get_version(ns, app, body.target_version).await {
        Ok(_) => {}
        Err(StoreError::NotFound { .. }) => return Err(no_version(body.target_version)),
        Err(e) => return Err(e.into()),
    }
    let ctx = context_of(&record.app, None);
    Ok(tideway_rollout::plan(&strategy, body.target_version, &ctx))
}

/// Starts a release; `release_in_progress` while another one is active, unless
/// `body.supersede`.
pub async fn start(
    s: &AppState,
    p: &Principal,
    ns: &Name,
    app: &Name,
    body: &ReleaseCreate,
) -> Result<Release, ApiError> {
    let (strategy, _) = prepare(s, p, ns, app, body).await?;
    let event = NewEvent::new("ReleaseCreated", &p.name, "started through the API")
        .app(ns.as_str(), app.as_str())
        .details(json!({"target_version": body.target_version, "strategy": strategy}));
    let result = if body.supersede {
        let superseded = NewEvent::new(
            "ReleaseSuperseded",
            &p.name,
            format!("superseded by a release of v{}", body.target_version),
        )
        .app(ns.as_str(), app.as_str());
        s.store
            .replace_release(ns, app, body.target_version, &strategy, event, superseded)
            .await
    } else {
        s.store
            .create_release(ns, app, body.target_version, &strategy, event)
            .await
    };
    let release = result.map_err(|e| match e {
        // The app exists but the body names a version it does not have.
        StoreError::NotFound {
            kind: "version", ..
        } => no_version(body.target_version),
        other => other.into(),
    })?;
    wake_all(s);
    Ok(release)
}

/// Applies a user's control (promote, pause, resume, abort) to release `id`.
pub async fn control(
    s: &AppState,
    p: &Principal,
    ns: &Name,
    app: &Name,
    id: i64,
    control: Control,
) -> Result<Release, ApiError> {
    p.authorize(Action::Deploy, Some(ns.as_str()))?;
    // The reconciler may move the release between our read and our write; the control then
    // applies to the release as it is now, a few times before giving up.
    let mut attempts = 0;
    loop {
        let release = s.store.get_release(ns, app, id).await?;
        let record = s.store.get_app(ns, app).await?;
        let ctx = context_of(&record.app, Some(&release));
        let transition =
            tideway_rollout::control(&release, &ctx, control, s.clock.now()).map_err(|e| {
                ApiError::Conflict {
                    code: e.code,
                    message: e.message,
                }
            })?;
        let event = NewEvent::new(transition.kind, &p.name, transition.reason.clone())
            .app(ns.as_str(), app.as_str())
            .details(json!({"release": id, "inputs": transition.details}));
        match s
            .store
            .transition_release(id, release.generation, &transition, event)
            .await
        {
            Ok(updated) => {
                wake_all(s);
                return Ok(updated);
            }
            Err(StoreError::PreconditionFailed { .. }) if attempts < 5 => attempts += 1,
            Err(e) => return Err(e.into()),
        }
    }
}

/// An immediate release of `version` (default: the version that served before the current
/// one), superseding any active release.
pub async fn rollback(
    s: &AppState,
    p: &Principal,
    ns: &Name,
    app: &Name,
    version: Option<u32>,
) -> Result<Release, ApiError> {
    p.authorize(Action::Deploy, Some(ns.as_str()))?;
    let record = s.store.get_app(ns, app).await?;
    let version = match version {
        Some(v) => v,
        None => previous_version(s, ns, app, record.app.current_version).await?,
    };
    if Some(version) == record.app.current_version {
        let active = s
            .store
            .list_releases(ns, app, &first_page())
            .await?
            .items
            .into_iter()
            .any(|r| r.state.is_active());
        if !active {
            return Err(ApiError::Conflict {
                code: "already_serving",
                message: format!("v{version} is already the serving version"),
            });
        }
    }
    let strategy = Strategy::Immediate;
    let reason = format!("rollback to v{version}");
    let event = NewEvent::new("RollbackStarted", &p.name, reason.clone())
        .app(ns.as_str(), app.as_str())
        .details(json!({"target_version": version, "strategy": strategy, "rollback": true}));
    let superseded =
        NewEvent::new("ReleaseSuperseded", &p.name, reason).app(ns.as_str(), app.as_str());
    let release = s
        .store
        .replace_release(ns, app, version, &strategy, event, superseded)
        .await
        .map_err(|e| match e {
            StoreError::NotFound {
                kind: "version", ..
            } => ApiError::Validation(Invalid::new(
                "version",
                format!("the app has no version {version}"),
            )),
            other => other.into(),
        })?;
    wake_all(s);
    Ok(release)
}

fn first_page() -> PageRequest {
    PageRequest {
        limit: 50,
        cursor: None,
    }
}

/// The version to roll back to by default: the active release's stable version, or the one
/// the release that made the current version serve replaced.
async fn previous_version(
    s: &AppState,
    ns: &Name,
    app: &Name,
    current: Option<u32>,
) -> Result<u32, ApiError> {
    let releases = s.store.list_releases(ns, app, &first_page()).await?.items;
    if let Some(active) = releases.iter().find(|r| r.state.is_active()) {
        if let Some(stable) = active.progress.stable_version.or(current) {
            return Ok(stable);
        }
    }
    releases
        .iter()
        .filter(|r| r.state == ReleaseState::Succeeded && Some(r.target_version) == current)
        .find_map(|r| {
            r.progress
                .stable_version
                .or_else(|| r.from_versions.last().copied())
        })
        .ok_or_else(|| {
            ApiError::Validation(Invalid::new(
                "version",
                "the app has no earlier serving version; name one",
            ))
        })
}

fn wake_all(s: &AppState) {
    s.release_wake.notify_one();
    s.runtime_wake.notify_one();
    s.routes_wake.notify_one();
}
