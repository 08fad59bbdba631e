//! `tideway.v1.AppService`: apps, versions, push-to-deploy, and following an app and its
//! logs.

use bytes::Bytes;
use futures_util::StreamExt as _;
use tideway_api_types::ReleaseCreate;
use tideway_proto::api::v1::{
    deploy_request, CreateAppRequest, DeployManifest, DeployRequest, DeployResponse, GetAppRequest,
    GetVersionRequest, ListAppsRequest, ListAppsResponse, ListVersionsRequest,
    ListVersionsResponse, LogLine, TailLogsRequest, WatchAppRequest, WatchAppResponse,
};
use tideway_proto::api::{
    self as convert, app_create_from_proto, app_to_proto, log_line_to_proto, release_to_proto,
    version_to_proto, AppService, MAX_DEPLOY_CHUNK,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status, Streaming};

use super::follow::{latest_event_ids, watch_app, Watching};
use super::status::to_status_with;
use super::tools::ToolsApi;
use super::tools::{app_names, authorize, invalid_argument, namespace, page, strategy_from_json};
use crate::api::error::ApiError;
use crate::domain::name::Name;
use crate::domain::token::{Action, Principal};
use crate::service::apps::{create_version, logs, LogRequest, MAX_LOG_TAIL};
use crate::service::releases::{start, validate_strategy};

/// Artifact formats a deploy may name; the intake recognises the format from the bytes.
const ARTIFACT_TYPES: &[&str] = &[
    "",
    "application/gzip",
    "application/x-gzip",
    "application/x-tar+gzip",
    "application/zip",
    "application/octet-stream",
];

/// What a deploy's manifest asks for, checked before any artifact byte is read.
struct DeployPlan {
    ns: Name,
    app: Name,
    release: Option<ReleaseCreate>,
}

fn plan_deploy(p: &Principal, m: DeployManifest) -> Result<DeployPlan, Status> {
    let (ns, app) = app_names(&m.namespace, &m.app)?;
    authorize(p, Action::Deploy, &ns)?;
    let media = m.content_type.split(';').next().unwrap_or("").trim();
    if !ARTIFACT_TYPES.contains(&media.to_ascii_lowercase().as_str()) {
        return Err(invalid_argument(
            "content_type",
            format!(
                "'{media}' is not an artifact type: use application/gzip (tar.gz), \
                 application/zip or application/octet-stream"
            ),
        ));
    }
    let release = if m.start_release {
        let strategy = strategy_from_json(&m.strategy_json)?;
        if let Some(strategy) = &strategy {
            validate_strategy(strategy)?;
        }
        Some(ReleaseCreate {
            // Set once the version exists.
            target_version: 0,
            strategy,
            supersede: m.supersede,
        })
    } else if !m.strategy_json.trim().is_empty() || m.supersede {
        return Err(invalid_argument(
            "start_release",
            "strategy_json and supersede apply only with start_release",
        ));
    } else {
        None
    };
    Ok(DeployPlan { ns, app, release })
}

/// Largest message `AppService` decodes: room for an oversized chunk to be refused with
/// `chunk_too_large` rather than a transport error.
pub const DEPLOY_MESSAGE_LIMIT: usize = 4 * MAX_DEPLOY_CHUNK;

fn too_large(size: Option<usize>) -> Status {
    let size = size.map_or_else(String::new, |n| format!(" of {n} bytes"));
    ApiError::PayloadTooLarge {
        code: "chunk_too_large",
        message: format!("a chunk{size} is larger than the limit of {MAX_DEPLOY_CHUNK} bytes"),
    }
    .into()
}

/// Moves a deploy's chunks into the intake's channel. A message that breaks the protocol
/// fails the deploy: the intake is handed an error (so it cleans up after itself) and the
/// pump answers the refusal. Ends when the client finishes or the intake stops reading.
async fn pump(
    mut messages: Streaming<DeployRequest>,
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> Result<(), Status> {
    loop {
        let refusal = match messages.message().await {
            Ok(None) => return Ok(()),
            // Larger than the server decodes at all (`DEPLOY_MESSAGE_LIMIT`).
            Err(status) if status.code() == Code::OutOfRange => too_large(None),
            Err(status) => {
                let _ = tx
                    .send(Err(std::io::Error::other(status.message().to_owned())))
                    .await;
                return Ok(());
            }
            Ok(Some(DeployRequest {
                part: Some(deploy_request::Part::Chunk(chunk)),
            })) if chunk.len() <= MAX_DEPLOY_CHUNK => {
                if tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                    // The intake has stopped reading (refused or failed); its answer is the one.
                    return Ok(());
                }
                continue;
            }
            Ok(Some(DeployRequest {
                part: Some(deploy_request::Part::Chunk(chunk)),
            })) => too_large(Some(chunk.len())),
            Ok(Some(_)) => invalid_argument(
                "part",
                "only the first message carries the manifest; later ones carry chunks",
            ),
        };
        let _ = tx
            .send(Err(std::io::Error::other(refusal.message().to_owned())))
            .await;
        return Err(refusal);
    }
}

#[tonic::async_trait]
impl AppService for ToolsApi {
    async fn get_app(
        &self,
        request: Request<GetAppRequest>,
    ) -> Result<Response<tideway_proto::api::v1::App>, Status> {
        let p = self.principal(&request).await?;
        let r = request.into_inner();
        let (ns, app) = app_names(&r.namespace, &r.app)?;
        authorize(&p, Action::Read, &ns)?;
        let record = self
            .state
            .store
            .get_app(&ns, &app)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(app_to_proto(&record.app)))
    }

    async fn list_apps(
        &self,
        request: Request<ListAppsRequest>,
    ) -> Result<Response<ListAppsResponse>, Status> {
        let p = self.principal(&request).await?;
        let r = request.into_inner();
        let ns = namespace(&r.namespace)?;
        let page = page(r.page_size, r.page_token)?;
        authorize(&p, Action::Read, &ns)?;
        let apps = self
            .state
            .store
            .list_apps(&ns, &page)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(ListAppsResponse {
            apps: apps.items.iter().map(app_to_proto).collect(),
            next_page_token: apps.next_cursor.unwrap_or_default(),
        }))
    }

    async fn create_app(
        &self,
        request: Request<CreateAppRequest>,
    ) -> Result<Response<tideway_proto::api::v1::App>, Status> {
        let p = self.principal(&request).await?;
        let r = request.into_inner();
        let ns = namespace(&r.namespace)?;
        let body = app_create_from_proto(r);
        let app = crate::service::apps::create_app(&self.state, &p, &ns, &body).await?;
        Ok(Response::new(app_to_proto(&app)))
    }

    async fn get_version(
        &self,
        request: Request<GetVersionRequest>,
    ) -> Result<Response<tideway_proto::api::v1::Version>, Status> {
        let p = self.principal(&request).await?;
        let r = request.into_inner();
        let (ns, app) = app_names(&r.namespace, &r.app)?;
        if r.number == 0 {
            return Err(invalid_argument("number", "versions are numbered from 1"));
        }
        authorize(&p, Action::Read, &ns)?;
        let version = self
            .state
            .store
            .get_version(&ns, &app, r.number)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(version_to_proto(&version)))
    }

    async fn list_versions(
        &self,
        request: Request<ListVersionsRequest>,
    ) -> Result<Response<ListVersionsResponse>, Status> {
        let p = self.principal(&request).await?;
        let r = request.into_inner();
        let (ns, app) = app_names(&r.namespace, &r.app)?;
        let page = page(r.page_size, r.page_token)?;
        authorize(&p, Action::Read, &ns)?;
        let versions = self
            .state
            .store
            .list_versions(&ns, &app, &page)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(ListVersionsResponse {
            versions: versions.items.iter().map(version_to_proto).collect(),
            next_page_token: versions.next_cursor.unwrap_or_default(),
        }))
    }

    async fn deploy(
        &self,
        request: Request<Streaming<DeployRequest>>,
    ) -> Result<Response<DeployResponse>, Status> {
        let p = self.principal(&request).await?;
        let mut messages = request.into_inner();
        let manifest = match messages.message().await? {
            Some(DeployRequest {
                part: Some(deploy_request::Part::Manifest(m)),
            }) => m,
            _ => {
                return Err(invalid_argument(
                    "manifest",
                    "the first message must carry the manifest",
                ))
            }
        };
        let plan = plan_deploy(&p, manifest)?;
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let pump = pump(messages, tx);
        let intake = create_version(
            &self.state,
            &plan.ns,
            &plan.app,
            &p.name,
            ReceiverStream::new(rx),
        );
        tokio::pin!(pump, intake);
        // The pump first: when the client broke the protocol, that is the answer, not the
        // intake's complaint about the cut-off artifact.
        let version = tokio::select! {
            biased;
            pumped = &mut pump => {
                // After a refusal the intake fails on the error it was handed; either way
                // it finishes (and cleans up) before the answer.
                let stored = intake.await;
                pumped?;
                stored?
            }
            stored = &mut intake => stored?,
        };
        let release = match plan.release {
            Some(body) => {
                let body = ReleaseCreate {
                    target_version: version.number,
                    ..body
                };
                let release = start(&self.state, &p, &plan.ns, &plan.app, &body)
                    .await
                    .map_err(|e| to_status_with(e, &[("version", version.number.to_string())]))?;
                Some(release_to_proto(&release))
            }
            None => None,
        };
        Ok(Response::new(DeployResponse {
            version: Some(version_to_proto(&version)),
            release,
        }))
    }

    type WatchAppStream = Watching<WatchAppResponse>;

    async fn watch_app(
        &self,
        request: Request<WatchAppRequest>,
    ) -> Result<Response<Self::WatchAppStream>, Status> {
        let p = self.principal(&request).await?;
        let r = request.into_inner();
        let (ns, app) = app_names(&r.namespace, &r.app)?;
        if r.after_event_id.is_some_and(|a| a < 0) {
            return Err(invalid_argument("after_event_id", "must be 0 or more"));
        }
        authorize(&p, Action::Read, &ns)?;
        let store = self.state.store.as_ref();
        store.get_app(&ns, &app).await.map_err(ApiError::from)?;
        let after = match r.after_event_id {
            Some(after) => after,
            None => latest_event_ids(store, &ns, &app, 1)
                .await
                .map_err(ApiError::from)?
                .first()
                .copied()
                .unwrap_or(0),
        };
        Ok(Response::new(watch_app(
            self.state.clone(),
            ns,
            app,
            after,
            self.shutdown.clone(),
        )))
    }

    type TailLogsStream = Watching<LogLine>;

    async fn tail_logs(
        &self,
        request: Request<TailLogsRequest>,
    ) -> Result<Response<Self::TailLogsStream>, Status> {
        let p = self.principal(&request).await?;
        let r = request.into_inner();
        let (ns, app) = app_names(&r.namespace, &r.app)?;
        let tail = match r.tail {
            Some(t) if t as usize > MAX_LOG_TAIL => {
                return Err(invalid_argument(
                    "tail",
                    format!("tail must be at most {MAX_LOG_TAIL}"),
                ))
            }
            t => t.map(|t| t as usize),
        };
        let since = match &r.since {
            Some(t) => Some(
                convert::timestamp_from_proto(t)
                    .ok_or_else(|| invalid_argument("since", "not a valid time"))?,
            ),
            None => None,
        };
        let request = LogRequest {
            instance: r.instance,
            since,
            tail,
            follow: r.follow.unwrap_or(true),
        };
        let feed = logs(&self.state, &p, &ns, &app, request).await?;
        let lines = feed
            .map(|line| Ok(log_line_to_proto(&line)))
            .take_until(self.shutdown.clone().cancelled_owned());
        Ok(Response::new(Box::pin(lines)))
    }
}
