//! The admin token: when set, every call that changes the cluster (`/add`,
//! `/rm`, ring-config changes, the mutating gRPC calls) needs
//! `Authorization: Bearer <token>`. Reads (`/rep`, `GET /config`, list,
//! watch) stay open.

use std::sync::Arc;

/// The token guarding mutating calls; `None` leaves them open.
#[derive(Clone, Debug, Default)]
pub struct AdminToken(Option<Arc<str>>);

impl AdminToken {
    /// `None` or an empty token disables the check.
    pub fn new(token: Option<String>) -> AdminToken {
        AdminToken(token.filter(|t| !t.is_empty()).map(Arc::from))
    }

    pub fn is_enabled(&self) -> bool {
        self.0.is_some()
    }

    /// Whether an `Authorization` header value grants access.
    pub fn permits(&self, authorization: Option<&[u8]>) -> bool {
        let Some(token) = &self.0 else {
            return true;
        };
        authorization
            .and_then(|value| value.strip_prefix(b"Bearer "))
            .is_some_and(|given| constant_time_eq(given, token.as_bytes()))
    }
}

/// Compare without an early exit on the first differing byte, so the time
/// taken does not tell an attacker how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_without_a_token() {
        assert!(AdminToken::new(None).permits(None));
        assert!(AdminToken::new(Some(String::new())).permits(None));
    }

    #[test]
    fn bearer_token_required_when_set() {
        let token = AdminToken::new(Some("s3cret".into()));
        assert!(token.permits(Some(b"Bearer s3cret")));
        assert!(!token.permits(None));
        assert!(!token.permits(Some(b"Bearer s3cre")));
        assert!(!token.permits(Some(b"Bearer s3cret ")));
        assert!(!token.permits(Some(b"bearer s3cret")));
        assert!(!token.permits(Some(b"s3cret")));
    }
}
