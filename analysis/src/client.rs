//! Talking to a running ringlb: `/home` through the load balancer, the admin
//! endpoints, and the ring configuration on the control plane.

use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// The header the data plane takes a request's key from (`key_source = request-id`).
const REQUEST_ID: &str = "x-request-id";

/// A pooled HTTP/1.1 client for one system.
#[derive(Clone)]
pub struct Client {
    http: HyperClient<HttpConnector, Full<Bytes>>,
    /// The load balancer, `host:port`.
    pub lb: String,
    /// The control plane's admin API, `host:port` (for `/config`).
    pub admin: String,
}

/// One answer.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: String,
}

impl Client {
    pub fn new(lb: String, admin: String) -> Client {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Client { http, lb, admin }
    }

    /// `method path` with `body` to `addr`.
    pub async fn send(
        &self,
        addr: &str,
        method: Method,
        path: &str,
        body: &str,
    ) -> anyhow::Result<Answer> {
        self.send_with(addr, method, path, body, None).await
    }

    /// [`Client::send`], with an `X-Request-ID` header when `request_id` is given.
    async fn send_with(
        &self,
        addr: &str,
        method: Method,
        path: &str,
        body: &str,
        request_id: Option<u64>,
    ) -> anyhow::Result<Answer> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"));
        if let Some(id) = request_id {
            req = req.header(REQUEST_ID, id);
        }
        let req = req.body(Full::new(Bytes::from(body.to_owned())))?;
        let resp = tokio::time::timeout(Duration::from_secs(30), self.http.request(req))
            .await
            .context("no answer within 30 s")??;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Answer {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    /// `GET /home`: the name of the replica that answered.
    pub async fn home(&self) -> anyhow::Result<String> {
        let answer = self.send(&self.lb, Method::GET, "/home", "").await?;
        if answer.status != StatusCode::OK {
            bail!("/home answered {}: {}", answer.status, answer.body);
        }
        served_by(&answer.body)
    }

    /// `GET /home` with `X-Request-ID: id`: the name of the replica that answered.
    pub async fn home_keyed(&self, id: u64) -> anyhow::Result<String> {
        let answer = self
            .send_with(&self.lb, Method::GET, "/home", "", Some(id))
            .await?;
        if answer.status != StatusCode::OK {
            bail!(
                "/home (X-Request-ID: {id}) answered {}: {}",
                answer.status,
                answer.body
            );
        }
        served_by(&answer.body)
    }

    /// `GET http://addr/metrics`: a data plane's Prometheus text.
    pub async fn metrics(&self, addr: &str) -> anyhow::Result<String> {
        let answer = self.send(addr, Method::GET, "/metrics", "").await?;
        if answer.status != StatusCode::OK {
            bail!("GET {addr}/metrics answered {}", answer.status);
        }
        Ok(answer.body)
    }

    /// The `hash_balance_factor` in force, from `GET /config` on the control plane.
    pub async fn hash_balance_factor(&self) -> anyhow::Result<u32> {
        let answer = self.send(&self.admin, Method::GET, "/config", "").await?;
        if answer.status != StatusCode::OK {
            bail!("GET /config answered {}: {}", answer.status, answer.body);
        }
        let value: Value = serde_json::from_str(&answer.body)
            .with_context(|| format!("GET /config: not JSON: {}", answer.body))?;
        // A control plane that omits the field has bounded load off.
        match &value["message"]["config"]["hash_balance_factor"] {
            Value::Null => Ok(0),
            v => v
                .as_u64()
                .and_then(|f| u32::try_from(f).ok())
                .with_context(|| format!("GET /config: hash_balance_factor is {v}")),
        }
    }

    /// The replica names of `/rep`.
    pub async fn replicas(&self) -> anyhow::Result<Vec<String>> {
        let answer = self.send(&self.lb, Method::GET, "/rep", "").await?;
        replica_names(&answer)
    }

    /// `POST /add`; the replica names after it.
    pub async fn add(&self, n: usize) -> anyhow::Result<Vec<String>> {
        let answer = self
            .send(&self.lb, Method::POST, "/add", &format!(r#"{{"n": {n}}}"#))
            .await?;
        replica_names(&answer)
    }

    /// `DELETE /rm`; the replica names after it.
    pub async fn remove(&self, n: usize) -> anyhow::Result<Vec<String>> {
        let answer = self
            .send(&self.lb, Method::DELETE, "/rm", &format!(r#"{{"n": {n}}}"#))
            .await?;
        replica_names(&answer)
    }

    /// Add or remove replicas until there are `n`.
    pub async fn scale_to(&self, n: usize) -> anyhow::Result<Vec<String>> {
        let now = self.replicas().await?;
        match now.len() {
            len if len < n => self.add(n - len).await,
            len if len > n => self.remove(len - n).await,
            _ => Ok(now),
        }
    }

    /// `PUT /config` on the control plane with a partial ring configuration.
    pub async fn set_config(&self, patch: &str) -> anyhow::Result<()> {
        let answer = self
            .send(&self.admin, Method::PUT, "/config", patch)
            .await?;
        if answer.status != StatusCode::OK {
            bail!(
                "PUT /config {patch} answered {}: {}",
                answer.status,
                answer.body
            );
        }
        Ok(())
    }
}

/// The replica name in a `/home` body.
pub fn served_by(body: &str) -> anyhow::Result<String> {
    let value: Value = serde_json::from_str(body).with_context(|| format!("not JSON: {body}"))?;
    value["message"]
        .as_str()
        .and_then(|m| m.strip_prefix("Hello from Server: "))
        .map(str::to_owned)
        .with_context(|| format!("not a /home answer: {body}"))
}

fn replica_names(answer: &Answer) -> anyhow::Result<Vec<String>> {
    if answer.status != StatusCode::OK {
        bail!("admin request answered {}: {}", answer.status, answer.body);
    }
    let value: Value = serde_json::from_str(&answer.body)?;
    value["message"]["replicas"]
        .as_array()
        .context("no replica list")?
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_owned)
                .context("a name is not a string")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_replica_from_home() {
        assert_eq!(
            served_by(r#"{"message": "Hello from Server: server-2", "status": "successful"}"#).ok(),
            Some("server-2".to_owned())
        );
        assert!(served_by(r#"{"message": "<Error> x", "status": "failure"}"#).is_err());
        assert!(served_by("oops").is_err());
    }
}
