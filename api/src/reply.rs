//! The reply envelope of SPEC.md: `{"message": <message>, "status": "successful"}`
//! or `{"message": "<Error> …", "status": "failure"}`.

use serde::Serialize;

/// The `message` of `/rep`, `/add` and `/rm` replies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReplicaList {
    #[serde(rename = "N")]
    pub n: usize,
    pub replicas: Vec<String>,
}

#[derive(Serialize)]
struct Envelope<'a, M: Serialize + ?Sized> {
    message: &'a M,
    status: &'static str,
}

/// The body of a successful reply carrying `message`.
pub fn success<M: Serialize + ?Sized>(message: &M) -> Vec<u8> {
    crate::json::to_vec(&Envelope {
        message,
        status: "successful",
    })
}

/// The body of an error reply; `what` is prefixed with `<Error> `.
pub fn failure(what: &str) -> Vec<u8> {
    let message = format!("<Error> {what}");
    crate::json::to_vec(&Envelope {
        message: message.as_str(),
        status: "failure",
    })
}

/// The replica's `/home` body for the replica named `server_id`.
pub fn hello(server_id: &str) -> Vec<u8> {
    success(&format!("Hello from Server: {server_id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_match_the_spec_to_the_byte() {
        assert_eq!(
            hello("server-1"),
            br#"{"message": "Hello from Server: server-1", "status": "successful"}"#
        );
        let list = ReplicaList {
            n: 3,
            replicas: vec!["server-1".into(), "server-2".into(), "server-3".into()],
        };
        assert_eq!(
            success(&list),
            br#"{"message": {"N": 3, "replicas": ["server-1", "server-2", "server-3"]}, "status": "successful"}"#
        );
        assert_eq!(
            failure("No server replicas available"),
            br#"{"message": "<Error> No server replicas available", "status": "failure"}"#
        );
    }
}
