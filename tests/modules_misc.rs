//! `raw`, `script`, `wait_for`, `uri`, `get_url`, `pip` and `git` against real lab hosts, each
//! compared with real ansible-core running the same module with the same arguments on a second,
//! fresh lab host of the same kind: `changed`/`failed`, the result keys that matter, and what is
//! on the host afterwards. Second runs must be `changed: false` for the idempotent modules, and
//! check mode must change nothing.
//!
//! Everything the modules talk to is real and local to each host (its own network namespace):
//! an HTTP server (Python's `http.server` with a small handler that also echoes POSTs and asks
//! for basic auth) on the host's 127.0.0.1, a bare git repository reached with `file://`, and
//! wheels built by the test into a folder pip reads with `--no-index --find-links`.
//!
//! Needs root (lab hosts), sshd, the static agent (`cargo build --target
//! x86_64-unknown-linux-musl`), curl, git, python3 with venv, and ansible-core in
//! `$KILN_ANSIBLE_VENV` (default `/work/venv-ansible`); skips with the reason otherwise.

mod lab;
mod support;

use kiln::lab::Flavor;
use kiln::modules::{lookup, Ctx};
use kiln::transport::{self, ConnSpec, HostKeyChecking, Session, TransportOptions};
use kiln::value::{Map, Value};
use lab::LabGuard;
use serde_json::{json, Value as J};
use std::path::PathBuf;
use std::sync::Arc;

fn ansible_bin() -> Option<PathBuf> {
    support::ansible_tool("ansible")
}

fn skip_reason() -> Option<String> {
    if let Some(r) = lab::skip_reason() {
        return Some(r);
    }
    for t in ["curl", "git", "python3"] {
        if lab::which(t).is_none() {
            return Some(format!("{t} is not installed"));
        }
    }
    if !std::process::Command::new("/usr/bin/python3")
        .args(["-c", "import ensurepip"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
    {
        return Some("python3-venv (ensurepip) is not installed".into());
    }
    support::no_ansible().or_else(support::no_agent)
}

/// A small real HTTP server: files from /srv/www, `/echo` answers a POST with what it got as
/// JSON, `/auth/...` wants basic auth `alice:s3cr3t`
/// (`/auth/slow` answers after 3 s), `/redirect` sends a 302 to /data.json.
const SERVER: &str = r#"
import base64, json, http.server, os, sys, time
os.chdir('/srv/www')
class H(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass
    def _auth(self):
        want = 'Basic ' + base64.b64encode(b'alice:s3cr3t').decode()
        if self.headers.get('Authorization') != want:
            self.send_response(401)
            self.send_header('WWW-Authenticate', 'Basic realm="kiln"')
            self.send_header('Content-Length', '0')
            self.end_headers()
            return False
        self.path = self.path[len('/auth'):]
        return True
    def do_GET(self):
        if self.path == '/redirect':
            self.send_response(302); self.send_header('Location', '/data.json')
            self.send_header('Content-Length', '0'); self.end_headers(); return
        if self.path.startswith('/auth/') and not self._auth(): return
        if self.path == '/slow':
            time.sleep(3); self.path = '/file.txt'
        return super().do_GET()
    def do_HEAD(self):
        if self.path.startswith('/auth/') and not self._auth(): return
        return super().do_HEAD()
    def do_POST(self):
        n = int(self.headers.get('Content-Length') or 0)
        body = self.rfile.read(n).decode()
        out = json.dumps({'method': 'POST', 'body': body,
                          'content_type': self.headers.get('Content-Type')}).encode()
        self.send_response(201); self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(out))); self.end_headers(); self.wfile.write(out)
http.server.ThreadingHTTPServer(('127.0.0.1', 8080), H).serve_forever()
"#;

/// Two wheels of one tiny package (1.0 and 2.0), written with zipfile: no build tools needed.
const WHEELS: &str = r#"
import zipfile, base64, hashlib, os
os.makedirs('/srv/wheels', exist_ok=True)
for v in ('1.0', '2.0'):
    files = {'kilnprobe/__init__.py': 'VERSION = %r\n' % v,
             'kilnprobe-%s.dist-info/METADATA' % v: 'Metadata-Version: 2.1\nName: kilnprobe\nVersion: %s\n' % v,
             'kilnprobe-%s.dist-info/WHEEL' % v: 'Wheel-Version: 1.0\nGenerator: kiln-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n'}
    rec = []
    for n, c in files.items():
        d = base64.urlsafe_b64encode(hashlib.sha256(c.encode()).digest()).rstrip(b'=').decode()
        rec.append('%s,sha256=%s,%d' % (n, d, len(c)))
    rec.append('kilnprobe-%s.dist-info/RECORD,,' % v)
    files['kilnprobe-%s.dist-info/RECORD' % v] = '\n'.join(rec) + '\n'
    with zipfile.ZipFile('/srv/wheels/kilnprobe-%s-py3-none-any.whl' % v, 'w') as z:
        for n, c in files.items():
            z.writestr(n, c)
"#;

const REPO: &str = r#"
set -e
rm -rf /srv/repo.git /srv/work
git init -q --bare -b main /srv/repo.git
git init -q -b main /srv/work && cd /srv/work
git config user.email t@example.com && git config user.name t
echo one > f && git add f && git commit -qm one && git tag v1 && git branch dev
echo two > f && git commit -qam two
git push -q /srv/repo.git main dev v1
"#;

fn host_sh(lab: &kiln::lab::Lab, host: &str, cmd: &str) -> String {
    let out = lab
        .host(host)
        .unwrap()
        .exec(&["sh", "-c", cmd])
        .expect("exec in lab host");
    assert!(
        out.status.success(),
        "{host}: `{cmd}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn prepare(lab: &kiln::lab::Lab, host: &str) {
    host_sh(
        lab,
        host,
        "mkdir -p /srv/www/auth && printf 'hello\\n' > /srv/www/file.txt && \
         printf '{\"a\": 1, \"b\": [\"x\"]}' > /srv/www/data.json",
    );
    // the host's /tmp is its own: write the programs inside it
    host_sh(
        lab,
        host,
        &format!("cat > /srv/server.py <<'EOF'\n{SERVER}\nEOF"),
    );
    host_sh(
        lab,
        host,
        &format!("cat > /srv/wheels.py <<'EOF'\n{WHEELS}\nEOF"),
    );
    host_sh(
        lab,
        host,
        "nohup /usr/bin/python3 /srv/server.py >/srv/server.log 2>&1 </dev/null &",
    );
    host_sh(lab, host, "/usr/bin/python3 /srv/wheels.py");
    host_sh(lab, host, REPO);
    // wait for the server
    host_sh(
        lab,
        host,
        "for i in $(seq 50); do curl -sf http://127.0.0.1:8080/file.txt >/dev/null && exit 0; sleep 0.1; done; exit 1",
    );
}

struct Kiln {
    session: Arc<Session>,
    search: Vec<PathBuf>,
}

impl Kiln {
    fn ctx(&self, check: bool) -> Ctx {
        Ctx {
            host: "k".into(),
            session: self.session.clone(),
            check,
            diff: false,
            env: vec![],
            search: self.search.clone(),
            facts: Arc::new(Map::new()),
            progress: kiln::modules::progress::Progress::none(),
        }
    }

    /// The module's result as JSON; `{"skipped": true}` when check mode skips it.
    async fn run(&self, module: &str, args: J, check: bool) -> J {
        let m = lookup(module).unwrap_or_else(|| panic!("module {module} not registered"));
        let args = match Value::from_json(args) {
            Value::Map(m) => m,
            _ => panic!("args must be a map"),
        };
        match m.run(&args, &self.ctx(check)).await {
            Ok(Some(o)) => Value::Map(o.to_map()).to_json(true),
            Ok(None) => json!({"skipped": true, "changed": false}),
            Err(e) => json!({"failed": true, "msg": e.to_string(), "changed": false}),
        }
    }
}

/// ansible HOST -m MODULE -a JSON; the host's result, as the `--tree` callback writes it.
fn ansible(
    lab: &kiln::lab::Lab,
    host: &str,
    module: &str,
    args: &J,
    check: bool,
    extra: &[&str],
) -> J {
    let tree = tempfile::tempdir().unwrap();
    let mut c = std::process::Command::new(ansible_bin().unwrap());
    c.arg(host)
        .arg("-i")
        .arg(&lab.inventory)
        .args(["-m", module, "-a", &args.to_string()])
        .args(extra)
        .arg("--tree")
        .arg(tree.path())
        .env("ANSIBLE_HOST_KEY_CHECKING", "False")
        .env("ANSIBLE_LOCAL_TEMP", lab.dir.join("ansible-tmp"));
    if check {
        c.arg("--check");
    }
    let out = c.output().expect("run ansible");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut v: J = match std::fs::read(tree.path().join(host)) {
        Ok(text) => serde_json::from_slice(&text).expect("ansible's tree result is JSON"),
        // a skipped task leaves no tree file
        Err(_) if stdout.contains(&format!("{host} | SKIPPED")) => json!({"changed": false}),
        Err(e) => panic!(
            "ansible wrote no result ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
    };
    // the tree drops the status flags: take them from the status line
    let status = stdout
        .lines()
        .find(|l| l.starts_with(&format!("{host} | ")))
        .unwrap_or("");
    assert!(
        !status.contains("UNREACHABLE"),
        "ansible could not reach {host}: {stdout}"
    );
    if status.contains("| FAILED") {
        v["failed"] = json!(true);
    }
    if status.contains("| SKIPPED") {
        v["skipped"] = json!(true);
    }
    v
}

fn flag(v: &J, k: &str) -> bool {
    v.get(k).and_then(|x| x.as_bool()).unwrap_or(false)
}

/// Same changed / failed / skipped, or a message naming the step.
fn same_status(step: &str, k: &J, a: &J) {
    for key in ["changed", "failed", "skipped"] {
        assert_eq!(
            flag(k, key),
            flag(a, key),
            "{step}: `{key}` differs\n kiln: {k}\n ansible: {a}"
        );
    }
}

fn same_keys(step: &str, k: &J, a: &J, keys: &[&str]) {
    for key in keys {
        assert_eq!(
            k.get(*key),
            a.get(*key),
            "{step}: `{key}` differs\n kiln: {k}\n ansible: {a}"
        );
    }
}

fn lines_without_cr(v: &J, key: &str) -> Vec<String> {
    v[key]
        .as_str()
        .unwrap_or("")
        .lines()
        .map(|l| l.trim_end_matches('\r').to_string())
        .filter(|l| !l.is_empty() && !l.starts_with("Shared connection"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misc_modules_match_ansible() {
    if let Some(r) = skip_reason() {
        eprintln!("SKIP misc_modules_match_ansible: {r}");
        return;
    }
    let lab = LabGuard::up(&lab::spec("mmisc").with_hosts(2, &[Flavor::Ubuntu2204]));
    let kh = lab.hosts[0].name.clone();
    let ah = lab.hosts[1].name.clone();
    for h in [&kh, &ah] {
        prepare(&lab, h);
    }
    let h = lab.host(&kh).unwrap();
    let spec = ConnSpec {
        host: kh.clone(),
        addr: h.addr.to_string(),
        user: Some("root".into()),
        key_files: vec![lab.key.clone()],
        known_hosts: vec![lab.known_hosts.clone()],
        host_key_checking: Some(HostKeyChecking::Strict),
        ..ConnSpec::new(&kh)
    };
    let opts = TransportOptions {
        use_ssh_agent: false,
        read_user_ssh_config: false,
        ..Default::default()
    };
    let session = Arc::new(transport::connect(&spec, &opts).await.expect("connect"));
    let scripts = tempfile::tempdir().unwrap();
    let k = Kiln {
        session: session.clone(),
        search: vec![scripts.path().to_path_buf()],
    };
    // both sides: (kiln result, ansible result)
    let both = |module: &'static str, args: J, check: bool| {
        let k = &k;
        let lab = &lab;
        let ah = ah.clone();
        async move {
            let kr = k.run(module, args.clone(), check).await;
            let ar = ansible(lab, &ah, module, &args, check, &[]);
            (kr, ar)
        }
    };
    let on_both = |cmd: &str| (host_sh(&lab, &kh, cmd), host_sh(&lab, &ah, cmd));

    // ---- raw
    let (kr, ar) = both(
        "raw",
        json!({"_raw_params": "echo out; echo err >&2; exit 3"}),
        false,
    )
    .await;
    same_status("raw rc=3", &kr, &ar);
    assert_eq!(kr["rc"], json!(3));
    assert_eq!(kr["rc"], ar["rc"]);
    assert_eq!(kr["msg"], ar["msg"]);
    assert_eq!(kr["stdout_lines"], json!(["out"]));
    assert!(
        lines_without_cr(&ar, "stdout").contains(&"out".to_string()),
        "{ar}"
    );
    let (kr, ar) = both(
        "raw",
        json!({"_raw_params": "echo $0", "executable": "/bin/bash"}),
        false,
    )
    .await;
    same_status("raw executable", &kr, &ar);
    assert_eq!(kr["stdout"], json!("/bin/bash\n"));
    let (kr, ar) = both("raw", json!({"_raw_params": "touch /tmp/raw-check"}), true).await;
    same_status("raw check", &kr, &ar);
    assert_eq!(
        on_both("test -e /tmp/raw-check && echo yes || echo no"),
        ("no\n".into(), "no\n".into())
    );

    // ---- script
    let script = scripts.path().join("probe.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"args: $1|$2\"\npwd\necho ran > /tmp/script-ran\n",
    )
    .unwrap();
    let sp = script.display().to_string();
    let (kr, ar) = both(
        "script",
        json!({"_raw_params": format!("{sp} a"), "chdir": "/srv"}),
        true,
    )
    .await;
    same_status("script check", &kr, &ar);
    // kiln finds the script in its search path; ansible needs the absolute path ad hoc
    let kr = k
        .run(
            "script",
            json!({"_raw_params": "probe.sh a 'b c'", "chdir": "/srv"}),
            false,
        )
        .await;
    let ar = ansible(
        &lab,
        &ah,
        "script",
        &json!({"_raw_params": format!("{sp} a 'b c'"), "chdir": "/srv"}),
        false,
        &[],
    );
    same_status("script run", &kr, &ar);
    assert_eq!(kr["stdout_lines"], json!(["args: a|b c", "/srv"]));
    assert_eq!(lines_without_cr(&ar, "stdout"), vec!["args: a|b c", "/srv"]);
    assert_eq!(
        on_both("cat /tmp/script-ran"),
        ("ran\n".into(), "ran\n".into())
    );
    assert_eq!(
        host_sh(&lab, &kh, "ls -d /tmp/kiln-script.* 2>/dev/null | wc -l").trim(),
        "0"
    );
    let args = json!({"_raw_params": sp, "creates": "/tmp/script-ran"});
    let (kr, ar) = both("script", args, false).await;
    same_status("script creates", &kr, &ar);
    // (ansible's tree output drops a skipped task's msg; its text is in the action plugin)
    assert_eq!(
        kr["msg"],
        json!("/tmp/script-ran exists, matching creates option")
    );
    let (kr, ar) = both(
        "script",
        json!({"_raw_params": sp, "removes": "/tmp/script-ran"}),
        true,
    )
    .await;
    same_status("script removes, check", &kr, &ar);
    assert!(flag(&kr, "changed"));
    let (kr, ar) = both("script", json!({"_raw_params": "/nonexistent/x.sh"}), false).await;
    same_status("script missing", &kr, &ar);

    // ---- wait_for
    let (kr, ar) = both("wait_for", json!({"port": 8080, "timeout": 5}), false).await;
    same_status("wait_for port", &kr, &ar);
    same_keys(
        "wait_for port",
        &kr,
        &ar,
        &["state", "port", "path", "match_groups", "match_groupdict"],
    );
    let (kr, ar) = both(
        "wait_for",
        json!({"port": 8099, "state": "stopped", "timeout": 5}),
        false,
    )
    .await;
    same_status("wait_for stopped", &kr, &ar);
    let (kr, ar) = both("wait_for", json!({"port": 8099, "timeout": 2}), false).await;
    same_status("wait_for timeout", &kr, &ar);
    same_keys("wait_for timeout", &kr, &ar, &["msg"]);
    let args = json!({"path": "/srv/www/file.txt", "search_regex": "^hel(?P<rest>l+)(o)$"});
    let (kr, ar) = both("wait_for", args, false).await;
    same_status("wait_for regex", &kr, &ar);
    same_keys(
        "wait_for regex",
        &kr,
        &ar,
        &["match_groups", "match_groupdict", "path", "search_regex"],
    );
    assert_eq!(kr["match_groupdict"], json!({"rest": "l"}));
    let (kr, ar) = both(
        "wait_for",
        json!({"path": "/nonexistent", "state": "absent", "timeout": 3}),
        true,
    )
    .await;
    same_status("wait_for absent", &kr, &ar);
    // sshd sends its banner first: a regex on a port reads it
    let (kr, ar) = both(
        "wait_for",
        json!({"port": 22, "search_regex": "OpenSSH", "timeout": 10}),
        false,
    )
    .await;
    same_status("wait_for port regex", &kr, &ar);
    same_keys("wait_for port regex", &kr, &ar, &["search_regex", "port"]);
    let (kr, ar) = both(
        "wait_for",
        json!({"port": 22, "search_regex": "NoSuchBanner", "timeout": 3}),
        false,
    )
    .await;
    same_status("wait_for port regex timeout", &kr, &ar);
    same_keys("wait_for port regex timeout", &kr, &ar, &["msg"]);
    let (kr, ar) = both(
        "wait_for",
        json!({"port": 8099, "state": "drained", "timeout": 3}),
        false,
    )
    .await;
    same_status("wait_for drained", &kr, &ar);
    let (kr, ar) = both(
        "wait_for",
        json!({"path": "/srv/never", "timeout": 1, "msg": "custom"}),
        false,
    )
    .await;
    same_status("wait_for file timeout", &kr, &ar);
    same_keys("wait_for file timeout", &kr, &ar, &["msg"]);

    // ---- uri
    let base = "http://127.0.0.1:8080";
    let (kr, ar) = both("uri", json!({"url": format!("{base}/data.json")}), false).await;
    same_status("uri json", &kr, &ar);
    same_keys(
        "uri json",
        &kr,
        &ar,
        &[
            "status",
            "json",
            "url",
            "redirected",
            "content_type",
            "content_length",
            "msg",
        ],
    );
    let (kr, ar) = both("uri", json!({"url": format!("{base}/missing")}), false).await;
    same_status("uri 404", &kr, &ar);
    same_keys("uri 404", &kr, &ar, &["status", "msg"]);
    let (kr, ar) = both(
        "uri",
        json!({"url": format!("{base}/missing"), "status_code": [200, 404]}),
        false,
    )
    .await;
    same_status("uri 404 accepted", &kr, &ar);
    let (kr, ar) = both(
        "uri",
        json!({"url": format!("{base}/redirect"), "return_content": true}),
        false,
    )
    .await;
    same_status("uri redirect", &kr, &ar);
    same_keys(
        "uri redirect",
        &kr,
        &ar,
        &["status", "url", "redirected", "content", "json"],
    );
    let args = json!({"url": format!("{base}/echo"), "method": "POST", "body_format": "json",
                      "body": {"name": "kiln", "n": [1, 2]}, "status_code": 201});
    let (kr, ar) = both("uri", args, false).await;
    same_status("uri post json", &kr, &ar);
    same_keys("uri post json", &kr, &ar, &["status"]);
    let kb: J = serde_json::from_str(kr["json"]["body"].as_str().unwrap()).unwrap();
    let ab: J = serde_json::from_str(ar["json"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(kb, ab);
    assert_eq!(kr["json"]["content_type"], ar["json"]["content_type"]);
    let args = json!({"url": format!("{base}/echo"), "method": "POST", "body_format": "form-urlencoded",
                      "body": {"a": "x y", "b": "&"}, "status_code": [201]});
    let (kr, ar) = both("uri", args, false).await;
    same_status("uri post form", &kr, &ar);
    assert_eq!(kr["json"], ar["json"]);
    for force in [true, false] {
        let args = json!({"url": format!("{base}/auth/file.txt"), "url_username": "alice",
                          "url_password": "s3cr3t", "force_basic_auth": force, "return_content": true});
        let (kr, ar) = both("uri", args, false).await;
        same_status("uri basic auth", &kr, &ar);
        same_keys("uri basic auth", &kr, &ar, &["status", "content"]);
        assert!(
            !kr.to_string().contains("s3cr3t"),
            "the password leaks into the result: {kr}"
        );
    }
    // while curl runs on the host, no process there shows the password on its command line
    let watcher = {
        let lab: kiln::lab::Lab = (*lab).clone();
        let kh = kh.clone();
        tokio::task::spawn_blocking(move || {
            let mut seen = 0;
            let mut curl_seen = 0;
            for _ in 0..25 {
                let out = host_sh(
                    &lab,
                    &kh,
                    "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f 2>/dev/null; echo; done",
                );
                seen += out.lines().filter(|l| l.contains("s3cr3t")).count();
                curl_seen += out.lines().filter(|l| l.starts_with("curl ")).count();
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            (seen, curl_seen)
        })
    };
    let args = json!({"url": format!("{base}/auth/slow"), "url_username": "alice",
                      "url_password": "s3cr3t", "force_basic_auth": true, "return_content": true});
    let kr = k.run("uri", args, false).await;
    let (seen, curl_seen) = watcher.await.unwrap();
    assert_eq!(kr["content"], json!("hello\n"), "{kr}");
    assert!(curl_seen > 0, "the watcher never saw curl running");
    assert_eq!(
        seen, 0,
        "the password was visible in a command line on the host"
    );
    let args = json!({"url": format!("{base}/auth/file.txt"), "url_username": "alice", "url_password": "wrong"});
    let (kr, ar) = both("uri", args, false).await;
    same_status("uri bad password", &kr, &ar);
    same_keys("uri bad password", &kr, &ar, &["status"]);
    let (kr, ar) = both("uri", json!({"url": "http://127.0.0.1:8099/"}), false).await;
    same_status("uri refused", &kr, &ar);
    same_keys("uri refused", &kr, &ar, &["status"]);
    let (kr, ar) = both(
        "uri",
        json!({"url": format!("{base}/file.txt"), "dest": "/tmp/uri-dest.txt"}),
        false,
    )
    .await;
    same_status("uri dest", &kr, &ar);
    same_keys("uri dest", &kr, &ar, &["path"]);
    assert_eq!(
        on_both("cat /tmp/uri-dest.txt"),
        ("hello\n".into(), "hello\n".into())
    );
    let (kr, ar) = both(
        "uri",
        json!({"url": format!("{base}/file.txt"), "dest": "/tmp/uri-check.txt"}),
        true,
    )
    .await;
    same_status("uri check", &kr, &ar);
    assert_eq!(
        host_sh(&lab, &kh, "ls /tmp/kiln-http.* 2>/dev/null | wc -l").trim(),
        "0"
    );

    // ---- get_url
    let sha = "sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
    let args = json!({"url": format!("{base}/file.txt"), "dest": "/tmp/dl.txt", "mode": "0640"});
    let (kr, ar) = both("get_url", args.clone(), true).await;
    same_status("get_url check", &kr, &ar);
    assert_eq!(
        on_both("test -e /tmp/dl.txt && echo yes || echo no"),
        ("no\n".into(), "no\n".into())
    );
    for step in ["get_url first", "get_url second"] {
        let (kr, ar) = both("get_url", args.clone(), false).await;
        same_status(step, &kr, &ar);
        same_keys(
            step,
            &kr,
            &ar,
            &["dest", "url", "checksum_src", "mode", "size", "status_code"],
        );
    }
    assert_eq!(
        on_both("stat -c '%a %s' /tmp/dl.txt; cat /tmp/dl.txt"),
        ("640 6\nhello\n".into(), "640 6\nhello\n".into())
    );
    let args = json!({"url": format!("{base}/file.txt"), "dest": "/tmp/dl.txt", "checksum": sha, "mode": "0600"});
    let (kr, ar) = both("get_url", args, false).await;
    same_status("get_url checksum, attributes", &kr, &ar);
    same_keys("get_url checksum, attributes", &kr, &ar, &["msg", "mode"]);
    let args = json!({"url": format!("{base}/file.txt"), "dest": "/tmp/dl.txt", "checksum": sha});
    let (kr, ar) = both("get_url", args, false).await;
    same_status("get_url checksum ok", &kr, &ar);
    same_keys("get_url checksum ok", &kr, &ar, &["msg"]);
    let bad = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    let args =
        json!({"url": format!("{base}/file.txt"), "dest": "/tmp/dl-bad.txt", "checksum": bad});
    let (kr, ar) = both("get_url", args, false).await;
    same_status("get_url checksum bad", &kr, &ar);
    same_keys("get_url checksum bad", &kr, &ar, &["msg"]);
    assert_eq!(
        on_both("test -e /tmp/dl-bad.txt && echo yes || echo no"),
        ("no\n".into(), "no\n".into())
    );
    let args = json!({"url": format!("{base}/auth/file.txt"), "dest": "/tmp/", "url_username": "alice",
                      "url_password": "s3cr3t", "force_basic_auth": true});
    let (kr, ar) = both("get_url", args, false).await;
    same_status("get_url to a directory with auth", &kr, &ar);
    same_keys("get_url to a directory with auth", &kr, &ar, &["dest"]);
    assert!(!kr.to_string().contains("s3cr3t"));
    let (kr, ar) = both(
        "get_url",
        json!({"url": format!("{base}/missing"), "dest": "/tmp/m"}),
        false,
    )
    .await;
    same_status("get_url 404", &kr, &ar);
    same_keys("get_url 404", &kr, &ar, &["status_code"]);

    // ---- pip (ansible's pip module needs setuptools or packaging in the host's python3)
    let venv = json!({"name": "kilnprobe==1.0", "virtualenv": "/opt/venv", "virtualenv_command": "python3 -m venv",
                      "extra_args": "--no-index --find-links /srv/wheels"});
    let (kr, ar) = both("pip", venv.clone(), true).await;
    same_status("pip check", &kr, &ar);
    assert_eq!(
        on_both("test -e /opt/venv && echo yes || echo no"),
        ("no\n".into(), "no\n".into())
    );
    for step in ["pip install", "pip again"] {
        let (kr, ar) = both("pip", venv.clone(), false).await;
        same_status(step, &kr, &ar);
        same_keys(step, &kr, &ar, &["name", "version", "state", "virtualenv"]);
    }
    let show = "/opt/venv/bin/python -c 'import kilnprobe; print(kilnprobe.VERSION)'";
    assert_eq!(on_both(show), ("1.0\n".into(), "1.0\n".into()));
    let mut spec = venv.clone();
    spec["name"] = json!(["kilnprobe>=1.0", "<3"]);
    let (kr, ar) = both("pip", spec, false).await;
    same_status("pip specifier satisfied", &kr, &ar);
    assert!(!flag(&kr, "changed"));
    let mut latest = venv.clone();
    latest["name"] = json!("kilnprobe");
    latest["state"] = json!("latest");
    let (kr, ar) = both("pip", latest, false).await;
    same_status("pip latest", &kr, &ar);
    assert_eq!(on_both(show), ("2.0\n".into(), "2.0\n".into()));
    on_both("echo 'kilnprobe==1.0' > /srv/requirements.txt");
    let reqs = json!({"requirements": "/srv/requirements.txt", "virtualenv": "/opt/venv",
                      "extra_args": "--no-index --find-links /srv/wheels"});
    for step in ["pip requirements (downgrade)", "pip requirements again"] {
        let (kr, ar) = both("pip", reqs.clone(), false).await;
        same_status(step, &kr, &ar);
        same_keys(step, &kr, &ar, &["requirements", "virtualenv"]);
    }
    assert_eq!(on_both(show), ("1.0\n".into(), "1.0\n".into()));
    let absent = json!({"name": "kilnprobe", "virtualenv": "/opt/venv", "state": "absent"});
    let (kr, ar) = both("pip", absent.clone(), true).await;
    same_status("pip absent check", &kr, &ar);
    assert!(flag(&kr, "changed"));
    for step in ["pip absent", "pip absent again"] {
        let (kr, ar) = both("pip", absent.clone(), false).await;
        same_status(step, &kr, &ar);
    }
    assert_eq!(
        on_both("/opt/venv/bin/pip show -q kilnprobe >/dev/null 2>&1 && echo yes || echo no"),
        ("no\n".into(), "no\n".into())
    );

    // ---- git
    let sha = |host: &str, rev: &str| {
        host_sh(&lab, host, &format!("git -C /srv/repo.git rev-parse {rev}"))
            .trim()
            .to_string()
    };
    let (main_sha, v1_sha) = (sha(&kh, "main"), sha(&kh, "v1^{}"));
    let repo = json!({"repo": "file:///srv/repo.git", "dest": "/srv/co"});
    let (kr, ar) = both("git", repo.clone(), true).await;
    same_status("git check", &kr, &ar);
    assert_eq!(kr["after"], json!(main_sha));
    assert_eq!(
        on_both("test -e /srv/co && echo yes || echo no"),
        ("no\n".into(), "no\n".into())
    );
    for step in ["git clone", "git again"] {
        let (kr, ar) = both("git", repo.clone(), false).await;
        same_status(step, &kr, &ar);
        assert_eq!(kr["after"], json!(main_sha), "{step}: {kr}");
        assert_eq!(ar["after"], json!(sha(&ah, "main")), "{step}: {ar}");
        assert_eq!(kr["before"].is_null(), ar["before"].is_null(), "{step}");
    }
    let mut tag = repo.clone();
    tag["version"] = json!("v1");
    let (kr, ar) = both("git", tag, false).await;
    same_status("git tag", &kr, &ar);
    assert_eq!(kr["after"], json!(v1_sha));
    let mut dev = repo.clone();
    dev["version"] = json!("dev");
    let (kr, ar) = both("git", dev.clone(), false).await;
    same_status("git branch at the same commit", &kr, &ar);
    assert_eq!(
        on_both("git -C /srv/co rev-parse --abbrev-ref HEAD"),
        ("dev\n".into(), "dev\n".into())
    );
    on_both("echo local > /srv/co/f");
    let (kr, ar) = both("git", repo.clone(), false).await;
    same_status("git local mods", &kr, &ar);
    same_keys("git local mods", &kr, &ar, &["msg"]);
    let mut force = repo.clone();
    force["force"] = json!(true);
    let (kr, ar) = both("git", force, false).await;
    same_status("git force", &kr, &ar);
    // HEAD on a checkout that is on a branch (dev) means that branch
    assert_eq!(on_both("cat /srv/co/f"), ("one\n".into(), "one\n".into()));
    let mut shallow = repo.clone();
    shallow["dest"] = json!("/srv/shallow");
    shallow["depth"] = json!(1);
    let (kr, ar) = both("git", shallow, false).await;
    same_status("git depth", &kr, &ar);
    assert_eq!(
        on_both("git -C /srv/shallow rev-list --count HEAD"),
        ("1\n".into(), "1\n".into())
    );
    // a new commit upstream: check mode sees it and changes nothing; update: no ignores it
    host_sh(&lab, &kh, "cd /srv/work && git checkout -q dev && echo three > f && git commit -qam three && git push -q /srv/repo.git dev");
    host_sh(&lab, &ah, "cd /srv/work && git checkout -q dev && echo three > f && git commit -qam three && git push -q /srv/repo.git dev");
    let before = on_both("git -C /srv/co rev-parse HEAD");
    let (kr, ar) = both("git", dev.clone(), true).await;
    same_status("git check, new upstream commit", &kr, &ar);
    assert!(flag(&kr, "changed"));
    assert_eq!(kr["after"], json!(sha(&kh, "dev")));
    assert_eq!(on_both("git -C /srv/co rev-parse HEAD"), before);
    let mut no_update = dev.clone();
    no_update["update"] = json!(false);
    let (kr, ar) = both("git", no_update, false).await;
    same_status("git update: no", &kr, &ar);
    assert_eq!(kr["before"], kr["after"]);
    let (kr, ar) = both("git", dev.clone(), false).await;
    same_status("git pull", &kr, &ar);
    assert_eq!(
        on_both("cat /srv/co/f"),
        ("three\n".into(), "three\n".into())
    );
    let mut no_clone = repo.clone();
    no_clone["dest"] = json!("/srv/none");
    no_clone["clone"] = json!(false);
    let (kr, ar) = both("git", no_clone, false).await;
    same_status("git clone: no", &kr, &ar);
    assert_eq!(
        on_both("test -e /srv/none && echo yes || echo no"),
        ("no\n".into(), "no\n".into())
    );
    let mut moved = repo.clone();
    on_both("cp -a /srv/repo.git /srv/repo2.git");
    moved["repo"] = json!("file:///srv/repo2.git");
    let (kr, ar) = both("git", moved, false).await;
    same_status("git new remote url", &kr, &ar);
    same_keys("git new remote url", &kr, &ar, &["remote_url_changed"]);

    session.close().await;
}
