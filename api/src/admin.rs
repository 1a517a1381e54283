//! Parsing and validating the bodies of `POST /add` and `DELETE /rm`.
//!
//! Everything that can be checked without knowing the replica set is checked
//! here; what depends on it (a name already present, an unknown name, more
//! removals than replicas) is the control plane's job. Unknown fields are
//! ignored, like the reference implementation does.

use serde_json::Value;

/// Which admin request a body belongs to (their error texts differ).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminOp {
    Add,
    Remove,
}

/// A validated `/add` or `/rm` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScaleRequest {
    /// How many replicas to add or remove (at least 1).
    pub n: usize,
    /// Names to add or remove first, distinct and valid, at most `n`.
    pub hostnames: Vec<String>,
    /// `/add` only: empty (every weight 1) or one weight per new replica
    /// (`1..=MAX_WEIGHT`), in name order: `hostnames` first, then generated
    /// names.
    pub weights: Vec<u32>,
}

/// The largest replica weight (its virtual nodes are K × weight).
pub const MAX_WEIGHT: u64 = 100;

/// What is wrong with an admin request. `Display` is the text after `<Error> `.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    #[error("Malformed JSON body: {0}")]
    MalformedJson(String),
    #[error("Request body must be a JSON object")]
    NotAnObject,
    #[error("Missing field 'n'")]
    MissingN,
    #[error("Field 'n' must be an integer between 1 and {max}, got {got}")]
    BadN { got: String, max: u64 },
    #[error("Field 'hostnames' must be a list of strings, got {0}")]
    BadHostnames(String),
    #[error("Length of hostname list is more than newly added instances")]
    TooManyHostnamesToAdd,
    #[error("Length of hostname list is more than removable instances")]
    TooManyHostnamesToRemove,
    #[error(
        "Invalid hostname '{0}': a name is 1 to 63 characters of [a-zA-Z0-9_.-] starting with a letter or digit"
    )]
    InvalidHostname(String),
    #[error("Hostname '{0}' appears more than once in 'hostnames'")]
    DuplicateHostname(String),
    #[error("Field 'weights' must be a list of integers between 1 and {MAX_WEIGHT}, got {0}")]
    BadWeights(String),
    #[error("Length of weights list must equal n ({n}), got {got}")]
    WeightCount { n: usize, got: usize },
}

/// The longest replica name (Docker's container-name rule allows 63 here).
pub const MAX_NAME_LEN: usize = 63;

/// Whether `name` is a valid replica (container) name:
/// `[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}`.
pub fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    match bytes.first() {
        Some(first) if first.is_ascii_alphanumeric() => {
            bytes.len() <= MAX_NAME_LEN
                && bytes[1..]
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        }
        _ => false,
    }
}

/// Parse and validate an `/add` or `/rm` body. `max_n` caps `n`.
///
/// # Errors
/// The [`AdminError`] the HTTP API answers with (its text after
/// `<Error> `).
pub fn parse_scale_request(
    op: AdminOp,
    body: &[u8],
    max_n: u64,
) -> Result<ScaleRequest, AdminError> {
    let value: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        serde_json::from_slice(body).map_err(|e| AdminError::MalformedJson(e.to_string()))?
    };
    let Value::Object(fields) = value else {
        return Err(AdminError::NotAnObject);
    };
    let n = match fields.get("n") {
        None | Some(Value::Null) => return Err(AdminError::MissingN),
        Some(raw) => raw.as_u64().ok_or_else(|| AdminError::BadN {
            got: raw.to_string(),
            max: max_n,
        })?,
    };
    let hostnames = match fields.get("hostnames") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(name) => Ok(name.clone()),
                other => Err(AdminError::BadHostnames(other.to_string())),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => return Err(AdminError::BadHostnames(other.to_string())),
    };
    let weights = match (op, fields.get("weights")) {
        (AdminOp::Remove, _) | (_, None | Some(Value::Null)) => Vec::new(),
        (AdminOp::Add, Some(Value::Array(items))) => items
            .iter()
            .map(|item| {
                item.as_u64()
                    .ok_or_else(|| AdminError::BadWeights(item.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?,
        (AdminOp::Add, Some(other)) => return Err(AdminError::BadWeights(other.to_string())),
    };
    validate_scale_request(op, n, hostnames, weights, max_n)
}

/// Validate an `/add` or `/rm` request given as values (the gRPC API's
/// form; [`parse_scale_request`] ends here too): `n` between 1 and `max_n`,
/// at most `n` names, distinct, valid for `/add`; `weights` empty or `n` of
/// them, each `1..=MAX_WEIGHT`.
///
/// # Errors
/// The [`AdminError`] the HTTP API answers with for the same request.
pub fn validate_scale_request(
    op: AdminOp,
    n: u64,
    hostnames: Vec<String>,
    weights: Vec<u64>,
    max_n: u64,
) -> Result<ScaleRequest, AdminError> {
    if !(1..=max_n).contains(&n) {
        return Err(AdminError::BadN {
            got: n.to_string(),
            max: max_n,
        });
    }
    let n = usize::try_from(n).map_err(|_| AdminError::BadN {
        got: n.to_string(),
        max: max_n,
    })?;
    if hostnames.len() > n {
        return Err(match op {
            AdminOp::Add => AdminError::TooManyHostnamesToAdd,
            AdminOp::Remove => AdminError::TooManyHostnamesToRemove,
        });
    }
    for (i, name) in hostnames.iter().enumerate() {
        if op == AdminOp::Add && !is_valid_name(name) {
            return Err(AdminError::InvalidHostname(name.clone()));
        }
        if hostnames[..i].contains(name) {
            return Err(AdminError::DuplicateHostname(name.clone()));
        }
    }
    if let Some(bad) = weights.iter().find(|w| !(1..=MAX_WEIGHT).contains(*w)) {
        return Err(AdminError::BadWeights(bad.to_string()));
    }
    if !weights.is_empty() && weights.len() != n {
        return Err(AdminError::WeightCount {
            n,
            got: weights.len(),
        });
    }
    // In range: at most MAX_WEIGHT.
    let weights = weights.into_iter().map(|w| w as u32).collect();
    Ok(ScaleRequest {
        n,
        hostnames,
        weights,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(body: &str) -> Result<ScaleRequest, String> {
        parse_scale_request(AdminOp::Add, body.as_bytes(), 100).map_err(|e| e.to_string())
    }

    fn rm(body: &str) -> Result<ScaleRequest, String> {
        parse_scale_request(AdminOp::Remove, body.as_bytes(), 100).map_err(|e| e.to_string())
    }

    #[test]
    fn valid_bodies() {
        assert_eq!(
            add(r#"{"n": 4, "hostnames": ["S5", "S4", "S10", "S11"]}"#),
            Ok(ScaleRequest {
                n: 4,
                hostnames: vec!["S5".into(), "S4".into(), "S10".into(), "S11".into()],
                weights: vec![],
            })
        );
        assert_eq!(
            add(r#"{"n": 2}"#),
            Ok(ScaleRequest {
                n: 2,
                hostnames: vec![],
                weights: vec![],
            })
        );
        assert_eq!(
            add(r#"{"n": 2, "hostnames": ["S1"], "weights": [1, 3]}"#).map(|r| r.weights),
            Ok(vec![1, 3])
        );
        // /rm ignores weights like any unknown field.
        assert_eq!(
            rm(r#"{"n": 1, "weights": "x"}"#).map(|r| r.weights),
            Ok(vec![])
        );
        assert_eq!(
            rm(r#"{"n": 1, "hostnames": null, "extra": true}"#).map(|r| r.n),
            Ok(1)
        );
    }

    #[test]
    fn the_spec_texts_for_too_many_hostnames() {
        assert_eq!(
            add(r#"{"n": 1, "hostnames": ["a", "b"]}"#),
            Err("Length of hostname list is more than newly added instances".into())
        );
        assert_eq!(
            rm(r#"{"n": 1, "hostnames": ["a", "b"]}"#),
            Err("Length of hostname list is more than removable instances".into())
        );
    }

    #[test]
    fn bad_n() {
        assert_eq!(add("{}"), Err("Missing field 'n'".into()));
        assert_eq!(add(""), Err("Missing field 'n'".into()));
        for (n, shown) in [
            ("0", "0"),
            ("-1", "-1"),
            ("2.5", "2.5"),
            ("\"3\"", "\"3\""),
            ("101", "101"),
            ("1e30", "1e+30"),
            ("true", "true"),
        ] {
            let got = add(&format!(r#"{{"n": {n}}}"#)).unwrap_err();
            assert_eq!(
                got,
                format!("Field 'n' must be an integer between 1 and 100, got {shown}")
            );
        }
    }

    #[test]
    fn bad_json_and_shapes() {
        assert!(
            add("{\"n\": ")
                .unwrap_err()
                .starts_with("Malformed JSON body: ")
        );
        assert_eq!(add("[1]"), Err("Request body must be a JSON object".into()));
        assert_eq!(
            add(r#"{"n": 1, "hostnames": "S1"}"#),
            Err("Field 'hostnames' must be a list of strings, got \"S1\"".into())
        );
        assert_eq!(
            add(r#"{"n": 2, "hostnames": ["S1", 7]}"#),
            Err("Field 'hostnames' must be a list of strings, got 7".into())
        );
    }

    #[test]
    fn names_are_checked() {
        for bad in ["", "-x", "a b", "a/b", "é", &"x".repeat(64)] {
            let body = serde_json::json!({"n": 1, "hostnames": [bad]}).to_string();
            assert!(
                add(&body).unwrap_err().starts_with("Invalid hostname"),
                "{bad:?}"
            );
        }
        assert!(is_valid_name(&"x".repeat(63)));
        assert!(is_valid_name("S_1.b-2"));
        assert_eq!(
            add(r#"{"n": 2, "hostnames": ["S1", "S1"]}"#),
            Err("Hostname 'S1' appears more than once in 'hostnames'".into())
        );
        assert_eq!(
            rm(r#"{"n": 2, "hostnames": ["S1", "S1"]}"#),
            Err("Hostname 'S1' appears more than once in 'hostnames'".into())
        );
    }

    #[test]
    fn weights_are_one_per_new_replica_between_1_and_100() {
        for (body, error) in [
            (
                r#"{"n": 2, "weights": [1]}"#,
                "Length of weights list must equal n (2), got 1",
            ),
            (
                r#"{"n": 1, "weights": [0]}"#,
                "Field 'weights' must be a list of integers between 1 and 100, got 0",
            ),
            (
                r#"{"n": 1, "weights": [101]}"#,
                "Field 'weights' must be a list of integers between 1 and 100, got 101",
            ),
            (
                r#"{"n": 1, "weights": [1.5]}"#,
                "Field 'weights' must be a list of integers between 1 and 100, got 1.5",
            ),
            (
                r#"{"n": 1, "weights": 3}"#,
                "Field 'weights' must be a list of integers between 1 and 100, got 3",
            ),
        ] {
            assert_eq!(add(body), Err(error.to_owned()), "{body}");
        }
    }
}
