//! Links libfrugal.
//!
//! FRUGAL_LIB_DIR: the folder holding libfrugal.so (e.g. build/release/capi). When set, it is
//! added to the linker's search path and, as an rpath, to the binaries this crate builds (its
//! tests and examples), so they run without LD_LIBRARY_PATH. When unset, the system's linker
//! path applies (an installed libfrugal). Crates that depend on this one get the search path
//! (cargo propagates it) but not the rpath: they set their own, or LD_LIBRARY_PATH.
use std::env;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=FRUGAL_LIB_DIR");
    println!("cargo:rerun-if-changed=build.rs");
    let dir = env::var("FRUGAL_LIB_DIR").unwrap_or_default();
    if !dir.is_empty() {
        let dir = match Path::new(&dir).canonicalize() {
            Ok(p) => p.to_string_lossy().into_owned(),
            Err(_) => dir,
        };
        println!("cargo:rustc-link-search=native={}", dir);
        if env::var("CARGO_CFG_TARGET_OS").map(|os| os != "windows").unwrap_or(true) {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir);
        }
        // Visible to dependent crates' build scripts as DEP_FRUGAL_LIB_DIR (`links = "frugal"`).
        println!("cargo:lib_dir={}", dir);
    }
    println!("cargo:rustc-link-lib=dylib=frugal");
}
