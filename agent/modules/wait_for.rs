//! `wait_for`: wait until a port accepts connections (or stops, or drains), or a file appears (with
//! content matching a regex) or goes away.
//!
//! The waiting loop runs on the controller; each probe is one agent call on the already open
//! channel (a few milliseconds): `stat` + `read_file` for a path, `read_file` of `/proc/net/tcp{,6}`
//! for `drained` (parsed here, as Ansible's Linux code does), and for a port a short exec of
//! `bash -c 'exec 3<>/dev/tcp/HOST/PORT'` under `timeout` — the connection is made from the host,
//! as Ansible's is. With `search_regex` on a port, the probe reads what the server sends (`cat`, which
//! writes as it reads; `head` buffers and loses it when timed out) for up to
//! `sleep + 1` seconds (or until it closes) and the regex is matched here.
//!
//! Regexes are Python's `re` with `MULTILINE` ([`fancy_regex`]: look-around, back-references and
//! `(?P<name>...)` work). Nothing changes, ever: the result is `changed: false` with `elapsed`,
//! `state`, `port`, `path`, `search_regex`, `match_groups`, `match_groupdict`, and a timeout fails
//! with Ansible's messages. Ansible's wait_for does not support check mode, so check mode skips it.

use super::support::args;
use super::{Ctx, Module, ModuleError, Outcome, Query};
use crate::transport::{ExecRequest, TransportError};
use crate::value::{Map, Value};
use serde::Deserialize;
use std::net::IpAddr;
use std::time::{Duration, Instant};

args::choices! {
    /// `state:` of `wait_for`.
    pub enum State for "state" default Started {
        Absent = "absent",
        Drained = "drained",
        Present = "present",
        Started = "started",
        Stopped = "stopped",
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(default, deserialize_with = "args::opt_string")]
    host: Option<String>,
    #[serde(default, deserialize_with = "args::opt_int")]
    timeout: Option<i64>,
    #[serde(default, deserialize_with = "args::opt_int")]
    connect_timeout: Option<i64>,
    #[serde(default, deserialize_with = "args::opt_int")]
    delay: Option<i64>,
    #[serde(default, deserialize_with = "args::opt_int")]
    port: Option<i64>,
    #[serde(default, deserialize_with = "args::string_list")]
    active_connection_states: Vec<String>,
    #[serde(default)]
    state: State,
    #[serde(default, deserialize_with = "args::opt_string")]
    path: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    search_regex: Option<String>,
    #[serde(default)]
    exclude_hosts: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "args::opt_int")]
    sleep: Option<i64>,
    #[serde(default, deserialize_with = "args::opt_string")]
    msg: Option<String>,
}

pub struct WaitFor;

/// `/proc/net/tcp` state codes of Ansible's `active_connection_states` names.
pub fn connection_state_id(name: &str) -> Option<&'static str> {
    Some(match name {
        "ESTABLISHED" => "01",
        "SYN_SENT" => "02",
        "SYN_RECV" => "03",
        "FIN_WAIT1" => "04",
        "FIN_WAIT2" => "05",
        "TIME_WAIT" => "06",
        _ => return None,
    })
}

const DEFAULT_STATES: &[&str] = &[
    "ESTABLISHED",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "SYN_RECV",
    "SYN_SENT",
    "TIME_WAIT",
];

/// Python's `re.compile(regex, re.MULTILINE)`.
pub fn compile(regex: &str) -> Result<fancy_regex::Regex, String> {
    fancy_regex::Regex::new(&format!("(?m){regex}"))
        .map_err(|e| format!("Invalid regular expression: {e}"))
}

/// Search `text`; on a match, Python's `groups()` (unmatched groups are None) and `groupdict()`.
pub fn search(re: &fancy_regex::Regex, text: &str) -> Option<(Vec<Value>, Map)> {
    let caps = re.captures(text).ok().flatten()?;
    let groups = (1..caps.len())
        .map(|i| {
            caps.get(i)
                .map(|m| Value::Str(m.as_str().to_string()))
                .unwrap_or(Value::Null)
        })
        .collect();
    let mut dict = Map::new();
    for name in re.capture_names().flatten() {
        let v = caps
            .name(name)
            .map(|m| Value::Str(m.as_str().to_string()))
            .unwrap_or(Value::Null);
        dict.insert(name.to_string(), v);
    }
    Some((groups, dict))
}

/// An address as `/proc/net/tcp{,6}` writes it: 32-bit words in host (little-endian) order.
pub fn proc_hex(ip: IpAddr) -> (bool, String) {
    let words = |b: &[u8]| -> String {
        b.chunks(4)
            .map(|c| format!("{:02X}{:02X}{:02X}{:02X}", c[3], c[2], c[1], c[0]))
            .collect()
    };
    match ip {
        IpAddr::V4(a) => (false, words(&a.octets())),
        IpAddr::V6(a) => (true, words(&a.octets())),
    }
}

/// Active connections to `port` on one of `ips` (v6 flag, hex) in a `/proc/net/tcp{,6}` table, as
/// Ansible's `LinuxTCPConnectionInfo` counts them.
pub fn count_active(
    table: &str,
    v6: bool,
    port: u16,
    ips: &[(bool, String)],
    exclude: &[(bool, String)],
    states: &[&str],
) -> usize {
    let port = format!("{port:04X}");
    let match_all = if v6 { "0".repeat(32) } else { "0".repeat(8) };
    let mapped_all = "0000000000000000FFFF000000000000";
    let has = |list: &[(bool, String)], fam: bool, ip: &str| {
        list.iter()
            .any(|(f, h)| *f == fam && h.eq_ignore_ascii_case(ip))
    };
    table
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 4 || f[1] == "local_address" {
                return None;
            }
            if !states.contains(&f[3]) {
                return None;
            }
            let (lip, lport) = f[1].split_once(':')?;
            if lport != port {
                return None;
            }
            let (rip, _) = f[2].split_once(':')?;
            if has(exclude, v6, rip) {
                return None;
            }
            let hit = has(ips, v6, lip)
                || has(ips, v6, &match_all)
                || (lip.starts_with("0000000000000000FFFF0000") && has(ips, v6, mapped_all));
            hit.then_some(())
        })
        .count()
}

struct Run<'a> {
    ctx: &'a Ctx,
    host: String,
    connect_timeout: u64,
    sleep: u64,
}

impl Run<'_> {
    /// Can we connect from the host? With `read`, also what the server sent within `read` seconds.
    async fn probe_port(
        &self,
        port: i64,
        wait: u64,
        read: Option<u64>,
    ) -> Result<Option<String>, ModuleError> {
        let script = match read {
            None => "exec 3<>\"/dev/tcp/$0/$1\"".to_string(),
            Some(r) => format!("exec 3<>\"/dev/tcp/$0/$1\" || exit 1; timeout {r} cat <&3; exit 0"),
        };
        let budget = wait + read.unwrap_or(0);
        let req = ExecRequest {
            argv: vec![
                "timeout".into(),
                budget.max(1).to_string(),
                "bash".into(),
                "-c".into(),
                script,
                self.host.clone(),
                port.to_string(),
            ],
            timeout: Some(budget as f64 + 5.0),
            ..Default::default()
        };
        // connect only under the connect timeout: a second timeout wraps the read
        let r = match self.ctx.exec(req).await {
            Ok(r) => r,
            Err(TransportError::Remote { msg, .. }) => {
                return Err(ModuleError::Failed(format!(
                    "wait_for needs bash and coreutils' timeout on the host: {msg}"
                )))
            }
            Err(e) => return Err(e.into()),
        };
        Ok((r.rc == 0).then(|| r.stdout_text()))
    }

    async fn ips(&self, host: &str) -> Result<Vec<(bool, String)>, ModuleError> {
        let addrs: Vec<IpAddr> = match host.parse::<IpAddr>() {
            Ok(a) => vec![a],
            Err(_) => {
                let r = self.ctx.run(&["getent", "ahosts", host]).await?;
                r.stdout_text()
                    .lines()
                    .filter_map(|l| l.split_whitespace().next()?.parse().ok())
                    .collect()
            }
        };
        let mut out = vec![];
        for a in addrs {
            out.push(proc_hex(a));
            if let IpAddr::V4(v4) = a {
                out.push(proc_hex(IpAddr::V6(v4.to_ipv6_mapped())));
            }
        }
        Ok(out)
    }

    async fn active(
        &self,
        port: u16,
        ips: &[(bool, String)],
        exclude: &[(bool, String)],
        states: &[&str],
    ) -> Result<usize, ModuleError> {
        let mut n = 0;
        for (file, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
            match self.ctx.session.read_file(file).await {
                Ok(b) => {
                    n += count_active(&String::from_utf8_lossy(&b), v6, port, ips, exclude, states)
                }
                Err(TransportError::Remote { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(n)
    }
}

fn fail(msg: String, start: Instant) -> Outcome {
    Outcome::failed(msg).with("elapsed", Value::Int(start.elapsed().as_secs() as i64))
}

impl Module for WaitFor {
    const NAMES: &'static [&'static str] = &["wait_for", "ansible.builtin.wait_for"];
    type Args = Args;
    type Plan = Args;

    /// Ansible's wait_for does not support check mode: it is skipped there.
    async fn query(&self, a: Args, _ctx: &Ctx) -> Result<Query<Args>, ModuleError> {
        Ok(Query::Opaque(a))
    }

    async fn apply(&self, a: Args, ctx: &Ctx) -> Result<Outcome, ModuleError> {
        wait(a, ctx).await.map(|q| match q {
            Query::Done(o) => o,
            _ => Outcome::ok(),
        })
    }
}

async fn wait(a: Args, ctx: &Ctx) -> Result<Query<()>, ModuleError> {
    {
        let state = a.state.clone().checked()?;
        let host = a.host.clone().unwrap_or_else(|| "127.0.0.1".into());
        let timeout = a.timeout.unwrap_or(300).max(0) as u64;
        let run = Run {
            ctx,
            host: host.clone(),
            connect_timeout: a.connect_timeout.unwrap_or(5).max(1) as u64,
            sleep: a.sleep.unwrap_or(1).max(0) as u64,
        };
        let start = Instant::now();
        let re = match a.search_regex.as_deref().map(compile).transpose() {
            Ok(r) => r,
            Err(m) => return Ok(Query::Done(Outcome::failed(m))),
        };
        let early = |m: &str| {
            Ok(Query::Done(
                Outcome::failed(m).with("elapsed", Value::Int(0)),
            ))
        };
        if a.port.is_some() && a.path.is_some() {
            return early("port and path parameter can not both be passed to wait_for");
        }
        if a.path.is_some() && state == State::Stopped {
            return early(
                "state=stopped should only be used for checking a port in the wait_for module",
            );
        }
        if a.path.is_some() && state == State::Drained {
            return early(
                "state=drained should only be used for checking a port in the wait_for module",
            );
        }
        if a.exclude_hosts.is_some() && state != State::Drained {
            return early("exclude_hosts should only be with state=drained");
        }
        let state_names: Vec<String> = if a.active_connection_states.is_empty() {
            DEFAULT_STATES.iter().map(|s| s.to_string()).collect()
        } else {
            a.active_connection_states.clone()
        };
        let mut state_ids = vec![];
        for s in &state_names {
            match connection_state_id(s) {
                Some(id) => state_ids.push(id),
                None => return early(&format!("unknown active_connection_state ({s}) defined")),
            }
        }
        let pause = Duration::from_secs(run.sleep);
        if let Some(d) = a.delay.filter(|d| *d > 0) {
            tokio::time::sleep(Duration::from_secs(d as u64)).await;
        }
        let end = start + Duration::from_secs(timeout);
        let remaining = || {
            end.saturating_duration_since(Instant::now())
                .as_secs_f64()
                .ceil() as u64
        };
        let (mut groups, mut dict) = (Vec::new(), Map::new());
        let custom = |m: String| a.msg.clone().unwrap_or(m);
        let path = a.path.clone();
        let port = a.port;
        if port.is_none() && path.is_none() && state != State::Drained {
            tokio::time::sleep(Duration::from_secs(timeout)).await;
        } else if state == State::Absent || state == State::Stopped {
            let mut done = false;
            while Instant::now() < end {
                if let Some(p) = &path {
                    if !ctx.session.stat(p, true, false).await?.exists {
                        done = true;
                        break;
                    }
                } else if let Some(pt) = port {
                    if run
                        .probe_port(pt, run.connect_timeout, None)
                        .await?
                        .is_none()
                    {
                        done = true;
                        break;
                    }
                }
                tokio::time::sleep(pause).await;
            }
            if !done {
                let m = match (&path, port) {
                    (_, Some(pt)) => format!("Timeout when waiting for {host}:{pt} to stop."),
                    (Some(p), _) => format!("Timeout when waiting for {p} to be absent."),
                    _ => String::new(),
                };
                return Ok(Query::Done(fail(custom(m), start)));
            }
        } else if state == State::Started || state == State::Present {
            let mut done = false;
            while Instant::now() < end {
                if let Some(p) = &path {
                    let st = ctx.session.stat(p, true, false).await?;
                    if st.exists {
                        match &re {
                            None => {
                                done = true;
                                break;
                            }
                            Some(re) => {
                                if let Ok(b) = ctx.session.read_file(p).await {
                                    if let Some((g, d)) = search(re, &String::from_utf8_lossy(&b)) {
                                        (groups, dict) = (g, d);
                                        done = true;
                                        break;
                                    }
                                }
                            }
                        }
                    }
                } else if let Some(pt) = port {
                    let ct = run.connect_timeout.min(remaining().max(1));
                    match &re {
                        None => {
                            if run.probe_port(pt, ct, None).await?.is_some() {
                                done = true;
                                break;
                            }
                        }
                        Some(re) => {
                            let read = (run.sleep + 1).min(remaining().max(1));
                            if let Some(data) = run.probe_port(pt, ct, Some(read)).await? {
                                if re.is_match(&data).unwrap_or(false) {
                                    done = true;
                                    break;
                                }
                            }
                        }
                    }
                }
                tokio::time::sleep(pause).await;
            }
            if !done {
                let m = match (&path, port, &a.search_regex) {
                    (_, Some(pt), Some(r)) => {
                        format!("Timeout when waiting for search string {r} in {host}:{pt}")
                    }
                    (_, Some(pt), None) => format!("Timeout when waiting for {host}:{pt}"),
                    (Some(p), _, Some(r)) => {
                        format!("Timeout when waiting for search string {r} in {p}")
                    }
                    (Some(p), _, None) => format!("Timeout when waiting for file {p}"),
                    _ => String::new(),
                };
                return Ok(Query::Done(fail(custom(m), start)));
            }
        } else {
            // drained
            let pt = port.ok_or_else(|| ModuleError::Args("state=drained needs a port".into()))?;
            let pt = u16::try_from(pt)
                .map_err(|_| ModuleError::Args(format!("port {pt} is out of range")))?;
            let ips = run.ips(&host).await?;
            let mut exclude = vec![];
            let ex: Vec<String> = match &a.exclude_hosts {
                Some(serde_json::Value::Array(v)) => v
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect(),
                Some(serde_json::Value::String(s)) => {
                    s.split(',').map(|p| p.trim().to_string()).collect()
                }
                _ => vec![],
            };
            for h in &ex {
                exclude.extend(run.ips(h).await?);
            }
            let mut done = false;
            while Instant::now() < end {
                if run.active(pt, &ips, &exclude, &state_ids).await? == 0 {
                    done = true;
                    break;
                }
                tokio::time::sleep(pause).await;
            }
            if !done {
                return Ok(Query::Done(fail(
                    custom(format!("Timeout when waiting for {host}:{pt} to drain")),
                    start,
                )));
            }
        }
        let opt = |v: Option<String>| v.map(Value::Str).unwrap_or(Value::Null);
        Ok(Query::Done(
            Outcome::ok()
                .with("state", state.as_str())
                .with("port", port.map(Value::Int).unwrap_or(Value::Null))
                .with("search_regex", opt(a.search_regex))
                .with("match_groups", Value::List(groups))
                .with("match_groupdict", Value::Map(dict))
                .with("path", opt(path))
                .with("elapsed", Value::Int(start.elapsed().as_secs() as i64)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_style_regex_groups() {
        let re = compile(r"^port=(?P<port>\d+)(x)?$").unwrap();
        let (g, d) = search(&re, "a\nport=8080\nb").unwrap();
        assert_eq!(g, vec![Value::Str("8080".into()), Value::Null]);
        assert_eq!(d.get("port"), Some(&Value::Str("8080".into())));
        assert!(search(&re, "port=x").is_none());
        assert!(compile("(")
            .unwrap_err()
            .starts_with("Invalid regular expression"));
    }

    #[test]
    fn proc_net_tcp_counting() {
        // 127.0.0.1:8000 <- 127.0.0.1:40000 established; a listener; one TIME_WAIT from 10.0.0.2
        let table = "  sl  local_address rem_address   st tx_queue rx_queue\n\
           0: 0100007F:1F40 00000000:0000 0A 00000000:00000000\n\
           1: 0100007F:1F40 0100007F:9C40 01 00000000:00000000\n\
           2: 00000000:1F40 0200000A:9C41 06 00000000:00000000\n";
        let lo = vec![proc_hex("127.0.0.1".parse().unwrap())];
        assert_eq!(lo[0], (false, "0100007F".into()));
        assert_eq!(count_active(table, false, 8000, &lo, &[], &["01", "06"]), 1);
        let any = vec![proc_hex("0.0.0.0".parse().unwrap())];
        assert_eq!(
            count_active(table, false, 8000, &any, &[], &["01", "06"]),
            2
        );
        let ex = vec![proc_hex("10.0.0.2".parse().unwrap())];
        assert_eq!(
            count_active(table, false, 8000, &any, &ex, &["01", "06"]),
            1
        );
        assert_eq!(
            count_active(table, false, 8001, &any, &[], &["01", "06"]),
            0
        );
        let (v6, h) = proc_hex("::1".parse().unwrap());
        assert!(v6);
        assert_eq!(h, "00000000000000000000000001000000");
    }
}
