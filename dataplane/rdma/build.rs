//! Compiles the C shim over libfabric's inline calls and links libfabric.
//! Debian: `apt-get install libfabric-dev` (ci/test.sh installs it).

fn main() {
    println!("cargo:rerun-if-changed=shim/eddy_fabric.c");
    // pkg-config finds a libfabric installed outside the system paths; the
    // plain `-lfabric` fallback covers systems without its .pc file. The
    // link flags are printed after the shim's so the static shim comes
    // first on the linker's line and its libfabric symbols resolve.
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
    build.compile("eddy_fabric_shim");
    match lib {
        Ok(lib) => {
            for dir in &lib.link_paths {
                println!("cargo:rustc-link-search=native={}", dir.display());
            }
            for name in &lib.libs {
                println!("cargo:rustc-link-lib={name}");
            }
        }
        Err(e) => {
            println!(
                "cargo:warning=pkg-config found no libfabric >= 1.17 ({e}); trying -lfabric \
                 (Debian: apt-get install libfabric-dev)"
            );
            println!("cargo:rustc-link-lib=fabric");
        }
    }
}
