//! Builds the raw DPDK bindings.
//!
//! DPDK is found with `pkg-config libdpdk` (Debian's DPDK 22.11). Its cflags
//! are passed to clang and to the C compiler whole: they carry
//! `-include rte_config.h` and a `-march`, without which the headers do not
//! parse or disagree with the libraries about struct layouts.
//!
//! DPDK's hot functions (`rte_eth_rx_burst`, `rte_pktmbuf_alloc`, ...) are
//! `static inline` in its headers, so there is no symbol to link against.
//! `src/shim.c` wraps each one we use in a tiny exported function (prefix
//! `ss_`), compiled here with the same cflags; LTO-free but the call costs a
//! few nanoseconds per burst, not per packet.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn pkg_config(args: &[&str]) -> String {
    let out = Command::new("pkg-config")
        .args(args)
        .arg("libdpdk")
        .output()
        .unwrap_or_else(|e| panic!("cannot run pkg-config ({e}); run scripts/setup.sh first"));
    if !out.status.success() {
        panic!(
            "pkg-config {:?} libdpdk failed: {}\nInstall DPDK with scripts/setup.sh (apt-get install libdpdk-dev).",
            args,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8(out.stdout).expect("pkg-config prints UTF-8")
}

fn main() {
    println!("cargo:rerun-if-changed=src/shim.h");
    println!("cargo:rerun-if-changed=src/shim.c");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    let cflags: Vec<String> = pkg_config(&["--cflags"])
        .split_whitespace()
        .map(str::to_owned)
        .collect();

    // Link every DPDK library pkg-config names, as shared libraries. The
    // poll-mode drivers are not linked at all: with Debian's shared build,
    // EAL loads them from its plugin folder at start-up.
    for token in pkg_config(&["--libs"]).split_whitespace() {
        if let Some(dir) = token.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={dir}");
        } else if let Some(lib) = token.strip_prefix("-l") {
            println!("cargo:rustc-link-lib=dylib={lib}");
        }
        // `-Wl,--as-needed` and other linker flags would be dropped anyway:
        // link args from a -sys crate do not reach the final binary.
    }

    let mut build = cc::Build::new();
    build.file("src/shim.c").warnings(true).opt_level(2);
    for flag in &cflags {
        build.flag(flag);
    }
    build.compile("synshare_dpdk_shim");

    let bindings = bindgen::Builder::default()
        .header("src/shim.h")
        .clang_args(&cflags)
        .allowlist_function("rte_.*")
        .allowlist_function("ss_.*")
        .allowlist_type("rte_.*")
        .allowlist_var("RTE_.*")
        // Packed unions with bitfields that bindgen cannot lay out; we never
        // touch them.
        .opaque_type("rte_l2tpv2_combined_msg_hdr")
        .opaque_type("rte_gtp_psc_generic_hdr")
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .expect("bindgen could not generate DPDK bindings (is libclang-dev installed? run scripts/setup.sh)");

    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("write bindings.rs");
}
