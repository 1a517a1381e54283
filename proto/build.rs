//! Compiles `proto/ringlb.proto` with protox (pure Rust, so no `protoc` is
//! needed) and exports the file descriptor set for gRPC server reflection.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    println!("cargo:rerun-if-changed=proto/ringlb.proto");
    let fds = protox::compile(["ringlb.proto"], ["proto"])?;
    std::fs::write(out_dir.join("ringlb_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
