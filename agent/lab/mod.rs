//! Network-namespace lab hosts with real OpenSSH, on this machine: what `kiln lab up|down|status`
//! runs, and what the integration tests use to get hosts to provision.
//!
//! A lab host is a network namespace (veth `eth0` on the lab's bridge, `eth1` on the internal
//! network for a jump host) plus mount, UTS and PID namespaces whose PID 1 is a real `sshd` with its
//! own host key, chrooted into a copy-on-write overlay of this machine's `/` that wears a Rocky 9,
//! Ubuntu 22.04 or Debian 12 identity (see `boot` for how a host boots, `flavor` for identities).
//!
//! Everything `up` makes is recorded in `<dir>/state.json` before it is made (names, PIDs with
//! their start times), and `down` removes exactly that. Names and subnets derive from the lab
//! name (`names`), so differently named labs coexist; collisions are detected, not shared.
//!
//! ```no_run
//! use kiln::lab::{Lab, LabSpec, Flavor};
//! let lab = Lab::up(&LabSpec::new("demo").with_hosts(2, &[Flavor::Rocky9, Flavor::Ubuntu2204]))?;
//! let out = lab.hosts[0].exec(&["hostname"])?;
//! lab.down()?;
//! # Ok::<(), kiln::lab::LabError>(())
//! ```

mod boot;
mod cmd;
pub mod error;
pub mod flavor;
mod names;
mod net;
mod proc;
mod render;
pub mod services;
pub mod spec;
mod state;
pub mod vagrant;
pub mod vm;

pub use boot::{PASSWORD, PASSWORD_USER, SUDO_USER};
pub use cmd::{find_tool, preflight, TOOLS};
pub use error::LabError;
pub use flavor::Flavor;
pub use spec::{HostNet, HostSpec, LabSpec, INTERNAL_HOST, JUMP_HOST};

use ipnet::Ipv4Net;
use proc::ProcId;
use serde::Serialize;
use state::{HostState, State};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A lab that is (or was) up, as recorded in its state file.
#[derive(Debug, Clone)]
pub struct Lab {
    pub name: String,
    /// Absolute lab folder.
    pub dir: PathBuf,
    pub bridge: String,
    pub subnet: Ipv4Net,
    /// This machine's address on the lab bridge (.1).
    pub gateway: Ipv4Addr,
    pub internal_bridge: Option<String>,
    pub internal_subnet: Option<Ipv4Net>,
    pub hosts: Vec<Host>,
    /// The lab's private key (its public half is `<key>.pub`); every host accepts it for every user.
    pub key: PathBuf,
    pub known_hosts: PathBuf,
    pub ssh_config: PathBuf,
    pub inventory: PathBuf,
    state: State,
}

/// One lab host.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub flavor: Flavor,
    pub net: HostNet,
    /// The address ssh connects to: the lab address, or the internal one for an internal host.
    pub addr: Ipv4Addr,
    pub lab_addr: Option<Ipv4Addr>,
    pub internal_addr: Option<Ipv4Addr>,
    /// For an internal host: the name of the jump host to go through.
    pub jump: Option<String>,
    /// Network namespace name (`ip netns exec <netns> ...`).
    pub netns: String,
    /// sshd's PID in this machine's PID namespace (PID 1 inside the host). 0 if it never started.
    pub sshd_pid: u32,
    sshd: Option<ProcId>,
}

/// One row of `kiln lab status`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct HostStatus {
    pub name: String,
    pub flavor: Flavor,
    pub addr: Ipv4Addr,
    pub netns: String,
    pub sshd_pid: u32,
    pub up: bool,
}

impl Host {
    /// True while its sshd (the same process `up` started) is running.
    pub fn is_up(&self) -> bool {
        self.sshd.is_some_and(|p| p.alive())
    }

    /// Runs a command inside the host (its namespaces and root), for test assertions.
    pub fn exec(&self, argv: &[&str]) -> Result<std::process::Output, LabError> {
        if !self.is_up() {
            return Err(LabError::HostDown(self.name.clone()));
        }
        boot::exec(self.sshd_pid, argv)
    }
}

/// Holds `<dir>/.lock` so concurrent `up`/`down` of one lab take turns.
struct DirLock(#[allow(dead_code)] nix::fcntl::Flock<std::fs::File>);

fn lock(dir: &Path) -> Result<DirLock, LabError> {
    let p = dir.join(".lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(|e| LabError::io(&p, e))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map(DirLock)
        .map_err(|(_, e)| LabError::io(&p, std::io::Error::from(e)))
}

fn absolute(dir: &Path) -> Result<PathBuf, LabError> {
    std::fs::create_dir_all(dir).map_err(|e| LabError::io(dir, e))?;
    std::fs::canonicalize(dir).map_err(|e| LabError::io(dir, e))
}

const KEY_FILE: &str = "id_ed25519";

impl Lab {
    /// `kiln lab status`'s table: one line per host with its flavor, address, netns, sshd and state.
    pub fn status_table(&self) -> String {
        let mut out = format!(
            "{:<16} {:<11} {:<15} {:<28} {:>8}  STATE\n",
            "NAME", "FLAVOR", "ADDRESS", "NETNS", "SSHD"
        );
        for h in self.status() {
            out.push_str(&format!(
                "{:<16} {:<11} {:<15} {:<28} {:>8}  {}\n",
                h.name,
                h.flavor.as_str(),
                h.addr.to_string(),
                h.netns,
                h.sshd_pid,
                if h.up { "up" } else { "down" }
            ));
        }
        out
    }

    /// Brings the lab up to match `spec`, and returns when every sshd accepts TCP connections.
    /// Idempotent: running hosts are kept, dead ones are restarted, missing ones are added; hosts
    /// that are up but no longer in `spec` are left running (use `down` to remove a lab).
    pub fn up(spec: &LabSpec) -> Result<Lab, LabError> {
        spec.validate()?;
        cmd::preflight()?;
        let dir = absolute(&spec.dir)?;
        if dir
            .to_string_lossy()
            .chars()
            .any(|c| c.is_whitespace() || "'\"\\".contains(c))
        {
            return Err(LabError::Spec(format!(
                "lab folder {}: its path must not contain whitespace, quotes or backslashes (it goes into ssh_config and inventory.ini)",
                dir.display()
            )));
        }
        let _lock = lock(&dir)?;
        let started = std::time::Instant::now();

        let mut st = match State::load(&dir)? {
            Some(st) if st.name != spec.name => {
                return Err(LabError::Collision(format!(
                    "{} holds lab `{}`, not `{}`; use another --dir or bring that lab down",
                    dir.display(),
                    st.name,
                    spec.name
                )))
            }
            Some(st) => st,
            None => new_state(spec, &dir)?,
        };
        st.save()?;
        net::ensure_bridge(
            &st.bridge,
            &st.bridge_alias,
            Some((names::gateway(st.subnet), 24)),
        )?;

        let needs_internal = spec.hosts.iter().any(|h| h.net != HostNet::Lab)
            || st.hosts.iter().any(|h| h.net != HostNet::Lab);
        if needs_internal && st.internal_subnet.is_none() {
            // Not reachable from here, but kept clear of every network this machine routes, so
            // that an address on it can never be mistaken for something else.
            let used = net::used_networks(&[])?;
            let subnet = names::subnet_candidates(&names::lab_key(&st.name, &st.dir), "internal")
                .into_iter()
                .find(|n| {
                    !net::overlaps(*n, st.subnet) && !used.iter().any(|u| net::overlaps(*n, *u))
                })
                .ok_or_else(|| LabError::Collision("no free internal subnet".into()))?;
            st.internal_subnet = Some(subnet);
            st.internal_bridge = Some(names::internal_bridge(&st.short));
            st.save()?;
        }
        if let Some(ib) = &st.internal_bridge {
            // No address: this machine must not be able to reach the internal network.
            net::ensure_bridge(ib, &st.bridge_alias, None)?;
        }

        // The lab key pair: made once, kept across ups.
        let key = dir.join(KEY_FILE);
        cmd::ensure_ed25519_key(&key, &format!("kiln-lab-{}", st.name))?;
        let pub_path = dir.join(format!("{KEY_FILE}.pub"));
        let authorized =
            std::fs::read_to_string(&pub_path).map_err(|e| LabError::io(&pub_path, e))?;

        // Record every wanted host before making anything.
        for hs in &spec.hosts {
            match st.hosts.iter().find(|h| h.name == hs.name) {
                Some(h) if h.flavor != hs.flavor || h.net != hs.net => {
                    return Err(LabError::Collision(format!(
                        "lab {}: host {} exists as {} on {:?}, the spec wants {} on {:?}; run `kiln lab down` first",
                        st.name, hs.name, h.flavor, h.net, hs.flavor, hs.net
                    )))
                }
                Some(_) => {}
                None => {
                    let idx = (0..).find(|i| !st.hosts.iter().any(|h| h.idx == *i)).unwrap_or(0);
                    st.hosts.push(plan_host(&st, hs, idx));
                }
            }
        }
        st.save()?;

        // Boot every host that is not running, then wait for all of them together.
        let mut keys = render::HostKeys::new();
        let mut booted = Vec::new();
        for i in 0..st.hosts.len() {
            let h = st.hosts[i].clone();
            let pubkey = host_pubkey(&dir, &h.name);
            let healthy =
                h.sshd.is_some_and(|p| p.alive()) && h.veths.iter().all(|v| net::link_exists(v));
            if healthy {
                if let Some(k) = pubkey {
                    keys.insert(h.name.clone(), k);
                }
                continue;
            }
            stop_host(&h);
            // A host whose sshd died keeps its namespace and links (ip netns holds the namespace):
            // reuse them. Otherwise make them afresh.
            let links_ok =
                net::netns_exists(&h.netns) && h.veths.iter().all(|v| net::link_exists(v));
            if !links_ok {
                for v in &h.veths {
                    net::del_link(v)?;
                }
                net::del_netns(&h.netns)?;
                net::add_netns(&h.netns)?;
                if let Some(a) = h.lab_addr {
                    let v = names::veth(&st.short, 'm', h.idx);
                    let mac = names::mac(&st.short, 'm', h.idx);
                    net::add_host_link(&h.netns, &v, &st.bridge, "eth0", &mac, a)?;
                }
                if let (Some(a), Some(ib)) = (h.internal_addr, st.internal_bridge.as_deref()) {
                    let v = names::veth(&st.short, 'i', h.idx);
                    let mac = names::mac(&st.short, 'i', h.idx);
                    let ifname = if h.lab_addr.is_some() { "eth1" } else { "eth0" };
                    net::add_host_link(&h.netns, &v, ib, ifname, &mac, a)?;
                }
            }
            let pubkey = boot::prepare(&dir, &st.name, &h, &authorized)?;
            keys.insert(h.name.clone(), pubkey);
            let (unshare, sshd) = boot::start(&dir, &h)?;
            st.hosts[i].unshare = Some(unshare);
            st.hosts[i].sshd = Some(sshd);
            st.save()?;
            booted.push(i);
        }
        let results: Vec<Result<(), LabError>> = std::thread::scope(|s| {
            let handles: Vec<_> = booted
                .iter()
                .filter_map(|&i| {
                    let h = &st.hosts[i];
                    let sshd = h.sshd?;
                    let dir = &dir;
                    Some(s.spawn(move || boot::wait_ready(dir, h, sshd, spec.timeout)))
                })
                .collect();
            handles
                .into_iter()
                .map(|t| {
                    t.join()
                        .unwrap_or_else(|_| Err(LabError::Spec("readiness thread panicked".into())))
                })
                .collect()
        });
        for r in results {
            r?;
        }

        let known_hosts = dir.join("known_hosts");
        let write = |name: &str, text: String| -> Result<(), LabError> {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(|e| LabError::io(&p, e))
        };
        write("known_hosts", render::known_hosts(&st, &keys))?;
        write("ssh_config", render::ssh_config(&st, &key, &known_hosts))?;
        write("inventory.ini", render::inventory(&st, &key, &known_hosts))?;
        tracing::info!(lab = %st.name, hosts = st.hosts.len(), booted = booted.len(), ms = started.elapsed().as_millis() as u64, "lab up");
        Ok(Lab::from_state(st))
    }

    /// Reads the lab recorded in `dir` (whatever state its hosts are in).
    pub fn open(dir: &Path) -> Result<Lab, LabError> {
        let st = State::load(dir)?.ok_or_else(|| LabError::NoLab(dir.to_path_buf()))?;
        Ok(Lab::from_state(st))
    }

    /// Removes everything `up` made, by the recorded PIDs and names: host processes, namespaces,
    /// veths, bridges, and the files in the lab folder (the folder too, if nothing else is in it).
    pub fn down(&self) -> Result<(), LabError> {
        down_dir(&self.dir).map(|_| ())
    }

    /// One row per host: is its sshd still the process `up` started?
    pub fn status(&self) -> Vec<HostStatus> {
        self.hosts
            .iter()
            .map(|h| HostStatus {
                name: h.name.clone(),
                flavor: h.flavor,
                addr: h.addr,
                netns: h.netns.clone(),
                sshd_pid: h.sshd_pid,
                up: h.is_up(),
            })
            .collect()
    }

    pub fn host(&self, name: &str) -> Result<&Host, LabError> {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .ok_or_else(|| LabError::NoSuchHost {
                lab: self.name.clone(),
                host: name.to_string(),
            })
    }

    /// `ssh -F <dir>/ssh_config <host> <args...>`, ready to run.
    pub fn ssh(&self, host: &str, args: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::new("ssh");
        c.arg("-F")
            .arg(&self.ssh_config)
            .arg(host)
            .arg("--")
            .args(args);
        c
    }

    fn from_state(st: State) -> Lab {
        let jump = st
            .hosts
            .iter()
            .find(|h| h.net == HostNet::Both)
            .map(|h| h.name.clone());
        let hosts = st
            .hosts
            .iter()
            .map(|h| Host {
                name: h.name.clone(),
                flavor: h.flavor,
                net: h.net,
                addr: h
                    .lab_addr
                    .or(h.internal_addr)
                    .unwrap_or(Ipv4Addr::UNSPECIFIED),
                lab_addr: h.lab_addr,
                internal_addr: h.internal_addr,
                jump: if h.lab_addr.is_none() {
                    jump.clone()
                } else {
                    None
                },
                netns: h.netns.clone(),
                sshd_pid: h.sshd.map(|p| p.pid).unwrap_or(0),
                sshd: h.sshd,
            })
            .collect();
        Lab {
            name: st.name.clone(),
            dir: st.dir.clone(),
            bridge: st.bridge.clone(),
            subnet: st.subnet,
            gateway: names::gateway(st.subnet),
            internal_bridge: st.internal_bridge.clone(),
            internal_subnet: st.internal_subnet,
            hosts,
            key: st.dir.join(KEY_FILE),
            known_hosts: st.dir.join("known_hosts"),
            ssh_config: st.dir.join("ssh_config"),
            inventory: st.dir.join("inventory.ini"),
            state: st,
        }
    }

    /// The recorded state this view was made from (for `status --json` consumers).
    pub fn short_id(&self) -> &str {
        &self.state.short
    }
}

/// `down` for a lab folder; Ok(false) if there was no lab there.
pub fn down_dir(dir: &Path) -> Result<bool, LabError> {
    if !dir.exists() {
        return Ok(false);
    }
    let dir = std::fs::canonicalize(dir).map_err(|e| LabError::io(dir, e))?;
    let lock_guard = lock(&dir)?;
    let Some(st) = State::load(&dir)? else {
        drop(lock_guard);
        let _ = std::fs::remove_file(dir.join(".lock"));
        let _ = std::fs::remove_dir(&dir);
        return Ok(false);
    };
    services::stop_all(&dir);
    let mut first_err = None;
    for h in &st.hosts {
        stop_host(h);
    }
    for h in &st.hosts {
        for r in [net::del_netns(&h.netns)]
            .into_iter()
            .chain(h.veths.iter().map(|v| net::del_link(v)))
        {
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
    }
    for b in std::iter::once(&st.bridge).chain(st.internal_bridge.iter()) {
        if let Err(e) = net::del_link(b) {
            first_err.get_or_insert(e);
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    for f in [
        "known_hosts",
        "ssh_config",
        "inventory.ini",
        KEY_FILE,
        "id_ed25519.pub",
        state::STATE_FILE,
    ] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    let hosts_dir = dir.join("hosts");
    if hosts_dir.exists() {
        std::fs::remove_dir_all(&hosts_dir).map_err(|e| LabError::io(&hosts_dir, e))?;
    }
    drop(lock_guard);
    let _ = std::fs::remove_file(dir.join(".lock"));
    let _ = std::fs::remove_dir(&dir);
    tracing::info!(lab = %st.name, "lab down");
    Ok(true)
}

/// Kills a host's recorded processes. sshd first: it is PID 1 of the host, so the whole PID
/// namespace goes with it, and `unshare` (its parent) reaps it and exits by itself; `unshare` is
/// killed only if it lingers (killing it first would leave sshd a zombie nobody reaps).
fn stop_host(h: &HostState) {
    if let Some(p) = h.sshd {
        p.kill();
    }
    if let Some(u) = h.unshare {
        if !u.wait_gone(Duration::from_secs(2)) {
            u.kill();
        }
    }
    for p in h.sshd.iter().chain(h.unshare.iter()) {
        if !p.wait_gone(Duration::from_secs(5)) {
            tracing::warn!(host = %h.name, pid = p.pid, "lab host process did not exit after SIGKILL");
        }
    }
}

fn host_pubkey(dir: &Path, host: &str) -> Option<String> {
    let p = boot::host_dir(dir, host).join("key/ssh_host_ed25519_key.pub");
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

fn new_state(spec: &LabSpec, dir: &Path) -> Result<State, LabError> {
    let key = names::lab_key(&spec.name, dir);
    let short = names::short_id(&key);
    let bridge = names::bridge(&short);
    let alias = names::bridge_alias(&spec.name, dir);
    let used = net::used_networks(&[&bridge])?;
    let subnet = names::subnet_candidates(&key, "lab")
        .into_iter()
        .find(|n| !used.iter().any(|u| net::overlaps(*n, *u)))
        .ok_or_else(|| {
            LabError::Collision(format!("no free 10.x.y.0/24 subnet for lab {}", spec.name))
        })?;
    Ok(State {
        version: 1,
        name: spec.name.clone(),
        dir: dir.to_path_buf(),
        short,
        bridge,
        bridge_alias: alias,
        subnet,
        internal_bridge: None,
        internal_subnet: None,
        hosts: Vec::new(),
    })
}

fn plan_host(st: &State, hs: &HostSpec, idx: usize) -> HostState {
    let lab_addr = (hs.net != HostNet::Internal).then(|| names::host_addr(st.subnet, idx));
    let internal_addr = match hs.net {
        HostNet::Lab => None,
        _ => st.internal_subnet.map(|n| names::host_addr(n, idx)),
    };
    let mut veths = Vec::new();
    if lab_addr.is_some() {
        veths.push(names::veth(&st.short, 'm', idx));
    }
    if internal_addr.is_some() {
        veths.push(names::veth(&st.short, 'i', idx));
    }
    HostState {
        name: hs.name.clone(),
        flavor: hs.flavor,
        net: hs.net,
        idx,
        netns: names::netns(&st.name, &st.short, &hs.name),
        lab_addr,
        internal_addr,
        veths,
        unshare: None,
        sshd: None,
    }
}
