//! The OCI registry client (`kiln::build::registry`) against a real Debian `docker-registry`:
//! htpasswd (Basic) auth, an anonymous plain-HTTP registry, a real Bearer-token flow (the real
//! registry verifying tokens; the token endpoint is a small server written here, since no token
//! server package runs on this machine), image indexes, and malformed answers (from a small
//! server written here, because a real registry never sends them). Also prints the digest
//! lookup benchmark (figures, not a timed assertion beyond a generous bound).

mod registry_support;

use kiln::build::registry::{Credentials, RegistryClient, RegistryError};
use registry_support::*;
use std::time::Instant;

const PW: &str = "pb-Registry-pw-7731";

fn skip() -> bool {
    for b in ["docker-registry", "skopeo", "htpasswd", "tar"] {
        if !have(b) {
            println!("SKIP: {b} is not installed (tests/setup installs it)");
            return true;
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn htpasswd_registry_digests_labels_indexes_and_errors() {
    if skip() {
        return;
    }
    let reg = Registry::start(18601, Some(PW), None);
    let tmp = tempfile::tempdir().unwrap();
    let one = tmp.path().join("one");
    oci_layout(
        &one,
        &[("kolla_version", "18.1.0"), ("build-date", "20261203")],
        &["amd64"],
        "one",
    );
    skopeo_push(
        &reg,
        &one,
        "kolla/nova-api",
        "2024.1-rocky-9-20261203T000000",
    );
    let multi = tmp.path().join("multi");
    oci_layout(&multi, &[("multi", "yes")], &["amd64", "arm64"], "multi");
    skopeo_push(&reg, &multi, "kolla/glance-api", "t1");

    let c = RegistryClient::new(&reg.addr, true, Some(Credentials::new(USER, PW))).unwrap();
    let d = c
        .manifest_digest("kolla/nova-api", "2024.1-rocky-9-20261203T000000")
        .await
        .unwrap();
    assert_eq!(
        d,
        skopeo_digest(
            &reg,
            "kolla/nova-api",
            "2024.1-rocky-9-20261203T000000",
            false
        )
    );
    let info = c
        .inspect("kolla/nova-api", "2024.1-rocky-9-20261203T000000")
        .await
        .unwrap();
    assert_eq!(info.digest, d);
    assert_eq!(
        info.labels.get("kolla_version").map(String::as_str),
        Some("18.1.0")
    );
    assert_eq!(info.platforms.len(), 1);
    assert_eq!(info.platforms[0].to_string(), "linux/amd64");
    assert_eq!(info.layers.len(), 1);
    // The layer reads back and matches its digest.
    let blob = c.blob("kolla/nova-api", &info.layers[0]).await.unwrap();
    assert!(!blob.is_empty());

    // An image index: the index digest, both platforms, the first platform's labels.
    let info = c.inspect("kolla/glance-api", "t1").await.unwrap();
    assert_eq!(
        info.digest,
        skopeo_digest(&reg, "kolla/glance-api", "t1", true)
    );
    assert!(info.media_type.contains("index"), "{}", info.media_type);
    let plats: Vec<String> = info.platforms.iter().map(|p| p.to_string()).collect();
    assert_eq!(plats, ["linux/amd64", "linux/arm64"]);
    assert_eq!(info.labels.get("multi").map(String::as_str), Some("yes"));
    assert_eq!(
        c.manifest_digest("kolla/glance-api", "t1").await.unwrap(),
        info.digest
    );

    // Not there: names the registry and the image.
    let e = c
        .manifest_digest("kolla/nova-api", "nope")
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::NotFound { .. }), "{e}");
    let m = e.to_string();
    assert!(
        m.contains(&reg.addr) && m.contains("kolla/nova-api:nope"),
        "{m}"
    );

    // Wrong password: an auth error saying what to fix, without the password.
    let bad = "pb-wrong-pw-9981";
    let c2 = RegistryClient::new(&reg.addr, true, Some(Credentials::new(USER, bad))).unwrap();
    let e = c2.manifest_digest("kolla/nova-api", "x").await.unwrap_err();
    let m = e.to_string();
    assert!(matches!(e, RegistryError::Auth { .. }), "{m}");
    assert!(m.contains("kolla_docker_registry_password"), "{m}");
    assert!(!m.contains(bad) && !m.contains(PW), "{m}");
    // No login at all.
    let c3 = RegistryClient::new(&reg.addr, true, None).unwrap();
    let e = c3.manifest_digest("kolla/nova-api", "x").await.unwrap_err();
    assert!(e.to_string().contains("none is configured"), "{e}");
    // HTTPS against this plain-HTTP registry: a connect error that says to mark it insecure.
    let c4 = RegistryClient::new(&reg.addr, false, Some(Credentials::new(USER, PW))).unwrap();
    let e = c4.manifest_digest("kolla/nova-api", "x").await.unwrap_err();
    let m = e.to_string();
    assert!(matches!(e, RegistryError::Connect { .. }), "{m}");
    assert!(m.contains("insecure") && !m.contains(PW), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_insecure_registry_and_a_registry_that_is_down() {
    if skip() {
        return;
    }
    let reg = Registry::start(18602, None, None);
    let tmp = tempfile::tempdir().unwrap();
    oci_layout(tmp.path(), &[], &["amd64"], "anon");
    skopeo_push(&reg, tmp.path(), "kolla/keystone", "t");
    let c = RegistryClient::new(&reg.addr, true, None).unwrap();
    assert_eq!(
        c.manifest_digest("kolla/keystone", "t").await.unwrap(),
        skopeo_digest(&reg, "kolla/keystone", "t", false)
    );
    drop(reg);
    let e = c.manifest_digest("kolla/keystone", "t").await.unwrap_err();
    assert!(matches!(e, RegistryError::Connect { .. }), "{e}");
    assert!(e.to_string().contains("127.0.0.1:18602"), "{e}");
}

/// A server that answers every request with one canned HTTP response: for answers no real
/// registry gives.
async fn canned(port: u16, response: String) -> tokio::task::JoinHandle<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let resp = response.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    })
}

fn http(status: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut s = format!(
        "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str("\r\n");
    s.push_str(body);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_registry_answers_are_clear_errors() {
    let ct = ("Content-Type", "application/vnd.oci.image.manifest.v1+json");
    let cases: Vec<(String, &str)> = vec![
        (http("200 OK", &[ct], "this is not json"), "not JSON"),
        (
            http(
                "200 OK",
                &[
                    ct,
                    (
                        "Docker-Content-Digest",
                        "sha256:0000000000000000000000000000000000000000000000000000000000000000",
                    ),
                ],
                r#"{"schemaVersion":2,"config":{"digest":"sha256:00"}}"#,
            ),
            "does not match",
        ),
        (
            http("200 OK", &[ct], r#"{"schemaVersion":1}"#),
            "schemaVersion 1",
        ),
        (
            http(
                "200 OK",
                &[("Content-Type", "text/html")],
                r#"{"schemaVersion":2,"mediaType":"text/html"}"#,
            ),
            "media type",
        ),
        (
            http(
                "500 Internal Server Error",
                &[],
                r#"{"errors":[{"code":"UNKNOWN","message":"disk full"}]}"#,
            ),
            "disk full",
        ),
        (http("401 Unauthorized", &[], ""), "WWW-Authenticate"),
        (
            http("401 Unauthorized", &[("WWW-Authenticate", "Negotiate")], ""),
            "unsupported auth scheme",
        ),
        (
            http(
                "401 Unauthorized",
                &[("WWW-Authenticate", r#"Bearer service="x""#)],
                "",
            ),
            "without a realm",
        ),
    ];
    for (i, (resp, want)) in cases.into_iter().enumerate() {
        let port = 18620 + i as u16;
        let h = canned(port, resp).await;
        let c = RegistryClient::new(
            &format!("127.0.0.1:{port}"),
            true,
            Some(Credentials::new(USER, PW)),
        )
        .unwrap();
        let e = c.manifest("kolla/x", "t").await.unwrap_err();
        let m = e.to_string();
        assert!(m.contains(want), "case {i}: {m}");
        assert!(m.contains(&format!("127.0.0.1:{port}")), "case {i}: {m}");
        assert!(!m.contains(PW), "case {i}: {m}");
        h.abort();
    }
    // A HEAD whose Docker-Content-Digest is garbage.
    let h = canned(
        18630,
        http("200 OK", &[("Docker-Content-Digest", "md5:abc")], ""),
    )
    .await;
    let c = RegistryClient::new("127.0.0.1:18630", true, None).unwrap();
    let e = c.manifest_digest("kolla/x", "t").await.unwrap_err();
    assert!(e.to_string().contains("not a sha256"), "{e}");
    h.abort();
}

/// A token endpoint for the real registry's `auth: token` mode: it checks Basic credentials and
/// signs a JWT (RS256, the certificate in `x5c`) with `openssl dgst`, for the scope asked.
async fn token_server(
    port: u16,
    key: std::path::PathBuf,
    cert_der_b64: String,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> tokio::task::JoinHandle<()> {
    use base64::Engine as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let key = key.clone();
            let x5c = cert_der_b64.clone();
            let hits = hits.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let line = req.lines().next().unwrap_or("").to_string();
                let path = line.split(' ').nth(1).unwrap_or("/").to_string();
                let url = url::Url::parse(&format!("http://x{path}")).unwrap();
                let q: std::collections::HashMap<String, String> =
                    url.query_pairs().into_owned().collect();
                let b64 = base64::engine::general_purpose::STANDARD;
                let want = format!("Basic {}", b64.encode(format!("{USER}:{PW}")));
                let authed = req.lines().any(|l| {
                    l.to_ascii_lowercase().starts_with("authorization:") && l[14..].trim() == want
                });
                if !authed {
                    let _ = s
                        .write_all(http("401 Unauthorized", &[], "{}").as_bytes())
                        .await;
                    return;
                }
                hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut access = Vec::new();
                if let Some(sc) = q.get("scope") {
                    let p: Vec<&str> = sc.split(':').collect();
                    if p.len() == 3 {
                        access.push(serde_json::json!({"type": p[0], "name": p[1], "actions": p[2].split(',').collect::<Vec<_>>()}));
                    }
                }
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let url_b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
                let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
                let claims = serde_json::json!({
                    "iss": "kiln-test-issuer", "sub": USER, "aud": q.get("service").cloned().unwrap_or_default(),
                    "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", hits.load(std::sync::atomic::Ordering::SeqCst)),
                    "access": access,
                });
                let signing = format!(
                    "{}.{}",
                    url_b64.encode(header.to_string()),
                    url_b64.encode(claims.to_string())
                );
                let mut c = tokio::process::Command::new("openssl")
                    .args(["dgst", "-sha256", "-sign"])
                    .arg(&key)
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                c.stdin
                    .take()
                    .unwrap()
                    .write_all(signing.as_bytes())
                    .await
                    .unwrap();
                let out = c.wait_with_output().await.unwrap();
                let jwt = format!("{signing}.{}", url_b64.encode(out.stdout));
                let body = serde_json::json!({"token": jwt}).to_string();
                let _ = s
                    .write_all(
                        http("200 OK", &[("Content-Type", "application/json")], &body).as_bytes(),
                    )
                    .await;
            });
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_flow_against_the_real_registry() {
    if skip() || !have("openssl") {
        return;
    }
    use base64::Engine as _;
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("key.pem");
    let cert = tmp.path().join("cert.pem");
    let ok = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=kiln-test-token",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let der = std::process::Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    let x5c = base64::engine::general_purpose::STANDARD.encode(der.stdout);
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ts = token_server(18605, key, x5c, hits.clone()).await;
    let auth = format!(
        "auth:\n  token:\n    realm: http://127.0.0.1:18605/token\n    service: kiln-test-registry\n    issuer: kiln-test-issuer\n    rootcertbundle: {}\n",
        cert.display()
    );
    let reg = Registry::start(18604, None, Some(&auth));
    // skopeo speaks the token flow too: it logs in through our endpoint.
    let layout = tmp.path().join("img");
    oci_layout(&layout, &[("tok", "1")], &["amd64"], "tok");
    {
        use base64::Engine as _;
        let a = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PW}"));
        std::fs::write(
            reg.dir.path().join("auth.json"),
            format!("{{\"auths\":{{\"{}\":{{\"auth\":\"{a}\"}}}}}}", reg.addr),
        )
        .unwrap();
    }
    let out = std::process::Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false", "--dest-authfile"])
        .arg(reg.dir.path().join("auth.json"))
        .arg(format!("oci:{}:t", layout.display()))
        .arg(format!("docker://{}/kolla/heat-api:t", reg.addr))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo copy with token auth: {}\nregistry log: {}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(reg.dir.path().join("registry.log")).unwrap_or_default()
    );
    let c = RegistryClient::new(&reg.addr, true, Some(Credentials::new(USER, PW))).unwrap();
    let before = hits.load(std::sync::atomic::Ordering::SeqCst);
    let info = c.inspect("kolla/heat-api", "t").await.unwrap();
    let ours = hits.load(std::sync::atomic::Ordering::SeqCst) - before;
    let sk = std::process::Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            "--format",
            "{{.Digest}}",
            "--authfile",
        ])
        .arg(reg.dir.path().join("auth.json"))
        .arg(format!("docker://{}/kolla/heat-api:t", reg.addr))
        .output()
        .unwrap();
    assert_eq!(info.digest, String::from_utf8_lossy(&sk.stdout).trim());
    assert_eq!(info.labels.get("tok").map(String::as_str), Some("1"));
    // One token for the scope, reused for the manifest and the config blob.
    assert_eq!(ours, 1);
    // A wrong password: the token endpoint refuses; the error says so without the password.
    let c2 = RegistryClient::new(
        &reg.addr,
        true,
        Some(Credentials::new(USER, "pb-bad-tok-pw")),
    )
    .unwrap();
    let e = c2.manifest_digest("kolla/heat-api", "t").await.unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains("token endpoint") && !m.contains("pb-bad-tok-pw"),
        "{m}"
    );
    ts.abort();
}

/// The benchmark: 100 tags, digests read back sequentially and 8 at a time, with htpasswd auth
/// and without. Figures are printed (run with --nocapture).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_digest_lookups_100_images() {
    if skip() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    oci_layout(tmp.path(), &[], &["amd64"], "bench");
    for (port, pw) in [(18606u16, Some(PW)), (18607, None)] {
        let reg = Registry::start(port, pw, None);
        skopeo_push(&reg, tmp.path(), "kolla/bench", "base");
        // 100 tags: the same manifest PUT under new tags through the registry API.
        let c =
            RegistryClient::new(&reg.addr, true, pw.map(|p| Credentials::new(USER, p))).unwrap();
        let m = c.manifest("kolla/bench", "base").await.unwrap();
        let http = reqwest::Client::new();
        for i in 0..100 {
            let mut rb = http
                .put(format!("http://{}/v2/kolla/bench/manifests/t{i}", reg.addr))
                .header("Content-Type", m.media_type.clone())
                .body(m.body.clone());
            if let Some(p) = pw {
                rb = rb.basic_auth(USER, Some(p));
            }
            assert!(rb.send().await.unwrap().status().is_success());
        }
        let c =
            RegistryClient::new(&reg.addr, true, pw.map(|p| Credentials::new(USER, p))).unwrap();
        let t = Instant::now();
        for i in 0..100 {
            let d = c
                .manifest_digest("kolla/bench", &format!("t{i}"))
                .await
                .unwrap();
            assert_eq!(d, m.digest);
        }
        let seq = t.elapsed().as_secs_f64() * 1000.0 / 100.0;
        let t = Instant::now();
        let tags: Vec<String> = (0..100).map(|i| format!("t{i}")).collect();
        for chunk in tags.chunks(8) {
            let fs = chunk.iter().map(|t| c.manifest_digest("kolla/bench", t));
            for d in futures::future::join_all(fs).await {
                assert_eq!(d.unwrap(), m.digest);
            }
        }
        let par = t.elapsed().as_secs_f64() * 1000.0 / 100.0;
        let t = Instant::now();
        let mut rec = kiln::build::record::BuildRecord::new("bench");
        for i in 0..100 {
            rec.images.push(kiln::build::record::ImageRecord {
                name: format!("image-{i}"),
                reference: format!("{}/kolla/bench:t{i}", reg.addr),
                digest: Some(m.digest.clone()),
                status: "pushed".into(),
                ..Default::default()
            });
        }
        rec.write(&tmp.path().join("rec.json")).unwrap();
        let rec_ms = t.elapsed().as_secs_f64() * 1000.0;
        println!(
            "BENCH digest lookup ({}): {seq:.2} ms/image sequential, {par:.2} ms/image 8 in flight; 100-image record written in {rec_ms:.1} ms",
            if pw.is_some() { "htpasswd auth" } else { "no auth" }
        );
        assert!(seq < 500.0, "{seq} ms per lookup");
    }
}
