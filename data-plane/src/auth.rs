//! The admin token on the data plane's own calls to the control plane
//! (`WatchRing`, `AckRing`, `ReportLoad`). A control plane started with
//! `--admin-token` only takes subscriptions, acknowledgements and load
//! reports that carry it: otherwise anyone who reaches its gRPC port could
//! acknowledge for a data plane (cutting a graceful drain short) or pose as
//! one (delaying every change by the convergence timeout).

use ringlb_proto::v1::control_plane_client::ControlPlaneClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// A gRPC client of the control plane that sends the token, if any.
pub type Client = ControlPlaneClient<InterceptedService<Channel, Bearer>>;

/// `authorization: Bearer <token>` on every call, or nothing.
#[derive(Clone, Debug, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

/// A token that cannot be sent as gRPC metadata.
#[derive(Debug, thiserror::Error)]
#[error("the admin token must be visible ASCII (it is sent as gRPC metadata)")]
pub struct InvalidToken(#[source] tonic::metadata::errors::InvalidMetadataValue);

impl Bearer {
    /// The header for `token` (`None`: send none).
    ///
    /// # Errors
    /// [`InvalidToken`] for a token that is not visible ASCII.
    pub fn new(token: Option<&str>) -> Result<Bearer, InvalidToken> {
        token
            .map(|token| format!("Bearer {token}").parse().map_err(InvalidToken))
            .transpose()
            .map(Bearer)
    }

    /// A client of `channel` that sends this header.
    pub fn client(&self, channel: Channel) -> Client {
        ControlPlaneClient::with_interceptor(channel, self.clone())
    }
}

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}
