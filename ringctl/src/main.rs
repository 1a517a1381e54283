//! `ringctl`: ringlb's admin CLI over the control plane's gRPC API
//! (`ringlb.v1.ControlPlane`, `proto/proto/ringlb.proto`), in the manner of
//! `etcdctl` and `kubectl`: one subcommand per task, a table for people,
//! `--json` for scripts, and exit codes a script can branch on.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use ringlb_proto::v1;
use ringlb_proto::v1::control_plane_client::ControlPlaneClient;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request};

/// The control plane's gRPC address by default (the control plane's own
/// `--grpc-listen` default).
const DEFAULT_ADDR: &str = "http://127.0.0.1:50051";
/// How long connecting to the control plane may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Exit status when the control plane cannot be reached (sysexits'
/// `EX_UNAVAILABLE`).
const EXIT_UNAVAILABLE: u8 = 69;
/// Exit status when the admin token is missing or wrong (`EX_NOPERM`).
const EXIT_UNAUTHENTICATED: u8 = 77;
/// Exit status when the control plane refused the request as invalid: a
/// bad argument, an unknown or taken name, more than there is
/// (`EX_DATAERR`).
const EXIT_INVALID: u8 = 65;
/// Exit status for any other failure.
const EXIT_FAILURE: u8 = 1;

/// Admin client for ringlb's control plane (its gRPC API).
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    after_help = "Exit status: 0 done; 2 bad usage; 65 the control plane refused the request as invalid (bad argument, unknown or taken name, not enough replicas); 69 the control plane cannot be reached; 77 missing or wrong admin token; 1 anything else."
)]
struct Cli {
    /// The control plane's gRPC address (`http://host:port` or `host:port`).
    #[arg(long, global = true, env = "RINGLB_CONTROL_PLANE_GRPC", default_value = DEFAULT_ADDR)]
    addr: String,

    /// Admin token sent as `Authorization: Bearer <token>` (needed for
    /// add, rm and config set when the control plane has one); the same
    /// variable as the control plane's `--admin-token`.
    #[arg(
        long,
        global = true,
        env = "RINGLB_ADMIN_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,

    /// Print JSON instead of a table (`watch`: one JSON object per line).
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replicas (id, address, state, virtual nodes, key space, live load),
    /// data planes and the ring version each applied.
    Status,
    /// The replicas on the ring, oldest first.
    List,
    /// Add N replicas: the given names first, generated ones for the rest.
    Add(AddArgs),
    /// Remove N replicas: the given names first, random others for the rest.
    Rm(Scale),
    /// One line per ring version, from the current one on, until Ctrl-C.
    Watch,
    /// The ring configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Args)]
struct Scale {
    /// How many replicas.
    n: u32,
    /// A replica name (repeatable); at most N.
    #[arg(long = "name")]
    names: Vec<String>,
}

#[derive(Debug, Args)]
struct AddArgs {
    #[command(flatten)]
    scale: Scale,
    /// A ring weight (repeatable): none, or one per new replica (1 to 100),
    /// in name order (given names first). Weight w gives K x w virtual nodes.
    #[arg(long = "weight")]
    weights: Vec<u32>,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the ring configuration in force.
    Get,
    /// Change some of the ring configuration (a new ring version); what is
    /// not given keeps its value.
    Set(ConfigSet),
}

#[derive(Debug, Args)]
struct ConfigSet {
    /// Slots on the ring (M).
    #[arg(long)]
    slots: Option<u32>,
    /// Virtual nodes per replica (K).
    #[arg(long)]
    vnodes: Option<u32>,
    /// Request hash: spec, splitmix64, murmur3, xxh3.
    #[arg(long)]
    request_hash: Option<String>,
    /// Virtual-node hash: spec, splitmix64, murmur3, xxh3.
    #[arg(long)]
    vnode_hash: Option<String>,
    /// Collision rule: linear, quadratic, shared.
    #[arg(long)]
    probing: Option<String>,
    /// Request key: request-id, random, client-ip, path.
    #[arg(long)]
    key_source: Option<String>,
    /// Bounded load: percent of the average in-flight requests (0 = off,
    /// else at least 100).
    #[arg(long)]
    hash_balance_factor: Option<u32>,
    /// Outlier detection: consecutive failures that eject a replica (0 = off).
    #[arg(long)]
    outlier_consecutive_failures: Option<u32>,
    /// Outlier detection: the first ejection's length, in milliseconds.
    #[arg(long)]
    outlier_base_ejection_ms: Option<u32>,
    /// Outlier detection: the most replicas ejected at once, in percent.
    #[arg(long)]
    outlier_max_ejection_percent: Option<u32>,
    /// Slow start window, in milliseconds (0 = off).
    #[arg(long)]
    slow_start_ms: Option<u32>,
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
enum CtlError {
    #[error("'{addr}' is not a gRPC address: {source}")]
    Address {
        addr: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("cannot connect to the control plane at {addr}: {}", chain(.source))]
    Connect {
        addr: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("{call}: {}", describe(.source))]
    Call {
        call: &'static str,
        #[source]
        source: tonic::Status,
    },
    #[error("the admin token is not a valid header value")]
    Token(#[source] tonic::metadata::errors::InvalidMetadataValue),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

impl CtlError {
    fn exit_code(&self) -> u8 {
        match self {
            CtlError::Connect { .. } => EXIT_UNAVAILABLE,
            CtlError::Address { .. } | CtlError::Token(_) => EXIT_INVALID,
            CtlError::Call { source, .. } => match source.code() {
                Code::Unauthenticated | Code::PermissionDenied => EXIT_UNAUTHENTICATED,
                Code::InvalidArgument
                | Code::FailedPrecondition
                | Code::AlreadyExists
                | Code::NotFound
                | Code::OutOfRange => EXIT_INVALID,
                Code::Unavailable => EXIT_UNAVAILABLE,
                _ => EXIT_FAILURE,
            },
            CtlError::Output(_) => EXIT_FAILURE,
        }
    }
}

/// An error and its sources, `: `-separated (tonic's transport errors say
/// little at the top).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

fn describe(status: &tonic::Status) -> String {
    match status.code() {
        Code::Unauthenticated => format!(
            "unauthenticated: {} (pass --token or set RINGLB_ADMIN_TOKEN)",
            status.message()
        ),
        Code::Unavailable => format!("control plane unavailable: {}", status.message()),
        code => format!("{}: {}", code.description(), status.message()),
    }
}

/// A connected client and the token to send.
struct Ctl {
    client: ControlPlaneClient<Channel>,
    token: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl Ctl {
    async fn connect(addr: &str, token: Option<&str>) -> Result<Ctl, CtlError> {
        let url = if addr.contains("://") {
            addr.to_owned()
        } else {
            format!("http://{addr}")
        };
        let endpoint = Endpoint::from_shared(url.clone()).map_err(|source| CtlError::Address {
            addr: addr.to_owned(),
            source,
        })?;
        let channel = endpoint
            .connect_timeout(CONNECT_TIMEOUT)
            .connect()
            .await
            .map_err(|source| CtlError::Connect { addr: url, source })?;
        let token = token
            .filter(|t| !t.is_empty())
            .map(|t| format!("Bearer {t}").parse().map_err(CtlError::Token))
            .transpose()?;
        Ok(Ctl {
            client: ControlPlaneClient::new(channel),
            token,
        })
    }

    /// `message` with the authorization metadata.
    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(token) = &self.token {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
        }
        request
    }
}

/// A replica as `list`, `add` and `rm` print it.
#[derive(Debug, Serialize)]
struct ReplicaOut {
    name: String,
    id: u64,
    address: String,
    state: &'static str,
}

#[derive(Debug, Serialize)]
struct ReplicaSetOut {
    version: u64,
    n: u32,
    replicas: Vec<ReplicaOut>,
}

impl From<v1::ReplicaSet> for ReplicaSetOut {
    fn from(set: v1::ReplicaSet) -> Self {
        ReplicaSetOut {
            version: set.version,
            n: set.n,
            replicas: set
                .replicas
                .into_iter()
                .map(|r| ReplicaOut {
                    state: match v1::ReplicaState::try_from(r.state) {
                        Ok(v1::ReplicaState::Serving) => "serving",
                        _ => "unknown",
                    },
                    name: r.name,
                    id: r.id,
                    address: r.address,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize)]
struct ConfigOut {
    slots: u32,
    vnodes: u32,
    request_hash: String,
    vnode_hash: String,
    probing: String,
    key_source: String,
}

impl From<v1::RingConfig> for ConfigOut {
    fn from(c: v1::RingConfig) -> Self {
        ConfigOut {
            slots: c.slots,
            vnodes: c.vnodes,
            request_hash: c.request_hash,
            vnode_hash: c.vnode_hash,
            probing: c.probing,
            key_source: c.key_source,
        }
    }
}

impl std::fmt::Display for ConfigOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "slots={} vnodes={} request_hash={} vnode_hash={} probing={} key_source={}",
            self.slots,
            self.vnodes,
            self.request_hash,
            self.vnode_hash,
            self.probing,
            self.key_source
        )
    }
}

#[derive(Debug, Serialize)]
struct SnapshotOut {
    version: u64,
    config: Option<ConfigOut>,
    replicas: Vec<String>,
}

#[derive(Debug, Serialize)]
struct ReplicaStatusOut {
    name: String,
    id: u64,
    address: String,
    state: String,
    vnodes: u32,
    owned_slots: u64,
    rps: f64,
    share: f64,
    heartbeat_misses: u32,
}

#[derive(Debug, Serialize)]
struct DataPlaneOut {
    id: String,
    applied: u64,
    rps: f64,
}

#[derive(Debug, Serialize)]
struct StatusOut {
    version: u64,
    config: Option<ConfigOut>,
    replicas: Vec<ReplicaStatusOut>,
    data_planes: Vec<DataPlaneOut>,
}

/// Print `value` as JSON, or `human` for people.
fn emit(
    json: bool,
    value: &impl Serialize,
    human: impl FnOnce() -> String,
) -> Result<(), CtlError> {
    let mut out = std::io::stdout().lock();
    if json {
        // Plain data with string keys: serialising cannot fail.
        let text = serde_json::to_string(value).unwrap_or_default();
        writeln!(out, "{text}")?;
    } else {
        write!(out, "{}", human())?;
    }
    out.flush()?;
    Ok(())
}

/// Columns padded to their widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ");
        text.truncate(text.trim_end().len());
        text.push('\n');
        text
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

fn replica_set_text(set: &ReplicaSetOut) -> String {
    let rows: Vec<Vec<String>> = set
        .replicas
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.id.to_string(),
                r.address.clone(),
                r.state.to_owned(),
            ]
        })
        .collect();
    format!(
        "ring version {}, {} replicas\n{}",
        set.version,
        set.n,
        table(&["NAME", "ID", "ADDRESS", "STATE"], &rows)
    )
}

fn status_text(status: &StatusOut) -> String {
    let config = status
        .config
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    let slots = status.config.as_ref().map_or(0, |c| c.slots).max(1);
    let replicas: Vec<Vec<String>> = status
        .replicas
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.id.to_string(),
                r.address.clone(),
                if r.heartbeat_misses > 0 {
                    format!("{} ({} missed)", r.state, r.heartbeat_misses)
                } else {
                    r.state.clone()
                },
                r.vnodes.to_string(),
                format!("{:.1}%", 100.0 * r.owned_slots as f64 / f64::from(slots)),
                format!("{:.1}", r.rps),
                format!("{:.1}%", 100.0 * r.share),
            ]
        })
        .collect();
    let planes: Vec<Vec<String>> = status
        .data_planes
        .iter()
        .map(|d| {
            vec![
                d.id.clone(),
                d.applied.to_string(),
                if d.applied == status.version {
                    "yes".into()
                } else {
                    "no".into()
                },
                format!("{:.1}", d.rps),
            ]
        })
        .collect();
    format!(
        "ring version {}  {config}\n\n{}\n{}",
        status.version,
        table(
            &[
                "REPLICA", "ID", "ADDRESS", "STATE", "VNODES", "KEYSPACE", "REQ/S", "SHARE"
            ],
            &replicas
        ),
        table(&["DATA PLANE", "APPLIED", "CURRENT", "REQ/S"], &planes)
    )
}

async fn run(cli: Cli) -> Result<(), CtlError> {
    let mut ctl = Ctl::connect(&cli.addr, cli.token.as_deref()).await?;
    let json = cli.json;
    let call = |call: &'static str| move |source| CtlError::Call { call, source };
    // `list`, `add` and `rm` all answer the replica set.
    let replica_set =
        |name: &'static str, reply: Result<tonic::Response<v1::ReplicaSet>, tonic::Status>| {
            let set: ReplicaSetOut = reply.map_err(call(name))?.into_inner().into();
            emit(json, &set, || replica_set_text(&set))
        };
    match cli.command {
        Command::List => {
            let request = ctl.request(v1::ListReplicasRequest {});
            replica_set("list", ctl.client.list_replicas(request).await)
        }
        Command::Add(add) => {
            let request = ctl.request(v1::AddReplicasRequest {
                n: add.scale.n,
                hostnames: add.scale.names,
                weights: add.weights,
            });
            replica_set("add", ctl.client.add_replicas(request).await)
        }
        Command::Rm(scale) => {
            let request = ctl.request(v1::RemoveReplicasRequest {
                n: scale.n,
                hostnames: scale.names,
            });
            replica_set("rm", ctl.client.remove_replicas(request).await)
        }
        Command::Status => {
            let request = ctl.request(v1::GetStatusRequest {});
            let report = ctl
                .client
                .get_status(request)
                .await
                .map_err(call("status"))?
                .into_inner();
            let status = StatusOut {
                version: report.version,
                config: report.config.map(Into::into),
                replicas: report
                    .replicas
                    .into_iter()
                    .map(|r| ReplicaStatusOut {
                        name: r.name,
                        id: r.id,
                        address: r.address,
                        state: r.state,
                        vnodes: r.vnodes,
                        owned_slots: r.owned_slots,
                        rps: r.rps,
                        share: r.share,
                        heartbeat_misses: r.heartbeat_misses,
                    })
                    .collect(),
                data_planes: report
                    .data_planes
                    .into_iter()
                    .map(|d| DataPlaneOut {
                        id: d.id,
                        applied: d.applied,
                        rps: d.rps,
                    })
                    .collect(),
            };
            emit(json, &status, || status_text(&status))
        }
        Command::Watch => {
            // An empty subscriber id: a passive observer, never waited for.
            let request = ctl.request(v1::WatchRingRequest {
                subscriber: String::new(),
                epoch: 0,
            });
            let mut stream = ctl
                .client
                .watch_ring(request)
                .await
                .map_err(call("watch"))?
                .into_inner();
            while let Some(snapshot) = stream.message().await.map_err(call("watch"))? {
                let out = SnapshotOut {
                    version: snapshot.version,
                    config: snapshot.config.map(Into::into),
                    replicas: snapshot.replicas.into_iter().map(|r| r.name).collect(),
                };
                emit(json, &out, || {
                    format!(
                        "version {}: {} replicas [{}] {}\n",
                        out.version,
                        out.replicas.len(),
                        out.replicas.join(", "),
                        out.config
                            .as_ref()
                            .map(ToString::to_string)
                            .unwrap_or_default()
                    )
                })?;
            }
            Ok(())
        }
        Command::Config(ConfigCommand::Get) => {
            let request = ctl.request(v1::GetRingConfigRequest {});
            let config: ConfigOut = ctl
                .client
                .get_ring_config(request)
                .await
                .map_err(call("config get"))?
                .into_inner()
                .into();
            emit(json, &config, || format!("{config}\n"))
        }
        Command::Config(ConfigCommand::Set(set)) => {
            let request = ctl.request(v1::SetRingConfigRequest {
                slots: set.slots,
                vnodes: set.vnodes,
                request_hash: set.request_hash,
                vnode_hash: set.vnode_hash,
                probing: set.probing,
                key_source: set.key_source,
                hash_balance_factor: set.hash_balance_factor,
                outlier_consecutive_failures: set.outlier_consecutive_failures,
                outlier_base_ejection_ms: set.outlier_base_ejection_ms,
                outlier_max_ejection_percent: set.outlier_max_ejection_percent,
                slow_start_ms: set.slow_start_ms,
            });
            let snapshot = ctl
                .client
                .set_ring_config(request)
                .await
                .map_err(call("config set"))?
                .into_inner();
            let out = SnapshotOut {
                version: snapshot.version,
                config: snapshot.config.map(Into::into),
                replicas: snapshot.replicas.into_iter().map(|r| r.name).collect(),
            };
            emit(json, &out, || {
                format!(
                    "ring version {}: {}\n",
                    out.version,
                    out.config
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default()
                )
            })
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("ringctl: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringctl: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
