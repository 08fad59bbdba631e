//! Compiles the protos with the pure-Rust `protox` (no system `protoc`), generates the prost
//! messages and tonic clients/servers from the descriptors, and writes the encoded
//! descriptor set (with comments) for the server's reflection service.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "tideway/gateway/v1/gateway.proto",
    "tideway/v1/resources.proto",
    "tideway/v1/apps.proto",
    "tideway/v1/releases.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let mut compiler = protox::Compiler::new(["."])?;
    compiler
        .include_source_info(true)
        .include_imports(true)
        .open_files(PROTOS)?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("tideway_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    tonic_prost_build::configure().compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
