//! The differential playbook corpus: every case under `tests/cases/playbooks/NN-name/` is run by
//! real `ansible-playbook` (ansible-core 2.17, with the `kiln_events` stdout callback that prints
//! kiln's JSON event lines) and by `kiln playbook run --format json`, each on its own FRESH lab
//! (network-namespace hosts with real sshd, user `kiln` with passwordless sudo), and the two runs
//! are compared: exit code, plays, per-host task statuses and included files in order (with
//! `ignored`), handler
//! flags and task file:line, the recap, chosen registered values (`compare:`), the final state of
//! chosen host paths (`state:`: type, mode, owner, group, content) and of chosen controller files
//! (`local_state:`, under the `kiln_out` folder each run gets), and, where the case says so, that
//! a second run changes nothing (`second_run_changed: 0`).
//!
//! A case's `case.yml`:
//! ```yaml
//! hosts: 2                          # number of lab hosts (default 1)
//! flavors: [rocky9, ubuntu2204]     # cycled over the hosts; names are <flavor>-<n>
//! args: ["-e", "x=1", "--check"]    # extra arguments for both tools
//! playbooks: [playbook.yml]         # default
//! rc: 0                             # ansible-playbook's expected exit code (corpus sanity)
//! setup: ["mkdir -p /srv/x"]        # sh commands run as root on every host before the run
//! compare: [{task: "register it", host: rocky9-1, keys: [stdout, rc, "results.0.item"]}]
//! state: [/etc/motd, /srv/x]        # a directory means: everything under it
//! local_state: [fetched]            # paths under the run's kiln_out folder
//! second_run_changed: 0
//! unordered: true                   # strategy free: compare which tasks were announced, not order
//! collections: [community.general]  # needed beyond ansible-core (see `collections()`)
//! ```
//!
//! Normalised away: timestamps and durations (`start`, `end`, `delta`), `invocation`, internal
//! `_ansible_*` keys, fact blobs, absolute folders of task paths (only `file:line` is compared),
//! the per-run lab addresses and `kiln_out` folders (replaced by placeholders in compared
//! values). Only what the case names is compared inside results.
//!
//! The test fails if any case disagrees, except the cases listed in
//! `tests/cases/playbooks/KNOWN_DIFFERENCES.md` (lines `- \`NN-name\`: why`); a listed case that
//! agrees fails too, so the list only holds live differences. Until `kiln playbook
//! run` exists, only the ansible side runs (its exit code, idempotence and compared keys are checked,
//! so the corpus itself stays honest) and the table says "kiln: engine not available".
//!
//! Environment: `KILN_ANSIBLE_VENV` (default `/work/venv-ansible`), `KILN_CORPUS_CASES` (comma
//! separated substrings: run only matching cases), `KILN_CORPUS_JOBS` (default 2),
//! `KILN_CORPUS_KILN` (the kiln binary to test; default the one cargo built), `KILN_AGENT_BINARY`
//! (the static agent; default the musl build in the same target folder), `KILN_CORPUS_SELFTEST` (run ansible on both sides: checks that every case is deterministic and
//! that the normalisation is enough), `KILN_CORPUS_DUMP` (print ansible's events).

mod lab;
mod support;

use kiln::lab::Flavor;
use serde::Deserialize;
use serde_json::{json, Value as J};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const RUN_TIMEOUT: Duration = Duration::from_secs(240);

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CaseSpec {
    #[serde(default = "one")]
    hosts: usize,
    #[serde(default)]
    flavors: Vec<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    playbooks: Vec<String>,
    #[serde(default)]
    rc: i32,
    #[serde(default)]
    setup: Vec<String>,
    #[serde(default)]
    compare: Vec<CompareSpec>,
    #[serde(default)]
    state: Vec<String>,
    #[serde(default)]
    local_state: Vec<String>,
    #[serde(default)]
    second_run_changed: Option<u64>,
    #[serde(default)]
    unordered: bool,
    /// Ansible collections the case needs beyond ansible-core (skipped when they are missing).
    #[serde(default)]
    collections: Vec<String>,
    /// Free text for readers of case.yml.
    #[serde(default)]
    #[allow(dead_code)]
    description: String,
}

fn one() -> usize {
    1
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct CompareSpec {
    task: String,
    host: String,
    keys: Vec<String>,
}

struct Case {
    name: String,
    dir: PathBuf,
    spec: CaseSpec,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Tool {
    Ansible,
    Kiln,
}

impl Tool {
    fn label(self) -> &'static str {
        match self {
            Tool::Ansible => "ansible",
            Tool::Kiln => "kiln",
        }
    }
}

/// What one tool did to one fresh lab.
#[derive(Debug, Default)]
struct Side {
    rc: i32,
    events: Vec<J>,
    /// stdout lines that were not JSON, and the tail of stderr (for the report).
    noise: Vec<String>,
    stderr: String,
    /// host -> path -> description of the path's final state.
    state: BTreeMap<String, BTreeMap<String, String>>,
    local_state: BTreeMap<String, String>,
    second_changed: Option<u64>,
    second_rc: Option<i32>,
}

fn venv() -> PathBuf {
    support::ansible_venv()
}

/// An extra collections folder for ansible-playbook (`KILN_ANSIBLE_COLLECTIONS`, default
/// `/work/ansible-collections`, holding `ansible_collections/`), when it exists. tests/run instead
/// installs the `ansible` package into the venv, whose collections ansible finds by itself.
fn collections() -> Option<PathBuf> {
    let p = PathBuf::from(
        std::env::var("KILN_ANSIBLE_COLLECTIONS")
            .unwrap_or_else(|_| "/work/ansible-collections".into()),
    );
    p.join("ansible_collections").is_dir().then_some(p)
}

/// Whether ansible-playbook can load community.general and ansible.posix (ini_file, sysctl,
/// authorized_key are not in ansible-core).
fn have_collections() -> bool {
    collections().is_some()
        || Command::new(venv().join("bin/python"))
            .args([
                "-c",
                "import ansible_collections.ansible.posix, ansible_collections.community.general",
            ])
            .output()
            .is_ok_and(|o| o.status.success())
}

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/cases/playbooks")
}

/// The kiln under test: `KILN_CORPUS_KILN`, or the one cargo built with this test.
fn kiln_bin() -> PathBuf {
    std::env::var_os("KILN_CORPUS_KILN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_kiln")))
}

/// The static agent kiln pushes to hosts (`KILN_AGENT_BINARY`, or the musl build in this test's
/// target folder), found as kiln finds it.
use support::agent_binary;

/// None when `kiln playbook run` exists; otherwise why not.
fn engine_missing() -> Option<String> {
    let out = Command::new(kiln_bin())
        .args(["playbook", "run", "--help"])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            if text.contains("--format") {
                None
            } else {
                Some("`kiln playbook run` has no --format".into())
            }
        }
        Ok(_) => Some("engine not available".into()),
        Err(e) => Some(format!("cannot run kiln: {e}")),
    }
}

fn load_cases() -> Vec<Case> {
    let filter: Vec<String> = std::env::var("KILN_CORPUS_CASES")
        .map(|s| {
            s.split(',')
                .filter(|x| !x.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let mut cases = vec![];
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("tests/cases/playbooks exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("case.yml").is_file())
        .collect();
    dirs.sort();
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let text = std::fs::read_to_string(dir.join("case.yml")).unwrap();
        let mut spec: CaseSpec = serde_yaml::from_str(&text)
            .unwrap_or_else(|e| panic!("{}/case.yml: {e}", dir.display()));
        // Ansible's callbacks get a clean copy of the result without top-level `failed` and
        // `skipped` (TaskResult.clean_copy): the status carries them, so they cannot be compared.
        for c in &spec.compare {
            if let Some(k) = c.keys.iter().find(|k| *k == "failed" || *k == "skipped") {
                panic!(
                    "{}/case.yml: `{k}` cannot be compared (the status says it)",
                    dir.display()
                );
            }
        }
        if spec.playbooks.is_empty() {
            spec.playbooks.push("playbook.yml".into());
        }
        if spec.flavors.is_empty() {
            spec.flavors.push("rocky9".into());
        }
        cases.push(Case { name, dir, spec });
    }
    cases
}

/// Cases whose disagreement is documented: `- \`NN-name\`: why` lines.
fn known_differences() -> BTreeMap<String, String> {
    let text =
        std::fs::read_to_string(corpus_dir().join("KNOWN_DIFFERENCES.md")).unwrap_or_default();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix("- `") else {
            continue;
        };
        let Some((name, why)) = rest.split_once('`') else {
            continue;
        };
        out.insert(
            name.to_string(),
            why.trim_start_matches(':').trim().to_string(),
        );
    }
    out
}

fn flavor(s: &str) -> Flavor {
    match s {
        "rocky9" => Flavor::Rocky9,
        "ubuntu2204" => Flavor::Ubuntu2204,
        "debian12" => Flavor::Debian12,
        other => panic!("unknown flavor {other} in case.yml"),
    }
}

/// Runs a command with a time limit; returns (exit code, stdout, stderr). -1 on timeout.
fn run_limited(mut cmd: Command, limit: Duration) -> (i32, String, String) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return (-2, String::new(), format!("cannot start {cmd:?}: {e}")),
    };
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t1 = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = so.read_to_end(&mut b);
        b
    });
    let t2 = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = se.read_to_end(&mut b);
        b
    });
    let start = Instant::now();
    let code = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st.code().unwrap_or(-3),
            Ok(None) if start.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                break -1;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(_) => break -4,
        }
    };
    let out = String::from_utf8_lossy(&t1.join().unwrap_or_default()).into_owned();
    let mut err = String::from_utf8_lossy(&t2.join().unwrap_or_default()).into_owned();
    if code == -1 {
        err.push_str(&format!("\n(killed after {}s)", limit.as_secs()));
    }
    (code, out, err)
}

fn tool_command(tool: Tool, case: &Case, inv: &Path, out_dir: &Path) -> Command {
    let mut cmd = match tool {
        Tool::Ansible => {
            let mut c = Command::new(venv().join("bin/ansible-playbook"));
            c.env("ANSIBLE_STDOUT_CALLBACK", "kiln_events")
                .env(
                    "ANSIBLE_CALLBACK_PLUGINS",
                    corpus_dir().join("callback_plugins"),
                )
                .env("ANSIBLE_HOST_KEY_CHECKING", "False")
                .env("ANSIBLE_NOCOLOR", "1")
                .env("ANSIBLE_RETRY_FILES_ENABLED", "False")
                .env("ANSIBLE_LOCAL_TEMP", out_dir.join(".ansible-tmp"))
                .env("ANSIBLE_CONFIG", corpus_dir().join("empty-ansible.cfg"))
                .env("ANSIBLE_PYTHON_INTERPRETER", "/usr/bin/python3");
            if let Some(p) = collections() {
                c.env("ANSIBLE_COLLECTIONS_PATH", p);
            }
            c
        }
        Tool::Kiln => {
            let mut c = Command::new(kiln_bin());
            c.args(["playbook", "run", "--format", "json"]);
            if let Some(a) = agent_binary() {
                c.env("KILN_AGENT_BINARY", a);
            }
            c
        }
    };
    cmd.current_dir(&case.dir)
        .arg("-i")
        .arg(inv)
        .arg("-e")
        .arg(format!("kiln_out={}", out_dir.display()))
        .args(&case.spec.args)
        .args(&case.spec.playbooks);
    cmd
}

/// One tool, one fresh lab: run, capture events and final state, optionally run again.
fn run_side(tool: Tool, case: &Case) -> Side {
    let flavors: Vec<Flavor> = case.spec.flavors.iter().map(|f| flavor(f)).collect();
    let spec = lab::spec(&format!("pb{}", tool.label())).with_hosts(case.spec.hosts, &flavors);
    let lab = lab::LabGuard::up(&spec);
    // The lab's inventory logs in as root; the corpus runs as `kiln` (passwordless sudo), so
    // `become` means something.
    let inv_text = std::fs::read_to_string(&lab.inventory).expect("lab inventory");
    let inv_text = inv_text.replace("ansible_user=root", "ansible_user=kiln");
    let inv = lab.dir.join("corpus-inventory.ini");
    std::fs::write(&inv, inv_text).unwrap();
    let out_dir = lab.dir.join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    for h in &lab.hosts {
        for s in &case.spec.setup {
            let o = h.exec(&["sh", "-c", s]).expect("setup exec");
            assert!(
                o.status.success(),
                "{}: setup `{s}` failed on {}: {}",
                case.name,
                h.name,
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
    let mut side = Side::default();
    let (rc, out, err) = run_limited(tool_command(tool, case, &inv, &out_dir), RUN_TIMEOUT);
    side.rc = rc;
    side.stderr = err;
    let subst = |s: &str| -> String {
        let mut s = s.replace(&out_dir.display().to_string(), "<out>");
        for h in &lab.hosts {
            s = s.replace(&h.addr.to_string(), &format!("<addr:{}>", h.name));
        }
        s
    };
    for line in out.lines() {
        match serde_json::from_str::<J>(line) {
            Ok(v) if v.get("event").is_some() => side.events.push(v),
            _ => side.noise.push(line.to_string()),
        }
    }
    // Placeholders for per-run values inside results.
    for e in side.events.iter_mut() {
        if let Ok(text) = serde_json::to_string(e) {
            if let Ok(v) = serde_json::from_str(&subst(&text)) {
                *e = v;
            }
        }
    }
    for h in &lab.hosts {
        let mut m = BTreeMap::new();
        for p in &case.spec.state {
            m.insert(p.clone(), subst(&describe_path(h, p)));
        }
        side.state.insert(h.name.clone(), m);
    }
    for p in &case.spec.local_state {
        side.local_state
            .insert(p.clone(), describe_local(&out_dir.join(p)));
    }
    if case.spec.second_run_changed.is_some() {
        let (rc2, out2, _) = run_limited(tool_command(tool, case, &inv, &out_dir), RUN_TIMEOUT);
        side.second_rc = Some(rc2);
        let changed = out2
            .lines()
            .filter_map(|l| serde_json::from_str::<J>(l).ok())
            .filter(|v| v["event"] == "recap")
            .map(|v| {
                v["stats"]
                    .as_object()
                    .map(|m| m.values().map(|s| s["changed"].as_u64().unwrap_or(0)).sum())
                    .unwrap_or(0)
            })
            .next();
        side.second_changed = changed;
    }
    // Down the lab, then remove what this harness added to its folder (inventory, out/).
    let dir = lab.dir.clone();
    drop(lab);
    let _ = std::fs::remove_dir_all(&dir);
    side
}

/// A path's final state on a host: type, mode, owner, group and content (or the same for every
/// entry of a directory).
fn describe_path(h: &kiln::lab::Host, path: &str) -> String {
    let script = r#"p="$1"
if [ ! -e "$p" ] && [ ! -L "$p" ]; then echo absent; exit 0; fi
if [ -d "$p" ] && [ ! -L "$p" ]; then
  cd "$p" && find . -printf '%p %y %m %u %g\n' | LC_ALL=C sort
  find . -type f | LC_ALL=C sort | while read -r f; do echo "== $f"; head -c 4096 "$f"; echo; done
else
  stat -c '%F %a %U %G' "$p"
  if [ -L "$p" ]; then readlink "$p"; else head -c 8192 "$p"; fi
fi"#;
    match h.exec(&["sh", "-c", script, "sh", path]) {
        Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
        Err(e) => format!("cannot inspect: {e}"),
    }
}

fn describe_local(p: &Path) -> String {
    if p.is_dir() {
        let mut v: Vec<String> = walk(p)
            .into_iter()
            .map(|f| {
                let rel = f.strip_prefix(p).unwrap_or(&f).display().to_string();
                format!(
                    "{rel}: {}",
                    std::fs::read_to_string(&f).unwrap_or_else(|_| "<binary>".into())
                )
            })
            .collect();
        v.sort();
        v.join("\n")
    } else {
        match std::fs::read_to_string(p) {
            Ok(s) => s,
            Err(_) if !p.exists() => "absent".into(),
            Err(e) => format!("unreadable: {e}"),
        }
    }
}

fn walk(p: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let q = e.path();
            if q.is_dir() {
                out.extend(walk(&q));
            } else {
                out.push(q);
            }
        }
    }
    out
}

fn events<'a>(side: &'a Side, kind: &'a str) -> impl Iterator<Item = &'a J> + 'a {
    side.events.iter().filter(move |e| e["event"] == kind)
}

/// `file.yml:12` from an absolute or relative `path`.
fn short_path(p: &str) -> String {
    Path::new(p)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Task banners, except meta tasks' (ansible-playbook announces a meta task once per host that
/// reaches it, an artefact of its strategy plugins; their results are still compared).
fn task_starts(side: &Side) -> Vec<String> {
    events(side, "task_start")
        .filter(|e| e["action"] != "meta")
        .map(|e| {
            format!(
                "{}{} ({})",
                if e["handler"] == true { "handler " } else { "" },
                e["name"].as_str().unwrap_or("?"),
                short_path(e["path"].as_str().unwrap_or(""))
            )
        })
        .collect()
}

/// Per host, in order: each task result (`task => status`) and each `included` file (as the
/// default callback's "included: FILE for HOSTS => (item=...)"; file by its last component).
fn per_host(side: &Side) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in &side.events {
        if e["event"] == "task_result" {
            let host = e["host"].as_str().unwrap_or("?").to_string();
            m.entry(host).or_default().push(format!(
                "{} => {}{}",
                e["task"].as_str().unwrap_or("?"),
                e["status"].as_str().unwrap_or("?"),
                if e["ignored"] == true {
                    " (ignored)"
                } else {
                    ""
                }
            ));
        } else if e["event"] == "included" {
            let file = short_path(e["file"].as_str().unwrap_or("?"));
            let item = match &e["item"] {
                J::Null => String::new(),
                J::String(s) => format!(" (item={s})"),
                v => format!(" (item={v})"),
            };
            for h in e["hosts"].as_array().into_iter().flatten() {
                let host = h.as_str().unwrap_or("?").to_string();
                m.entry(host)
                    .or_default()
                    .push(format!("included {file}{item}"));
            }
        }
    }
    m
}

fn plays(side: &Side) -> Vec<J> {
    events(side, "play_start")
        .map(|e| json!({"name": e["name"], "hosts": e["hosts"]}))
        .collect()
}

fn recap(side: &Side) -> J {
    events(side, "recap")
        .last()
        .map(|e| e["stats"].clone())
        .unwrap_or(J::Null)
}

/// The value at a dotted path (`results.0.stdout`) in a host's result of a task (last result of
/// that name for that host).
fn lookup(side: &Side, c: &CompareSpec, key: &str) -> J {
    let Some(r) = events(side, "task_result")
        .filter(|e| e["task"] == c.task.as_str() && e["host"] == c.host.as_str())
        .last()
    else {
        return json!("<no result>");
    };
    let mut v = &r["result"];
    for part in key.split('.') {
        v = match part.parse::<usize>() {
            Ok(i) if v.is_array() => &v[i],
            _ => &v[part],
        };
    }
    if v.is_null() && !key_present(&r["result"], key) {
        return json!("<missing>");
    }
    v.clone()
}

fn key_present(v: &J, key: &str) -> bool {
    let mut v = v;
    for part in key.split('.') {
        let next = match (part.parse::<usize>(), v) {
            (Ok(i), J::Array(a)) => a.get(i),
            (_, J::Object(m)) => m.get(part),
            _ => None,
        };
        match next {
            Some(n) => v = n,
            None => return false,
        }
    }
    true
}

/// First difference between two sequences, described.
fn first_seq_diff(what: &str, a: &[String], k: &[String]) -> Option<String> {
    for i in 0..a.len().max(k.len()) {
        let x = a.get(i).map(String::as_str).unwrap_or("<nothing>");
        let y = k.get(i).map(String::as_str).unwrap_or("<nothing>");
        if x != y {
            return Some(format!("{what} #{}: ansible `{x}` vs kiln `{y}`", i + 1));
        }
    }
    None
}

/// Every disagreement between the two sides, most telling first.
fn compare(case: &Case, a: &Side, k: &Side) -> Vec<String> {
    let mut d = vec![];
    if k.events.is_empty() {
        let tail: String = k
            .stderr
            .lines()
            .rev()
            .take(4)
            .collect::<Vec<_>>()
            .join(" | ");
        d.push(format!("kiln printed no events (rc {}): {tail}", k.rc));
        return d;
    }
    if a.rc != k.rc {
        d.push(format!("exit code: ansible {} vs kiln {}", a.rc, k.rc));
    }
    let (pa, pk) = (plays(a), plays(k));
    if pa != pk {
        d.push(format!(
            "plays: ansible {} vs kiln {}",
            J::Array(pa),
            J::Array(pk)
        ));
    }
    let (ha, hk) = (per_host(a), per_host(k));
    let hosts: BTreeSet<&String> = ha.keys().chain(hk.keys()).collect();
    for h in hosts {
        let empty = vec![];
        if let Some(x) = first_seq_diff(
            &format!("{h} result"),
            ha.get(h).unwrap_or(&empty),
            hk.get(h).unwrap_or(&empty),
        ) {
            d.push(x);
        }
    }
    let (mut ta, mut tk) = (task_starts(a), task_starts(k));
    if case.spec.unordered {
        // Strategy free: each host announces the tasks it reaches; compare which were announced.
        ta.sort();
        ta.dedup();
        tk.sort();
        tk.dedup();
    }
    if let Some(x) = first_seq_diff("task_start", &ta, &tk) {
        d.push(x);
    }
    let (ra, rk) = (recap(a), recap(k));
    if ra != rk {
        d.push(format!("recap: ansible {ra} vs kiln {rk}"));
    }
    for c in &case.spec.compare {
        for key in &c.keys {
            let (va, vk) = (lookup(a, c, key), lookup(k, c, key));
            if va != vk {
                d.push(format!(
                    "`{}` on {} key {key}: ansible {va} vs kiln {vk}",
                    c.task, c.host
                ));
            }
        }
    }
    for (h, m) in &a.state {
        for (p, sa) in m {
            let sk = k
                .state
                .get(h)
                .and_then(|m| m.get(p))
                .cloned()
                .unwrap_or_default();
            if *sa != sk {
                d.push(format!("state {h}:{p}: ansible {sa:?} vs kiln {sk:?}"));
            }
        }
    }
    for (p, sa) in &a.local_state {
        let sk = k.local_state.get(p).cloned().unwrap_or_default();
        if *sa != sk {
            d.push(format!(
                "controller file {p}: ansible {sa:?} vs kiln {sk:?}"
            ));
        }
    }
    if let Some(want) = case.spec.second_run_changed {
        if k.second_changed != Some(want) {
            d.push(format!(
                "second run: kiln changed {:?} (rc {:?}), want {want}",
                k.second_changed, k.second_rc
            ));
        }
    }
    d
}

/// The corpus must be right about Ansible itself: its exit code, idempotence, compared keys.
fn check_ansible(case: &Case, a: &Side) -> Vec<String> {
    let mut d = vec![];
    if a.rc != case.spec.rc {
        let tail: String = a
            .stderr
            .lines()
            .rev()
            .take(6)
            .collect::<Vec<_>>()
            .join(" | ");
        d.push(format!(
            "ansible exit code {} (case says {}): {tail}",
            a.rc, case.spec.rc
        ));
    }
    if events(a, "recap").next().is_none() {
        d.push("ansible printed no recap".into());
    }
    if let Some(want) = case.spec.second_run_changed {
        if a.second_changed != Some(want) {
            d.push(format!(
                "ansible second run changed {:?}, case says {want}",
                a.second_changed
            ));
        }
    }
    for c in &case.spec.compare {
        for key in &c.keys {
            let v = lookup(a, c, key);
            if v == json!("<no result>") {
                d.push(format!(
                    "ansible has no result for `{}` on {}",
                    c.task, c.host
                ));
                break;
            }
        }
    }
    d
}

struct Outcome {
    name: String,
    skipped: Option<String>,
    corpus_errors: Vec<String>,
    diffs: Option<Vec<String>>,
}

fn run_case(case: &Case, engine: bool) -> Outcome {
    if !case.spec.collections.is_empty() && !have_collections() {
        return Outcome {
            name: case.name.clone(),
            skipped: Some(format!(
                "needs {} (pip install ansible==10.7.0 into the venv, or set KILN_ANSIBLE_COLLECTIONS)",
                case.spec.collections.join(", ")
            )),
            corpus_errors: vec![],
            diffs: None,
        };
    }
    let a = run_side(Tool::Ansible, case);
    if std::env::var("KILN_CORPUS_DUMP").is_ok() {
        for e in &a.events {
            eprintln!("{} ansible: {e}", case.name);
        }
    }
    let corpus_errors = check_ansible(case, &a);
    let diffs = engine.then(|| {
        // Self-check of the corpus and the normalisation: ansible against ansible must agree.
        let other = if std::env::var("KILN_CORPUS_SELFTEST").is_ok() {
            Tool::Ansible
        } else {
            Tool::Kiln
        };
        let k = run_side(other, case);
        compare(case, &a, &k)
    });
    Outcome {
        name: case.name.clone(),
        skipped: None,
        corpus_errors,
        diffs,
    }
}

#[test]
fn playbooks_agree_with_ansible() {
    require_lab!();
    let ap = venv().join("bin/ansible-playbook");
    if !ap.is_file() {
        eprintln!(
            "SKIPPED: no ansible-playbook at {} (set KILN_ANSIBLE_VENV)",
            ap.display()
        );
        return;
    }
    let cases = load_cases();
    assert!(!cases.is_empty(), "no cases matched");
    let missing = if std::env::var("KILN_CORPUS_SELFTEST").is_ok() {
        None
    } else {
        engine_missing()
    };
    let engine = missing.is_none();
    let known = known_differences();
    let queue = Arc::new(Mutex::new(cases.into_iter().collect::<Vec<_>>()));
    queue.lock().unwrap().reverse();
    let results = Arc::new(Mutex::new(Vec::new()));
    let jobs: usize = std::env::var("KILN_CORPUS_JOBS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let workers: Vec<_> = (0..jobs.max(1))
        .map(|_| {
            let q = queue.clone();
            let r = results.clone();
            std::thread::spawn(move || loop {
                let Some(case) = q.lock().unwrap().pop() else {
                    break;
                };
                let started = Instant::now();
                let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run_case(&case, engine)
                }))
                .unwrap_or_else(|p| Outcome {
                    name: case.name.clone(),
                    skipped: None,
                    corpus_errors: vec![format!(
                        "harness panicked: {}",
                        p.downcast_ref::<String>()
                            .cloned()
                            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default()
                    )],
                    diffs: None,
                });
                eprintln!(
                    "case {} done in {:.1}s",
                    case.name,
                    started.elapsed().as_secs_f64()
                );
                r.lock().unwrap().push(out);
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let mut results = std::mem::take(&mut *results.lock().unwrap());
    results.sort_by(|a, b| a.name.cmp(&b.name));

    let total = results.iter().filter(|o| o.skipped.is_none()).count();
    let mut agree = 0;
    let mut failures = vec![];
    println!("\n=== playbook corpus: ansible-playbook vs kiln playbook run ===");
    for o in &results {
        if let Some(why) = &o.skipped {
            println!("{:<28} SKIPPED: {why}", o.name);
            continue;
        }
        let status = match (&o.corpus_errors.is_empty(), &o.diffs) {
            (false, _) => {
                failures.push(o.name.clone());
                format!("CORPUS ERROR: {}", o.corpus_errors.join("; "))
            }
            (true, None) => format!("ansible ok; kiln: {}", missing.clone().unwrap_or_default()),
            (true, Some(d)) if d.is_empty() => {
                agree += 1;
                if known.contains_key(&o.name) {
                    // Keeps the list honest: a fixed case must leave it.
                    failures.push(o.name.clone());
                    "agree, but listed in KNOWN_DIFFERENCES.md: remove it there".into()
                } else {
                    "agree".into()
                }
            }
            (true, Some(d)) => {
                let tag = if let Some(why) = known.get(&o.name) {
                    format!("DIFFER (known: {why})")
                } else {
                    failures.push(o.name.clone());
                    "DIFFER".into()
                };
                format!("{tag} ({} differences); first: {}", d.len(), d[0])
            }
        };
        println!("{:<28} {status}", o.name);
        if let Some(d) = &o.diffs {
            for x in d.iter().skip(1).take(12) {
                println!("{:<28}   also: {x}", "");
            }
        }
    }
    if engine {
        println!("agreement: {agree}/{total} cases");
    } else {
        println!(
            "agreement: not measured ({total} cases checked on the ansible side only; kiln: {})",
            missing.unwrap_or_default()
        );
    }
    assert!(failures.is_empty(), "cases failing: {failures:?}");
}
