//! Sets `WEBHOOKD_VERSION` for `--version`: the package version, plus the git revision when built
//! from a git checkout (e.g. "0.1.0 (git 1a6b273)"); a source tarball gives the version alone.

use std::process::Command;

fn main() {
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let rev = Command::new("git")
        .args(["rev-parse", "--short=7", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|r| !r.is_empty());
    match rev {
        Some(rev) => println!("cargo:rustc-env=WEBHOOKD_VERSION={version} (git {rev})"),
        None => println!("cargo:rustc-env=WEBHOOKD_VERSION={version}"),
    }
    // Rebuild when HEAD moves: a checkout changes .git/HEAD, a commit the branch's ref (or
    // packed-refs). Only existing files: a missing one would make every build dirty.
    let mut watch = vec![".git/HEAD".to_owned(), ".git/packed-refs".to_owned()];
    if let Ok(head) = std::fs::read_to_string(".git/HEAD") {
        if let Some(r) = head.strip_prefix("ref: ") {
            watch.push(format!(".git/{}", r.trim()));
        }
    }
    for path in watch.iter().filter(|p| std::path::Path::new(p).exists()) {
        println!("cargo:rerun-if-changed={path}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
