//! Arbitrary input never panics the admin request parser, and whatever it
//! accepts is valid (a property-based stand-in for coverage-guided fuzzing).

use proptest::prelude::*;
use ringlb_api::admin::{AdminOp, is_valid_name, parse_scale_request};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
        for op in [AdminOp::Add, AdminOp::Remove] {
            let _ = parse_scale_request(op, &body, 50);
        }
    }

    #[test]
    fn json_shaped_input_is_accepted_only_when_valid(
        n in prop_oneof![any::<i64>().prop_map(|n| n.to_string()), Just("1.5".to_string()), Just("\"3\"".to_string()), Just("null".to_string())],
        names in prop::collection::vec("[ -~]{0,70}", 0..6),
    ) {
        let body = format!(r#"{{"n": {n}, "hostnames": {}}}"#, serde_json::to_string(&names).expect("names"));
        if let Ok(request) = parse_scale_request(AdminOp::Add, body.as_bytes(), 50) {
            prop_assert!((1..=50).contains(&request.n));
            prop_assert!(request.hostnames.len() <= request.n);
            prop_assert!(request.hostnames.iter().all(|h| is_valid_name(h)));
            let mut unique = request.hostnames.clone();
            unique.sort();
            unique.dedup();
            prop_assert_eq!(unique.len(), request.hostnames.len());
        }
    }
}
