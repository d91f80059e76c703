//! Compiles the C shim over libfabric's inline calls. libfabric itself is
//! loaded at run time by the shim (dlopen), never linked: see the shim's
//! opening comment for why. Building needs its headers (Debian: `apt-get
//! install libfabric-dev`; ci/test.sh installs it); without them Eddy is
//! built without RDMA (shim/eddy_fabric_none.c).

fn main() {
    println!("cargo:rerun-if-changed=shim/eddy_fabric.c");
    println!("cargo:rerun-if-changed=shim/eddy_fabric_none.c");
    // pkg-config finds headers installed outside the system paths.
    let lib = pkg_config::Config::new()
        .atleast_version("1.17")
        .cargo_metadata(false)
        .probe("libfabric");
    let mut build = cc::Build::new();
    build
        .file("shim/eddy_fabric.c")
        .warnings(true)
        .extra_warnings(true);
    if let Ok(lib) = &lib {
        for dir in &lib.include_paths {
            build.include(dir);
        }
    }
    if build.try_compile("eddy_fabric_shim").is_err() {
        let why = match &lib {
            Ok(_) => "the shim did not compile against them".to_string(),
            Err(e) => format!("pkg-config: {e}"),
        };
        println!(
            "cargo:warning=libfabric >= 1.17's headers were not usable ({why}): building \
             Eddy without RDMA (install libfabric-dev for it; ci/test.sh does)"
        );
        cc::Build::new()
            .file("shim/eddy_fabric_none.c")
            .warnings(true)
            .compile("eddy_fabric_shim");
    }
    println!("cargo:rustc-link-lib=dl");
}
