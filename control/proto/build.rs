//! Generates the gRPC code with a vendored `protoc`, so no system protobuf
//! compiler is needed on a developer's machine or in CI.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    // `bytes` fields as `Vec<u8>` (the default) keep paths simple to validate.
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_with_config(config, &["proto/eddy/v1/master.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
