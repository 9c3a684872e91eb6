//! Records what the binary was built from, for `synshare version`: the git
//! commit and the DPDK version pkg-config found. (Link flags for DPDK come
//! from dpdk-sys; a -sys crate's link args would not reach this binary, so
//! any binary-level linker flag belongs here.)

use std::process::Command;

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn main() {
    // HEAD names the branch; the branch's ref (or packed-refs) moves with
    // every commit.
    println!("cargo:rerun-if-changed=.git/HEAD");
    if let Some(r) = std::fs::read_to_string(".git/HEAD")
        .ok()
        .and_then(|h| h.strip_prefix("ref: ").map(|r| r.trim().to_owned()))
    {
        println!("cargo:rerun-if-changed=.git/{r}");
    }
    println!("cargo:rerun-if-changed=.git/packed-refs");
    let git = output("git", &["describe", "--always", "--dirty"]).unwrap_or_else(|| "unknown".into());
    let dpdk = output("pkg-config", &["--modversion", "libdpdk"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=SYNSHARE_GIT={git}");
    println!("cargo:rustc-env=SYNSHARE_DPDK_BUILT={dpdk}");
}
