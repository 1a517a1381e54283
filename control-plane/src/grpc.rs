//! The gRPC API (`ringlb.v1.ControlPlane`), plus server reflection (v1 and
//! v1alpha, so grpcurl 1.8 and newer work) and the standard health service.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use ringlb_api::admin::ScaleRequest;
use ringlb_proto::v1;
use ringlb_proto::v1::control_plane_server::{ControlPlane, ControlPlaneServer};
use ringlb_ring::RingConfigPatch;
use tokio_stream::wrappers::WatchStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::auth::AdminToken;
use crate::error::ManagerError;
use crate::manager::Manager;

/// The ControlPlane service over a manager.
pub struct ControlPlaneService {
    manager: Arc<Manager>,
    /// Ends every watch stream when the server shuts down (a graceful
    /// shutdown otherwise waits for streams that never end).
    stop: CancellationToken,
    token: AdminToken,
}

impl ControlPlaneService {
    pub fn new(manager: Arc<Manager>, stop: CancellationToken, token: AdminToken) -> Self {
        ControlPlaneService {
            manager,
            stop,
            token,
        }
    }

    /// Refuse a mutating call without the admin token.
    fn admit<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let authorization = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes());
        if self.token.permits(authorization) {
            Ok(())
        } else {
            Err(Status::unauthenticated("Missing or invalid admin token"))
        }
    }
}

fn status_of(error: ManagerError) -> Status {
    let message = error.to_string();
    match error {
        ManagerError::NotHealthy { .. } => Status::unavailable(message),
        ManagerError::Backend(_) => Status::internal(message),
        ManagerError::UnknownName(_) => Status::not_found(message),
        ManagerError::NameTaken(_) => Status::already_exists(message),
        ManagerError::NotEnough { .. } | ManagerError::TooMany { .. } => {
            Status::failed_precondition(message)
        }
        ManagerError::Invalid(_) | ManagerError::Config(_) => Status::invalid_argument(message),
    }
}

/// Validate `n`, `hostnames` and `weights` of a gRPC scale request exactly
/// as the HTTP API validates its JSON body.
fn scale_request(
    op: ringlb_api::admin::AdminOp,
    n: u32,
    hostnames: Vec<String>,
    weights: Vec<u32>,
    max_n: usize,
) -> Result<ScaleRequest, Status> {
    let weights = weights.into_iter().map(u64::from).collect();
    ringlb_api::admin::validate_scale_request(op, u64::from(n), hostnames, weights, max_n as u64)
        .map_err(|e| Status::invalid_argument(e.to_string()))
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<v1::RingSnapshot, Status>> + Send>>;

#[tonic::async_trait]
impl ControlPlane for ControlPlaneService {
    async fn list_replicas(
        &self,
        _request: Request<v1::ListReplicasRequest>,
    ) -> Result<Response<v1::ReplicaSet>, Status> {
        let epoch = self.manager.epoch().get();
        Ok(Response::new(self.manager.current().replica_set(epoch)))
    }

    async fn add_replicas(
        &self,
        request: Request<v1::AddReplicasRequest>,
    ) -> Result<Response<v1::ReplicaSet>, Status> {
        self.admit(&request)?;
        let r = request.into_inner();
        let max = self.manager.settings().max_replicas;
        let scale = scale_request(
            ringlb_api::admin::AdminOp::Add,
            r.n,
            r.hostnames,
            r.weights,
            max,
        )?;
        let state = self.manager.add(scale).await.map_err(status_of)?;
        Ok(Response::new(state.replica_set(self.manager.epoch().get())))
    }

    async fn remove_replicas(
        &self,
        request: Request<v1::RemoveReplicasRequest>,
    ) -> Result<Response<v1::ReplicaSet>, Status> {
        self.admit(&request)?;
        let r = request.into_inner();
        let max = self.manager.settings().max_replicas;
        let scale = scale_request(
            ringlb_api::admin::AdminOp::Remove,
            r.n,
            r.hostnames,
            Vec::new(),
            max,
        )?;
        let state = self.manager.remove(scale).await.map_err(status_of)?;
        Ok(Response::new(state.replica_set(self.manager.epoch().get())))
    }

    type WatchRingStream = SnapshotStream;

    async fn watch_ring(
        &self,
        request: Request<v1::WatchRingRequest>,
    ) -> Result<Response<Self::WatchRingStream>, Status> {
        // Watching is a read, but a subscriber (a non-empty id) is waited
        // for by every change and may raise the epoch: only with the token.
        if !request.get_ref().subscriber.is_empty() {
            self.admit(&request)?;
        }
        let v1::WatchRingRequest { subscriber, epoch } = request.into_inner();
        if !subscriber.is_empty() {
            // Before the first snapshot: it must not order before the ring
            // this data plane serves (see `crate::epoch`).
            self.manager.epoch().raise_above(epoch);
        }
        let registration =
            (!subscriber.is_empty()).then(|| self.manager.subscribers().register(&subscriber));
        let manager = self.manager.clone();
        let stream = WatchStream::new(self.manager.watch())
            .map(move |state| {
                // The registration lives as long as the stream: when the data
                // plane hangs up, tonic drops the stream and it deregisters.
                let _keep = &registration;
                // Read per snapshot: the epoch only grows, so (epoch,
                // version) grows along the stream.
                Ok(state.snapshot(manager.epoch().get()))
            })
            .take_until(self.stop.clone().cancelled_owned());
        Ok(Response::new(Box::pin(stream)))
    }

    async fn ack_ring(
        &self,
        request: Request<v1::AckRingRequest>,
    ) -> Result<Response<v1::AckRingResponse>, Status> {
        self.admit(&request)?;
        let r = request.into_inner();
        let draining = r
            .draining
            .into_iter()
            .map(|d| (d.name, d.requests))
            .collect();
        self.manager
            .subscribers()
            .ack(&r.subscriber, r.version, draining);
        Ok(Response::new(v1::AckRingResponse {}))
    }

    async fn report_load(
        &self,
        request: Request<v1::ReportLoadRequest>,
    ) -> Result<Response<v1::ReportLoadResponse>, Status> {
        self.admit(&request)?;
        let r = request.into_inner();
        if r.subscriber.is_empty() {
            return Err(Status::invalid_argument("subscriber must not be empty"));
        }
        self.manager.live().report(
            &r.subscriber,
            r.version,
            r.replicas
                .into_iter()
                .map(|load| (load.name, load.requests, load.errors)),
        );
        Ok(Response::new(v1::ReportLoadResponse {}))
    }

    async fn get_status(
        &self,
        _request: Request<v1::GetStatusRequest>,
    ) -> Result<Response<v1::StatusReport>, Status> {
        let state = crate::ui::state(&self.manager);
        Ok(Response::new(v1::StatusReport {
            version: state.version,
            config: Some((&state.config).into()),
            replicas: state
                .replicas
                .into_iter()
                .map(|r| v1::ReplicaStatus {
                    vnodes: state.config.vnodes * r.weight,
                    name: r.name,
                    id: r.id,
                    address: r.address,
                    state: r.state.to_owned(),
                    owned_slots: r.owned_slots,
                    rps: r.load.rps,
                    share: r.load.share,
                    heartbeat_misses: r.heartbeat.misses,
                })
                .collect(),
            data_planes: state
                .data_planes
                .into_iter()
                .map(|d| v1::DataPlaneStatus {
                    rps: d.load.map_or(0.0, |l| l.rps),
                    id: d.id,
                    applied: d.applied,
                })
                .collect(),
        }))
    }

    async fn get_ring_config(
        &self,
        _request: Request<v1::GetRingConfigRequest>,
    ) -> Result<Response<v1::RingConfig>, Status> {
        Ok(Response::new((&self.manager.current().config).into()))
    }

    async fn set_ring_config(
        &self,
        request: Request<v1::SetRingConfigRequest>,
    ) -> Result<Response<v1::RingSnapshot>, Status> {
        self.admit(&request)?;
        let patch = RingConfigPatch::try_from(request.get_ref())
            .map_err(|e| status_of(ManagerError::from(e.0)))?;
        let state = self
            .manager
            .set_config(|base| patch.apply_to(base))
            .await
            .map_err(status_of)?;
        Ok(Response::new(state.snapshot(self.manager.epoch().get())))
    }
}

/// Serve the ControlPlane, reflection and health services on `listener`
/// until `shutdown` resolves.
///
/// # Errors
/// tonic's transport error when the server fails.
pub async fn serve(
    manager: Arc<Manager>,
    listener: tokio::net::TcpListener,
    stop: CancellationToken,
    token: AdminToken,
) -> Result<(), tonic::transport::Error> {
    // Each reflection service also describes the other version's, so that
    // a client of either (grpcurl speaks v1alpha) lists both.
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(ringlb_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| {
            tracing::error!(error = %e, "reflection v1 unavailable");
            e
        });
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(ringlb_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .build_v1alpha();
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<ControlPlaneServer<ControlPlaneService>>()
        .await;

    let mut router = tonic::transport::Server::builder()
        .add_service(ControlPlaneServer::new(ControlPlaneService::new(
            manager,
            stop.clone(),
            token,
        )))
        .add_service(health_service);
    if let Ok(reflection) = reflection_v1 {
        router = router.add_service(reflection);
    }
    if let Ok(reflection) = reflection_v1alpha {
        router = router.add_service(reflection);
    }
    router
        // No Nagle (set by the accept loop): a ring snapshot must not wait
        // for the previous one's ACK.
        .serve_with_incoming_shutdown(incoming(listener), stop.cancelled_owned())
        .await
}

/// The connections of `listener`, from the workspace's one accept loop
/// ([`ringlb_rt::accept`]: backoff on errors, `TCP_NODELAY`).
fn incoming(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = Result<tokio::net::TcpStream, std::io::Error>> {
    futures::stream::unfold(listener, |listener| async move {
        let (stream, _) = ringlb_rt::accept(&listener).await;
        Some((Ok(stream), listener))
    })
}
