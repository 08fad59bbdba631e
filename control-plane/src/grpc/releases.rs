//! `tideway.v1.ReleaseService`: starting releases, reading and following them, and the
//! user's controls over an active one.

use tideway_api_types::ReleaseCreate;
use tideway_proto::api::v1::{
    AbortReleaseRequest, CreateReleaseRequest, GetReleaseRequest, ListReleasesRequest,
    ListReleasesResponse, PauseReleaseRequest, PromoteReleaseRequest, Release,
    ResumeReleaseRequest, RollbackRequest, WatchReleaseRequest, WatchReleaseResponse,
};
use tideway_proto::api::{release_to_proto, ReleaseService};
use tideway_rollout::Control;
use tonic::{Request, Response, Status};

use super::follow::{latest_event_ids, watch_release, Watching};
use super::tools::ToolsApi;
use super::tools::{app_names, authorize, invalid_argument, page, release_id, strategy_from_json};
use crate::api::error::ApiError;
use crate::domain::token::Action;
use crate::service::releases;

/// Events of the app a watch of a release replays when not told where to start.
const REPLAY: u32 = 500;

impl ToolsApi {
    async fn control<T>(
        &self,
        request: Request<T>,
        target: impl FnOnce(T) -> (String, String, i64, Control),
    ) -> Result<Response<Release>, Status> {
        let p = self.principal(&request).await?;
        let (ns, app, id, control) = target(request.into_inner());
        let (ns, app) = app_names(&ns, &app)?;
        let id = release_id(id)?;
        let release = releases::control(&self.state, &p, &ns, &app, id, control).await?;
        Ok(Response::new(release_to_proto(&release)))
    }
}

#[tonic::async_trait]
impl ReleaseService for ToolsApi {
    async fn create_release(
        &self,
        request: Request<CreateReleaseRequest>,
    ) -> Result<Response<Release>, Status> {
        let p = self.principal(&request).await?;
        let r = request.into_inner();
        let (ns, app) = app_names(&r.namespace, &r.app)?;
        let body = ReleaseCreate {
            target_version: r.target_version,
            strategy: strategy_from_json(&r.strategy_json)?,
            supersede: r.supersede,
        };
        let release = releases::start(&self.state, &p, &ns, &app, &body).await?;
        Ok(Response::new(release_to_proto(&release)))
    }

    async fn get_release(
        &self,
        request: Request<GetReleaseRequest>,
    ) -> Result<Response<Release>, Status> {
        let p = self.principal(&request).await?;
        let r = request.into_inner();
        let (ns, app) = app_names(&r.namespace, &r.app)?;
        let id = release_id(r.id)?;
        authorize(&p, Action::Read, &ns)?;
        let release = self
            .state
            .store
            .get_release(&ns, &app, id)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(release_to_proto(&release)))
    }

    async fn list_releases(
        &self,
        request: Request<ListReleasesRequest>,
    ) -> Result<Response<ListReleasesResponse>, Status> {
        let p = self.principal(&request).await?;
        let r = request.into_inner();
        let (ns, app) = app_names(&r.namespace, &r.app)?;
        let page = page(r.page_size, r.page_token)?;
        authorize(&p, Action::Read, &ns)?;
        let list = self
            .state
            .store
            .list_releases(&ns, &app, &page)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(ListReleasesResponse {
            releases: list.items.iter().map(release_to_proto).collect(),
            next_page_token: list.next_cursor.unwrap_or_default(),
        }))
    }

    type WatchReleaseStream = Watching<WatchReleaseResponse>;

    async fn watch_release(
        &self,
        request: Request<WatchReleaseRequest>,
    ) -> Result<Response<Self::WatchReleaseStream>, Status> {
        let p = self.principal(&request).await?;
        let r = request.into_inner();
        let (ns, app) = app_names(&r.namespace, &r.app)?;
        let id = release_id(r.id)?;
        if r.after_event_id.is_some_and(|a| a < 0) {
            return Err(invalid_argument("after_event_id", "must be 0 or more"));
        }
        authorize(&p, Action::Read, &ns)?;
        let store = self.state.store.as_ref();
        store
            .get_release(&ns, &app, id)
            .await
            .map_err(ApiError::from)?;
        let after = match r.after_event_id {
            Some(after) => after,
            // Just below the oldest of the app's latest events: the release's steps among
            // them are replayed.
            None => latest_event_ids(store, &ns, &app, REPLAY)
                .await
                .map_err(ApiError::from)?
                .last()
                .map_or(0, |oldest| oldest - 1),
        };
        Ok(Response::new(watch_release(
            self.state.clone(),
            ns,
            app,
            id,
            after,
            self.shutdown.clone(),
        )))
    }

    async fn promote_release(
        &self,
        request: Request<PromoteReleaseRequest>,
    ) -> Result<Response<Release>, Status> {
        self.control(request, |r| {
            (r.namespace, r.app, r.id, Control::Promote { full: r.full })
        })
        .await
    }

    async fn pause_release(
        &self,
        request: Request<PauseReleaseRequest>,
    ) -> Result<Response<Release>, Status> {
        self.control(request, |r| (r.namespace, r.app, r.id, Control::Pause))
            .await
    }

    async fn resume_release(
        &self,
        request: Request<ResumeReleaseRequest>,
    ) -> Result<Response<Release>, Status> {
        self.control(request, |r| (r.namespace, r.app, r.id, Control::Resume))
            .await
    }

    async fn abort_release(
        &self,
        request: Request<AbortReleaseRequest>,
    ) -> Result<Response<Release>, Status> {
        self.control(request, |r| (r.namespace, r.app, r.id, Control::Abort))
            .await
    }

    async fn rollback(
        &self,
        request: Request<RollbackRequest>,
    ) -> Result<Response<Release>, Status> {
        let p = self.principal(&request).await?;
        let r = request.into_inner();
        let (ns, app) = app_names(&r.namespace, &r.app)?;
        let release = releases::rollback(&self.state, &p, &ns, &app, r.version).await?;
        Ok(Response::new(release_to_proto(&release)))
    }
}
