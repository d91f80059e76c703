//! Compiles the C shim over libfabric's inline calls. libfabric itself is
//! loaded at run time by the shim (dlopen), never linked: see the shim's
//! opening comment for why. Building needs its headers (Debian: `apt-get
//! install libfabric-dev`; ci/test.sh installs it); without them Eddy is
//! built without RDMA (shim/eddy_fabric_none.c).

fn main() {
    println!("cargo:rerun-if-changed=shim/eddy_fabric.c");
    println!("cargo:rerun-if-changed=shim/eddy_fabric_none.c");
    watch_pkg_config_dirs();
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

/// Installing (or removing) libfabric-dev after a build adds or removes
/// `libfabric.pc`, which changes its directory: watching pkg-config's
/// search path makes the next build pick the right shim (cargo does not
/// rerun a build script for a header that appears).
fn watch_pkg_config_dirs() {
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    let mut dirs: Vec<String> = std::env::var("PKG_CONFIG_PATH")
        .unwrap_or_default()
        .split(':')
        .map(str::to_string)
        .collect();
    if let Ok(out) = std::process::Command::new("pkg-config")
        .args(["--variable", "pc_path", "pkg-config"])
        .output()
    {
        let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
        dirs.extend(path.split(':').map(str::to_string));
    }
    for d in dirs {
        if !d.is_empty() && std::path::Path::new(&d).is_dir() {
            println!("cargo:rerun-if-changed={d}");
        }
    }
}
