//! ringlb's end-to-end tests live in `tests/`: each starts the real
//! binaries (control plane, replicas, data planes; the Docker system for
//! `docker.rs`) as processes on free ports and drives them from outside,
//! as a user would. Crates keep their own focused tests; what needs
//! several processes cooperating is here.
#![forbid(unsafe_code)]
