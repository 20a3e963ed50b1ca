//! Shared by tests/registry.rs and tests/image_publish.rs: a real Debian `docker-registry` on a
//! port of this engineer's range (18600-18699), with or without htpasswd auth, and tiny OCI images
//! made by hand and copied in with the real `skopeo`.
#![allow(dead_code)]

use sha2::{Digest, Sha256};
use std::io::Write as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const USER: &str = "kolla";

pub fn have(bin: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {bin}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A running docker-registry; stopped (by its PID) on drop.
pub struct Registry {
    pub addr: String,
    pub dir: tempfile::TempDir,
    child: Child,
    pub password: Option<String>,
}

impl Registry {
    /// `auth`: `Some(password)` for htpasswd auth (user `kolla`); `extra` is appended to the
    /// config (e.g. a token auth section instead).
    pub fn start(port: u16, password: Option<&str>, extra_auth: Option<&str>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let addr = format!("127.0.0.1:{port}");
        let mut cfg = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            dir.path().join("data").display()
        );
        if let Some(pw) = password {
            let ht = dir.path().join("htpasswd");
            let mut c = Command::new("htpasswd")
                .args(["-iBc"])
                .arg(&ht)
                .arg(USER)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            c.stdin.take().unwrap().write_all(pw.as_bytes()).unwrap();
            assert!(c.wait().unwrap().success());
            cfg.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: kiln-test\n    path: {}\n",
                ht.display()
            ));
        }
        if let Some(a) = extra_auth {
            cfg.push_str(a);
        }
        let cfgp = dir.path().join("config.yml");
        std::fs::write(&cfgp, cfg).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfgp)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("registry.log")).unwrap())
            .spawn()
            .unwrap();
        let r = Registry {
            addr: addr.clone(),
            dir,
            child,
            password: password.map(str::to_string),
        };
        wait_port(&addr);
        r
    }

    /// An auth file for skopeo/podman (`--authfile`).
    pub fn authfile(&self) -> PathBuf {
        let p = self.dir.path().join("auth.json");
        if let Some(pw) = &self.password {
            use base64::Engine as _;
            let a = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{pw}"));
            std::fs::write(
                &p,
                format!("{{\"auths\":{{\"{}\":{{\"auth\":\"{a}\"}}}}}}", self.addr),
            )
            .unwrap();
        } else {
            std::fs::write(&p, "{\"auths\":{}}").unwrap();
        }
        p
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_port(addr: &str) {
    let t = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{addr} never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sha(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

fn put_blob(layout: &Path, b: &[u8]) -> String {
    let d = sha(b);
    std::fs::write(layout.join("blobs/sha256").join(&d[7..]), b).unwrap();
    d
}

/// An OCI layout at `layout` with tag `t`: one small layer (a file) and a config with `labels`,
/// for each of `archs`; several archs make an image index.
pub fn oci_layout(layout: &Path, labels: &[(&str, &str)], archs: &[&str], salt: &str) {
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let root = layout.join("rootfs");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/kiln-test"), format!("kiln {salt}\n")).unwrap();
    let tar = layout.join("layer.tar");
    assert!(Command::new("tar")
        .args(["--sort=name", "--mtime=@0", "--owner=0", "--group=0", "-C"])
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg("etc")
        .status()
        .unwrap()
        .success());
    let layer = std::fs::read(&tar).unwrap();
    let diff_id = sha(&layer);
    let layer_d = put_blob(layout, &layer);
    let labels_json: serde_json::Map<String, serde_json::Value> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
        .collect();
    let mut manifests = Vec::new();
    for arch in archs {
        let cfg = serde_json::json!({
            "architecture": arch, "os": "linux",
            "config": {"Labels": labels_json, "Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        });
        let cfg_b = serde_json::to_vec(&cfg).unwrap();
        let cfg_d = put_blob(layout, &cfg_b);
        let man = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_d, "size": cfg_b.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_d, "size": layer.len()}],
        });
        let man_b = serde_json::to_vec(&man).unwrap();
        let man_d = put_blob(layout, &man_b);
        manifests.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": man_d, "size": man_b.len(),
            "platform": {"architecture": arch, "os": "linux"},
        }));
    }
    let top = if manifests.len() == 1 {
        let mut m = manifests.pop().unwrap();
        m.as_object_mut().unwrap().remove("platform");
        m
    } else {
        let idx = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        });
        let b = serde_json::to_vec(&idx).unwrap();
        let d = put_blob(layout, &b);
        serde_json::json!({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": d, "size": b.len()})
    };
    let mut top = top;
    top.as_object_mut().unwrap().insert(
        "annotations".into(),
        serde_json::json!({"org.opencontainers.image.ref.name": "t"}),
    );
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [top]});
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
}

/// `skopeo copy` an OCI layout into the registry as `repo:tag` (all platforms).
pub fn skopeo_push(reg: &Registry, layout: &Path, repo: &str, tag: &str) {
    let out = Command::new("skopeo")
        .args([
            "copy",
            "--all",
            "--dest-tls-verify=false",
            "--dest-authfile",
        ])
        .arg(reg.authfile())
        .arg(format!("oci:{}:t", layout.display()))
        .arg(format!("docker://{}/{repo}:{tag}", reg.addr))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo copy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What `skopeo inspect` says the reference's digest is (`--raw` and its SHA-256 for an index,
/// which skopeo's `Digest` field would resolve to one platform).
pub fn skopeo_digest(reg: &Registry, repo: &str, tag: &str, raw: bool) -> String {
    let mut c = Command::new("skopeo");
    c.args(["inspect", "--tls-verify=false", "--authfile"])
        .arg(reg.authfile());
    if raw {
        c.arg("--raw");
    } else {
        c.args(["--format", "{{.Digest}}"]);
    }
    let out = c
        .arg(format!("docker://{}/{repo}:{tag}", reg.addr))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if raw {
        sha(&out.stdout)
    } else {
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}
