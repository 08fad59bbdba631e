//! Compiles `tideway/gateway/v1/gateway.proto` with the pure-Rust `protox` (no system
//! `protoc`) and generates the prost messages and tonic client/server from its descriptors.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "tideway/gateway/v1/gateway.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["."])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
