//! `/add` and `/rm` bodies: the parser never panics, and whatever it
//! accepts satisfies every rule of SPEC.md.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringlb_api::admin::{AdminOp, is_valid_name, parse_scale_request};

fuzz_target!(|data: &[u8]| {
    for op in [AdminOp::Add, AdminOp::Remove] {
        if let Ok(request) = parse_scale_request(op, data, 50) {
            assert!((1..=50).contains(&request.n));
            assert!(request.hostnames.len() <= request.n);
            if op == AdminOp::Add {
                assert!(request.hostnames.iter().all(|h| is_valid_name(h)));
            }
            let mut unique = request.hostnames.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), request.hostnames.len());
        }
    }
});
