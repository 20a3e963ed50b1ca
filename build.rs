//! Computes `KILN_BUILD_ID`: the crate version plus a hash of the sources and `Cargo.lock`.
//!
//! The controller and the agent it pushes to a host must be the same build. They are usually two
//! binaries (a glibc controller and a static musl agent) built from the same tree, so the id
//! hashes what they are built from, not the binary itself: both builds of one tree agree, and a
//! stale agent from another tree is refused at the hello exchange.

use sha2::{Digest, Sha256};
use std::path::Path;

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    walk(&root.join("agent"), &mut files);
    files.push(root.join("Cargo.lock"));
    files.push(root.join("Cargo.toml"));
    files.sort();
    let mut h = Sha256::new();
    for f in &files {
        h.update(
            f.strip_prefix(root)
                .unwrap_or(f)
                .to_string_lossy()
                .as_bytes(),
        );
        h.update(std::fs::read(f).unwrap_or_default());
    }
    let digest = h.finalize();
    let short: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    println!(
        "cargo:rustc-env=KILN_BUILD_ID={}+src.{}",
        env!("CARGO_PKG_VERSION"),
        short
    );
    println!("cargo:rerun-if-changed=agent");
    println!("cargo:rerun-if-changed=Cargo.lock");
    println!("cargo:rerun-if-changed=Cargo.toml");
    // the embedded data (inventory/, playbooks/, environments/) is compiled in
    for dir in ["inventory", "playbooks", "environments"] {
        println!("cargo:rerun-if-changed={dir}");
    }
}
