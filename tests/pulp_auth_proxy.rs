//! kiln's shipped `playbooks/pulp-auth-proxy.yml` (role `pulp_auth_proxy`), run for real with
//! `kiln playbook run` over SSH against a kiln lab host, with the ci-builder environment's age
//! vault holding the credentials:
//!
//! - the upstream is a real nginx with `auth_basic` (htpasswd) on this machine's lab-bridge
//!   address, behaving like Pulp for this purpose: `/pulp/api/v3/status/` and a small Debian
//!   repository (`Packages` + a `.deb`) under `/pulp/content/`; its access log records the user
//!   each request authenticated as;
//! - the proxy runs as a podman container (runc, the host's own containers.conf) from a
//!   stand-in `nginx:stable-alpine` image: this machine cannot pull from public registries
//!   (LAB.md), so the image is `podman import`ed from a root filesystem holding Debian's nginx
//!   (environments/lab/files/nginx-stand-in.sh), built once and cached under /var/cache/kiln-lab/;
//! - what is asserted: `--check --diff` on the fresh host changes nothing; the deploy makes the
//!   container; through `http://127.0.0.1:<port>/` the host gets the content and `apt-get update`
//!   works with no credentials of its own, while the upstream answers 401 without them and sees
//!   the injected user; the proxy answers on no other address (neither the host's lab address
//!   from itself nor from another lab host); conf 0600 / dir 0700; a second run is changed=0; a
//!   changed password (vault re-encrypted) is picked up; a credential planted where a build would
//!   copy it fails the run, naming the file but not the secret; the password (plain and base64)
//!   appears in no kiln output (human -vvv --diff, JSON), in no process's command line during the
//!   run, and in no file of the host outside the conf.
//!
//! A second test renders the role's template with ansible-core and with kiln and compares them.

mod lab;
mod playbook_runner;

use base64::Engine as _;
use kiln::lab::Flavor;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const UPSTREAM_PORT: u16 = 18410;
const PROXY_PORT: u16 = 18480;
const CONF: &str = "/opt/kayobe/containers/pulp_proxy/pulp_proxy.conf";
const CONF_DIR: &str = "/opt/kayobe/containers/pulp_proxy";
const KOLLA_DIR: &str = "/opt/kayobe/etc/kolla";
const STAND_IN_CACHE: &str = "/var/cache/kiln-lab/pp-nginx-stable-alpine-stand-in.tar";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn sh(h: &kiln::lab::Host, script: &str) -> (bool, String) {
    let o = h.exec(&["sh", "-c", script]).expect("exec in lab host");
    (
        o.status.success(),
        format!("{}{}", text(&o.stdout), text(&o.stderr)),
    )
}

/// The real upstream: nginx with auth_basic on the lab bridge, stopped when dropped.
struct Upstream {
    child: Child,
    dir: tempfile::TempDir,
}

impl Upstream {
    fn start(addr: std::net::Ipv4Addr, user: &str, password: &str) -> Upstream {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let content = d.join("www/pulp/content/debian");
        std::fs::create_dir_all(&content).unwrap();
        std::fs::create_dir_all(d.join("www/pulp/api/v3/status")).unwrap();
        std::fs::write(
            d.join("www/pulp/api/v3/status/index.json"),
            "{\"versions\": [{\"component\": \"core\", \"version\": \"3.49.0\"}], \"online_workers\": []}\n",
        )
        .unwrap();
        std::fs::write(content.join("hello.txt"), "hello from pulp\n").unwrap();
        // a one-package Debian repository (flat layout): apt-get update reads Packages
        let pkg = d.join("pkg");
        std::fs::create_dir_all(pkg.join("DEBIAN")).unwrap();
        std::fs::write(
            pkg.join("DEBIAN/control"),
            "Package: pp-hello\nVersion: 1.0\nArchitecture: all\nMaintainer: kiln tests <kiln@example.invalid>\nDescription: stand-in package served by the fake Pulp\n",
        )
        .unwrap();
        let ok = Command::new("dpkg-deb")
            .args(["--build", "--root-owner-group"])
            .arg(&pkg)
            .arg(content.join("pp-hello_1.0_all.deb"))
            .output()
            .unwrap();
        assert!(ok.status.success(), "dpkg-deb: {}", text(&ok.stderr));
        let scan = Command::new("dpkg-scanpackages")
            .args(["-m", "."])
            .current_dir(&content)
            .output()
            .unwrap();
        assert!(scan.status.success(), "{}", text(&scan.stderr));
        std::fs::write(content.join("Packages"), &scan.stdout).unwrap();
        Self::htpasswd(d, user, password);
        std::fs::write(
            d.join("nginx.conf"),
            format!(
                "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
                 events {{ worker_connections 64; }}\n\
                 http {{\n  log_format pp '$remote_user $request_uri $status';\n\
                   access_log {d}/access.log pp;\n\
                   client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp;\n\
                   uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;\n\
                   server {{\n    listen {addr}:{UPSTREAM_PORT};\n    root {d}/www;\n\
                     auth_basic \"pulp\";\n    auth_basic_user_file {d}/htpasswd;\n\
                     location = /pulp/api/v3/status/ {{ default_type application/json; try_files /pulp/api/v3/status/index.json =404; }}\n\
                   }}\n}}\n",
                d = d.display()
            ),
        )
        .unwrap();
        std::fs::create_dir_all(d.join("tmp")).unwrap();
        let child = Command::new("nginx")
            .arg("-c")
            .arg(d.join("nginx.conf"))
            .arg("-p")
            .arg(d)
            .spawn()
            .expect("start nginx");
        let up = Upstream { child, dir };
        for _ in 0..50 {
            if std::net::TcpStream::connect((addr, UPSTREAM_PORT)).is_ok() {
                return up;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "upstream nginx did not start: {}",
            std::fs::read_to_string(up.dir.path().join("error.log")).unwrap_or_default()
        );
    }

    fn htpasswd(d: &Path, user: &str, password: &str) {
        // the password goes to htpasswd on stdin (-i), not on its command line
        use std::io::Write;
        let mut c = Command::new("htpasswd")
            .args(["-c", "-i", "-B"])
            .arg(d.join("htpasswd"))
            .arg(user)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("htpasswd");
        c.stdin
            .take()
            .unwrap()
            .write_all(password.as_bytes())
            .unwrap();
        assert!(c.wait().unwrap().success());
    }

    /// New credentials: nginx re-reads the htpasswd file on every request.
    fn set_password(&self, user: &str, password: &str) {
        Self::htpasswd(self.dir.path(), user, password);
    }

    fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Kayobe configuration path holding a copy of the ci-builder environment, its inventory
/// naming the lab host as the seed (the image builder).
struct Env {
    cfg: PathBuf,
    home: PathBuf,
    lab_inventory: PathBuf,
}

struct Out {
    rc: i32,
    stdout: String,
    stderr: String,
    secs: f64,
}

impl Out {
    fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl Env {
    fn env_dir(&self) -> PathBuf {
        self.cfg.join("environments/ci-builder")
    }

    fn kiln(&self, args: &[&str]) -> Out {
        let t = Instant::now();
        let o = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .env("HOME", &self.home)
            .env("XDG_CACHE_HOME", self.home.join("cache"))
            .env("KILN_AGE_PASSPHRASE", "kiln-lab-throwaway")
            .env_remove("KAYOBE_CONFIG_PATH")
            .env_remove("KAYOBE_ENVIRONMENT")
            .env_remove("KILN_AGE_IDENTITY")
            .arg("--config-path")
            .arg(&self.cfg)
            .args(["--environment", "ci-builder", "--age-identity"])
            .arg(self.env_dir().join("lab-identity.age"))
            // `-i` replaces the configuration's inventories (as in Kayobe): give the
            // environment's (seed = the lab host) and the lab's (how to reach it)
            .arg("-i")
            .arg(self.env_dir().join("inventory"))
            .arg("-i")
            .arg(&self.lab_inventory)
            .args(args)
            .output()
            .expect("run kiln");
        Out {
            rc: o.status.code().unwrap_or(-1),
            stdout: text(&o.stdout),
            stderr: text(&o.stderr),
            secs: t.elapsed().as_secs_f64(),
        }
    }

    /// The vault's plaintext (YAML), through `kiln vault view`.
    fn secrets(&self) -> serde_yaml::Value {
        let o = self.kiln(&[
            "vault",
            "view",
            self.env_dir().join("secrets.yml.age").to_str().unwrap(),
        ]);
        assert_eq!(o.rc, 0, "vault view: {}", o.all());
        serde_yaml::from_str(&o.stdout).expect("vault YAML")
    }

    /// Re-encrypts the vault with a new mirror password, with the stock `age` tool and the
    /// environment's recipients (as `kiln vault edit` would).
    fn set_password(&self, password: &str) {
        let mut doc = self.secrets();
        doc["stackhpc_repo_mirror_password"] = serde_yaml::Value::String(password.into());
        let plain = serde_yaml::to_string(&doc).unwrap();
        use std::io::Write;
        let out = self.env_dir().join("secrets.yml.age");
        let mut c = Command::new("age")
            .args(["-e", "-a", "-R"])
            .arg(self.env_dir().join(".age-recipients"))
            .arg("-o")
            .arg(&out)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("age");
        c.stdin.take().unwrap().write_all(plain.as_bytes()).unwrap();
        assert!(c.wait().unwrap().success(), "age -e failed");
    }

    fn play(&self, extra: &[&str]) -> Out {
        // one `-e @file` (see README: several -e after the verb are a known kiln gap)
        let at = format!("@{}", self.home.join("vars.yml").display());
        let mut a = vec!["playbook", "run", "-e", at.as_str()];
        a.extend_from_slice(extra);
        a.push("pulp-auth-proxy.yml");
        let o = self.kiln(&a);
        eprintln!(
            "kiln playbook run {}: rc {} in {:.2} s",
            extra.join(" "),
            o.rc,
            o.secs
        );
        o
    }
}

/// Every recap stat (host → counts) of a `--format json` run.
fn recap(stdout: &str) -> serde_json::Value {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "recap")
        .map(|v| v["stats"].clone())
        .last()
        .unwrap_or(serde_json::Value::Null)
}

fn task_status(stdout: &str, task: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        // role tasks are shown as `role : name`
        .filter(|v| {
            v["event"] == "task_result"
                && v["task"]
                    .as_str()
                    .is_some_and(|t| t == task || t.ends_with(&format!(" : {task}")))
        })
        .map(|v| v["status"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn changed(stdout: &str, host: &str) -> i64 {
    let r = recap(stdout);
    r[host]["changed"].as_i64().unwrap_or(-1)
}

fn which_all(tools: &[&str]) -> Option<String> {
    tools
        .iter()
        .find(|t| lab::which(t).is_none())
        .map(|t| format!("{t} is missing (tests/setup installs it)"))
}

/// The stand-in image's root filesystem tarball, built once and cached.
fn stand_in_tarball() -> PathBuf {
    let p = PathBuf::from(STAND_IN_CACHE);
    let script = repo().join("environments/lab/files/nginx-stand-in.sh");
    let fresh = match (std::fs::metadata(&p), std::fs::metadata(&script)) {
        (Ok(t), Ok(s)) => t.modified().unwrap() >= s.modified().unwrap(),
        _ => false,
    };
    if !fresh {
        let o = Command::new("sh").arg(&script).arg(&p).output().unwrap();
        assert!(o.status.success(), "nginx-stand-in.sh: {}", text(&o.stderr));
    }
    p
}

/// Samples every command line on the lab host while a run goes on.
struct PsWatch {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<String>>>,
    t: Option<std::thread::JoinHandle<()>>,
}

impl PsWatch {
    fn start(h: &kiln::lab::Host) -> PsWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s2, seen2, h2) = (stop.clone(), seen.clone(), h.clone());
        let t = std::thread::spawn(move || {
            while !s2.load(Ordering::SeqCst) {
                if let Ok(o) = h2.exec(&["ps", "-eo", "args"]) {
                    seen2.lock().unwrap().push(text(&o.stdout));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        PsWatch {
            stop,
            seen,
            t: Some(t),
        }
    }

    fn finish(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.t.take() {
            let _ = t.join();
        }
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

fn assert_no_leak(what: &str, hay: &str, needles: &[String]) {
    for n in needles {
        assert!(
            !hay.contains(n.as_str()),
            "{what}: a credential form ({} chars) appears in it",
            n.len()
        );
    }
}

fn leak_forms(user: &str, password: &str) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    vec![
        password.to_string(),
        b64.encode(format!("{user}:{password}")),
    ]
}

#[test]
fn pulp_auth_proxy_on_a_lab_host_with_podman() {
    require_lab!();
    if let Some(r) = which_all(&[
        "podman",
        "runc",
        "nginx",
        "htpasswd",
        "age",
        "dpkg-deb",
        "dpkg-scanpackages",
        "curl",
    ]) {
        eprintln!("SKIP: {r}");
        return;
    }
    let tarball = stand_in_tarball();
    let lab = lab::LabGuard::up(
        &lab::spec("pp").with_hosts(2, &[Flavor::Ubuntu2204, Flavor::Ubuntu2204]),
    );
    let (h, other) = (&lab.hosts[0], &lab.hosts[1]);
    let lab_addr = h.lab_addr.expect("lab address");

    // configuration: the ci-builder environment, the lab host as its seed
    let tmp = tempfile::tempdir().unwrap();
    let env = Env {
        cfg: tmp.path().join("kayobe-config"),
        home: tmp.path().join("home"),
        lab_inventory: lab.inventory.clone(),
    };
    std::fs::create_dir_all(&env.home).unwrap();
    lab::copy_tree(&repo().join("environments/ci-builder"), &env.env_dir());
    std::fs::write(
        env.env_dir().join("inventory/hosts"),
        format!("[seed]\n{}\n", h.name),
    )
    .unwrap();
    let secrets = env.secrets();
    let user = secrets["stackhpc_repo_mirror_username"]
        .as_str()
        .expect("username in the vault")
        .to_string();
    let password = secrets["stackhpc_repo_mirror_password"]
        .as_str()
        .expect("password in the vault")
        .to_string();
    let upstream_url = format!("http://{}:{UPSTREAM_PORT}", lab.gateway);
    std::fs::write(
        env.home.join("vars.yml"),
        format!(
            "# the lab's hosts take root (the seed group's default is the Kayobe user)\n\
             ansible_user: root\n\
             stackhpc_repo_mirror_auth_proxy_enabled: true\n\
             stackhpc_release_pulp_url: \"{upstream_url}\"\n\
             stackhpc_repo_mirror_auth_proxy_port: {PROXY_PORT}\n\
             container_engine: podman\n\
             pulp_auth_proxy_health_delay: 1\n"
        ),
    )
    .unwrap();
    let upstream = Upstream::start(lab.gateway, &user, &password);

    // the host's podman: runc and rlimits this kernel allows (LAB.md), no pids limit (the lab's
    // cgroup2 mount has no controllers: this VM's are on cgroup v1), vfs storage (its root is an
    // overlay), and the stand-in image
    let (ok, o) = sh(
        h,
        &format!(
            "set -e; mkdir -p /etc/containers; \
             printf '[containers]\\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=4096:4096\"]\\npids_limit = 0\\n[engine]\\nruntime = \"runc\"\\ncgroup_manager = \"cgroupfs\"\\nevents_logger = \"file\"\\n' > /etc/containers/containers.conf; \
             printf '[storage]\\ndriver = \"vfs\"\\nrunroot = \"/run/containers/storage\"\\ngraphroot = \"/var/lib/containers/storage\"\\n' > /etc/containers/storage.conf; \
             podman import --change 'CMD [\"/usr/sbin/nginx\",\"-g\",\"daemon off;\"]' {} nginx:stable-alpine >/dev/null",
            tarball.display()
        ),
    );
    assert!(ok, "podman setup on the lab host: {o}");

    let mut outputs: Vec<(String, String)> = Vec::new();

    // 1. --check --diff on the fresh host: says what it would make, makes nothing
    let check = env.play(&["--check", "--diff", "-vvv"]);
    outputs.push(("--check --diff -vvv".into(), check.all()));
    assert_eq!(check.rc, 0, "check run:\n{}", check.all());
    assert!(
        check.stdout.contains("Ensure pulp_proxy.conf is templated"),
        "{}",
        check.stdout
    );
    assert!(
        !sh(h, &format!("test -e {CONF_DIR}")).0,
        "--check made {CONF_DIR}"
    );
    assert!(
        !sh(h, "podman container exists pulp_proxy").0,
        "--check made the container"
    );
    let check_json = env.play(&["--check", "--format", "json"]);
    outputs.push(("--check json".into(), check_json.all()));
    assert_eq!(check_json.rc, 0, "{}", check_json.all());
    assert_eq!(
        task_status(&check_json.stdout, "Ensure pulp_proxy.conf is templated"),
        ["changed"],
        "{}",
        check_json.stdout
    );

    // 2. the deploy (cold), watching the host's process list
    let watch = PsWatch::start(h);
    let first = env.play(&["--format", "json"]);
    let ps = watch.finish();
    outputs.push(("first run json".into(), first.all()));
    assert_eq!(first.rc, 0, "first run:\n{}", first.all());
    assert!(changed(&first.stdout, &h.name) >= 3, "{}", first.stdout);
    assert_eq!(
        task_status(
            &first.stdout,
            "Ensure pulp_proxy container is running (podman)"
        ),
        ["changed"]
    );
    let ps_all = ps.join("\n");
    assert!(
        ps.len() >= 3,
        "the process list was sampled {} times",
        ps.len()
    );
    assert_no_leak(
        "process list during the run",
        &ps_all,
        &leak_forms(&user, &password),
    );
    eprintln!("cold deploy: {:.2} s", first.secs);

    // the proxy serves the upstream's content with no credentials of its own
    let (ok, body) = sh(
        h,
        &format!("curl -sf http://127.0.0.1:{PROXY_PORT}/pulp/content/debian/hello.txt"),
    );
    assert!(ok, "through the proxy: {body}");
    assert_eq!(body, "hello from pulp\n");
    let (_, code) = sh(
        h,
        &format!(
            "curl -s -o /dev/null -w '%{{http_code}}' {upstream_url}/pulp/content/debian/hello.txt"
        ),
    );
    assert_eq!(code, "401", "the upstream without credentials");
    assert!(
        upstream
            .access_log()
            .contains(&format!("{user} /pulp/content/debian/hello.txt 200")),
        "the upstream saw the injected user:\n{}",
        upstream.access_log()
    );
    // apt through the proxy, as a build's package manager would
    let (ok, apt) = sh(
        h,
        &format!(
            "mkdir -p /tmp/pp-lists/partial /tmp/pp-cache/archives/partial && \
             echo 'deb [trusted=yes] http://127.0.0.1:{PROXY_PORT}/pulp/content/debian ./' > /tmp/pp.list && \
             apt-get update -o Dir::Etc::SourceList=/tmp/pp.list -o Dir::Etc::SourceParts=/dev/null \
               -o Dir::State::Lists=/tmp/pp-lists -o Dir::Cache=/tmp/pp-cache 2>&1 && \
             apt-cache -o Dir::Etc::SourceList=/tmp/pp.list -o Dir::Etc::SourceParts=/dev/null \
               -o Dir::State::Lists=/tmp/pp-lists -o Dir::Cache=/tmp/pp-cache policy pp-hello"
        ),
    );
    assert!(
        ok && apt.contains("Candidate: 1.0"),
        "apt through the proxy:\n{apt}"
    );

    // nothing listens on the host's other addresses: not from the host, not from another host
    for (who, from) in [("the host itself", h), ("another lab host", other)] {
        let (ok, o) = sh(
            from,
            &format!("curl -s -m 5 -o /dev/null http://{lab_addr}:{PROXY_PORT}/; echo rc=$?"),
        );
        assert!(
            ok && o.contains("rc=7"),
            "{who} reached the proxy on {lab_addr}: {o}"
        );
    }
    // the local addresses of the sockets listening on the port: the listen IP only
    let (_, ss) = sh(
        h,
        &format!("ss -Htln 'sport = :{PROXY_PORT}' | awk '{{print $4}}'"),
    );
    let locals: Vec<&str> = ss.lines().collect();
    assert_eq!(
        locals,
        [format!("127.0.0.1:{PROXY_PORT}")],
        "listening sockets: {ss}"
    );
    // modes, restart policy
    assert_eq!(sh(h, &format!("stat -c %a {CONF}")).1.trim(), "600");
    assert_eq!(sh(h, &format!("stat -c %a {CONF_DIR}")).1.trim(), "700");
    let (_, policy) = sh(
        h,
        "podman inspect pulp_proxy --format '{{.HostConfig.RestartPolicy.Name}}'",
    );
    assert_eq!(policy.trim(), "always");
    // the credentials are in the conf (base64) and in no other file of the host it wrote to
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let (_, conf) = sh(h, &format!("cat {CONF}"));
    assert!(conf.contains(&b64), "the conf holds the header");
    assert!(
        conf.contains(&format!("listen 127.0.0.1:{PROXY_PORT};")),
        "{conf}"
    );
    // (the needles go through a file the lab host sees: its root's lower layer is this machine's /)
    let needles_file = format!("/var/cache/kiln-lab/pp-needles-{}", std::process::id());
    std::fs::write(&needles_file, format!("{password}\n{b64}\n")).unwrap();
    let (_, found) = sh(
        h,
        &format!(
            "grep -rlF -f {needles_file} /opt /etc /root /tmp /var/lib/containers /var/log /run 2>/dev/null | grep -v '^{CONF}$'; true"
        ),
    );
    let _ = std::fs::remove_file(&needles_file);
    assert_eq!(found.trim(), "", "credentials found outside the conf");

    // 3. a second run (warm) changes nothing; human output, -vvv and --diff, for the leak check
    let second = env.play(&["--diff", "-vvv"]);
    outputs.push(("second run human -vvv --diff".into(), second.all()));
    assert_eq!(second.rc, 0, "second run:\n{}", second.all());
    assert!(
        second.stdout.contains("changed=0") && !second.stdout.contains("changed=1"),
        "second run changed something:\n{}",
        second.stdout
    );
    let third = env.play(&["--format", "json"]);
    outputs.push(("third run json".into(), third.all()));
    assert_eq!(changed(&third.stdout, &h.name), 0, "{}", third.stdout);
    eprintln!("warm deploy: {:.2} s", third.secs);

    // 4. a changed password is picked up (conf rewritten, container restarted)
    let new_password = "pp-rotated-Secr3t-value";
    env.set_password(new_password);
    upstream.set_password(&user, new_password);
    let (_, code) = sh(
        h,
        &format!("curl -s -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{PROXY_PORT}/pulp/content/debian/hello.txt"),
    );
    assert_eq!(code, "401", "the old password no longer works upstream");
    let rotated = env.play(&["--format", "json", "--diff"]);
    outputs.push(("rotated run json --diff".into(), rotated.all()));
    assert_eq!(rotated.rc, 0, "{}", rotated.all());
    assert_eq!(
        task_status(&rotated.stdout, "Ensure pulp_proxy.conf is templated"),
        ["changed"]
    );
    assert_eq!(
        task_status(
            &rotated.stdout,
            "Ensure pulp_proxy container is running (podman)"
        ),
        ["changed"]
    );
    let (ok, body) = sh(
        h,
        &format!("curl -sf http://127.0.0.1:{PROXY_PORT}/pulp/content/debian/hello.txt"),
    );
    assert!(
        ok && body == "hello from pulp\n",
        "after the rotation: {body}"
    );

    // 5. a credential where a build would copy it: the check fails, names the file, not the secret
    let planted = format!("{KOLLA_DIR}/kolla-build.conf");
    let new_b64 =
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{new_password}"));
    let (ok, o) = sh(
        h,
        &format!(
            "mkdir -p {KOLLA_DIR} && printf '[DEFAULT]\\nheader = Basic {new_b64}\\n' > {planted}"
        ),
    );
    assert!(ok, "{o}");
    let leaked = env.play(&["--format", "json"]);
    outputs.push(("leak-check run json".into(), leaked.all()));
    assert_ne!(leaked.rc, 0, "{}", leaked.all());
    // the scan (no_log: its arguments hold the secrets) registers its result; the role's next task
    // fails with the scan's message, which names file and form but never the value
    let scan_task = "Fail when a credential was found where a build could copy it";
    assert_eq!(
        task_status(&leaked.stdout, scan_task),
        ["failed"],
        "{}",
        leaked.stdout
    );
    let msg = leaked
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| {
            v["event"] == "task_result"
                && v["task"].as_str().is_some_and(|t| t.ends_with(scan_task))
        })
        .map(|v| v["result"]["msg"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default();
    assert!(
        msg.contains(&planted) && msg.contains("base64"),
        "the failure names the file and the form: {msg:?}\n{}",
        leaked.stdout
    );
    let human = env.play(&[]);
    outputs.push(("leak-check run human".into(), human.all()));
    assert!(human.stdout.contains(&planted), "{}", human.stdout);
    sh(h, &format!("rm -f {planted}"));

    // no kiln output holds either password, plain or in the header's base64
    let mut needles = leak_forms(&user, &password);
    needles.extend(leak_forms(&user, new_password));
    for (what, out) in &outputs {
        assert_no_leak(what, out, &needles);
    }

    // the proxy container is removed with the lab host; stop it explicitly all the same
    sh(h, "podman rm -f pulp_proxy >/dev/null 2>&1; true");
}

/// The role's template rendered by ansible-core's `template` module and by kiln's, for the
/// network modes and address families the role handles: the files must be identical.
#[test]
fn pulp_proxy_conf_renders_as_ansible_renders_it() {
    use playbook_runner::*;
    if let Some(reason) = ansible_skip_reason() {
        eprintln!("SKIP: {reason}");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let inv = local_inventory(t.path(), "builders");
    let src = repo().join("playbooks/roles/pulp_auth_proxy/templates/pulp_proxy.conf.j2");
    let cases = [
        ("host", "127.0.0.1", "80", "docker"),
        ("", "127.0.0.1", "18480", "podman"),
        ("bridge", "127.0.0.1", "8080", "docker"),
        ("host", "::1", "80", "native"),
    ];
    for (i, (mode, ip, port, engine)) in cases.iter().enumerate() {
        let mut rendered = Vec::new();
        for runner in Runner::available() {
            let dest = t.path().join(format!("{runner:?}-{i}.conf"));
            let book = t.path().join(format!("render-{i}.yml"));
            std::fs::write(
                &book,
                format!(
                    "- hosts: builders\n  gather_facts: false\n  vars:\n    pulp_auth_proxy_url: https://pulp.example.com:8443/base\n    \
                     pulp_auth_proxy_username: builder\n    pulp_auth_proxy_password: \"p@ss word:with/odd&chars\"\n    \
                     pulp_auth_proxy_network_mode: {}\n    pulp_auth_proxy_listen_ip: \"{ip}\"\n    \
                     pulp_auth_proxy_listen_port: {port}\n    pulp_auth_proxy_engine: {engine}\n  tasks:\n    \
                     - template:\n        src: {}\n        dest: {}\n        mode: \"0600\"\n",
                    if mode.is_empty() { "null" } else { mode },
                    src.display(),
                    dest.display()
                ),
            )
            .unwrap();
            let r = runner.run(&inv, &book, &[]);
            assert_eq!(r.rc, 0, "{}", r.out);
            rendered.push((runner, std::fs::read_to_string(&dest).unwrap()));
        }
        let (_, first) = &rendered[0];
        for (runner, conf) in &rendered[1..] {
            assert_eq!(
                conf, first,
                "case {i}: {runner:?} differs from ansible-core"
            );
        }
        let want = match (*mode, *engine) {
            ("bridge", "docker") => "    listen 80;\n".to_string(),
            (_, _) if ip.contains(':') => format!("    listen [{ip}]:{port};\n"),
            _ => format!("    listen {ip}:{port};\n"),
        };
        assert!(first.contains(&want), "case {i}: {first}");
        assert!(
            first.contains("proxy_set_header Host pulp.example.com;"),
            "{first}"
        );
        let b64 =
            base64::engine::general_purpose::STANDARD.encode("builder:p@ss word:with/odd&chars");
        assert!(
            first.contains(&format!("Authorization \"Basic {b64}\"")),
            "{first}"
        );
    }
}
