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
    println!("cargo:rerun-if-changed=.git/HEAD");
    let git = output("git", &["describe", "--always", "--dirty"]).unwrap_or_else(|| "unknown".into());
    let dpdk = output("pkg-config", &["--modversion", "libdpdk"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=SYNSHARE_GIT={git}");
    println!("cargo:rustc-env=SYNSHARE_DPDK_BUILT={dpdk}");
}
