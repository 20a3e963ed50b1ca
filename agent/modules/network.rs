//! `kiln.builtin.network` (also `network`): a host's bridges, ports, veth pairs, addresses, MTUs
//! and routes, live (netlink, through the agent's `Net` op) and persistent (NetworkManager
//! keyfiles or systemd-networkd units), from Kayobe's own interface descriptions.
//!
//! The arguments are the dicts Kayobe's `net_bridge_obj` / `net_interface_obj` filters return
//! (the MichaelRigart.interfaces shape; see `template::kayobe_net`), so a Kayobe configuration
//! feeds it unchanged:
//!
//! ```yaml
//! - kiln.builtin.network:
//!     bridge_interfaces:
//!       - {device: breth1, address: 192.168.33.3, netmask: 255.255.255.0, mtu: 1500,
//!          ports: [dummy1], route: [{network: 10.0.0.0, netmask: 255.0.0.0, gateway: 192.168.33.254}]}
//!     ether_interfaces: []          # existing links: address, mtu, routes
//!     veth_interfaces: [{device: p-br0, peer_device: p-br0-peer, bridge: breth1, mtu: 1500}]
//!     persist: auto                 # auto | networkmanager | networkd | none
//! ```
//!
//! * A bridge port that does not exist becomes a **dummy** link (the ci-builder's `dummy1`);
//!   ports without an MTU of their own take their bridge's. STP is off unless `stp` is true.
//! * Keys kiln does not support yet (`vlan`, `rules`, `ethtool_opts`, `zone`, `bond_interfaces`,
//!   route `options`) are accepted when null or empty and are a clear error otherwise, never
//!   silently ignored. `allowed_addresses` (a VIP list for Kayobe's firewalling) is accepted and
//!   not configured on the link.
//! * Query asks the agent's `Net` op in check mode (the exact actions) and renders the persistent
//!   files (`modules::network::persist`), comparing them with the host's through `write_file` in
//!   check mode. Apply runs the op for real — dummy links first, so a kernel without the dummy
//!   driver fails it before anything else changed — and only then writes the files, so a failed
//!   live change leaves no configuration behind either.
//! * Nothing is removed: addresses, routes and files that are not asked for stay.
//!
//! Result: `changed`, `actions` (one line per live change), `interfaces` (each link's state
//! afterwards), `persisted` (the files kiln manages). `--diff` shows the files' diffs and the
//! live actions.

pub mod persist;

use super::support::args;
use super::{Ctx, Diff, Module, ModuleError, Outcome, Query};
use crate::protocol::{NetKind, NetLink, NetReport, NetRequest, NetRoute};
use crate::transport::{TransportError, WriteRequest};
use crate::value::{Map, Value};
use ipnet::IpNet;
use persist::{IfKind, Iface, Route};
use serde::{Deserialize, Deserializer};
use std::net::IpAddr;

/// A list that may be given as null (Kayobe's filters return None for "no routes").
fn list<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

fn opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    args::opt_int(d)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(default, deserialize_with = "list")]
    bridge_interfaces: Vec<IfaceArg>,
    #[serde(default, deserialize_with = "list")]
    ether_interfaces: Vec<IfaceArg>,
    #[serde(default, deserialize_with = "list")]
    veth_interfaces: Vec<VethArg>,
    /// Not supported yet: accepted only when empty.
    #[serde(default, deserialize_with = "list")]
    bond_interfaces: Vec<serde_json::Value>,
    #[serde(default = "auto", deserialize_with = "args::string")]
    persist: String,
}

fn auto() -> String {
    "auto".into()
}

/// One `net_bridge_obj` / `net_interface_obj` dict.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IfaceArg {
    #[serde(deserialize_with = "args::string")]
    device: String,
    #[serde(default, deserialize_with = "args::opt_string")]
    address: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    netmask: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    gateway: Option<String>,
    #[serde(default, deserialize_with = "opt_int")]
    mtu: Option<i64>,
    #[serde(default, deserialize_with = "args::string_list")]
    ports: Vec<String>,
    #[serde(default, deserialize_with = "list")]
    route: Vec<RouteArg>,
    #[serde(default, deserialize_with = "args::opt_bool")]
    stp: Option<bool>,
    #[serde(default, deserialize_with = "args::opt_string")]
    bootproto: Option<String>,
    #[serde(default, deserialize_with = "args::opt_bool")]
    onboot: Option<bool>,
    #[serde(default, deserialize_with = "args::opt_bool")]
    defroute: Option<bool>,
    #[serde(default, deserialize_with = "args::opt_string")]
    macaddress: Option<String>,
    /// Kayobe's VIP list (for its firewalling): accepted, not configured on the link.
    #[serde(default)]
    #[allow(dead_code)]
    allowed_addresses: serde_json::Value,
    #[serde(default)]
    vlan: serde_json::Value,
    #[serde(default)]
    rules: serde_json::Value,
    #[serde(default)]
    ethtool_opts: serde_json::Value,
    #[serde(default)]
    zone: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteArg {
    #[serde(deserialize_with = "args::string")]
    network: String,
    #[serde(default, deserialize_with = "args::opt_string")]
    netmask: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    gateway: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    table: Option<String>,
    #[serde(default, deserialize_with = "opt_int")]
    metric: Option<i64>,
    #[serde(default)]
    options: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VethArg {
    #[serde(deserialize_with = "args::string")]
    device: String,
    #[serde(deserialize_with = "args::string")]
    peer_device: String,
    #[serde(default, deserialize_with = "args::opt_string")]
    bridge: Option<String>,
    #[serde(default, deserialize_with = "opt_int")]
    mtu: Option<i64>,
}

/// Null, "", [] and {} mean "not set".
fn is_empty(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null => true,
        serde_json::Value::String(s) => s.is_empty(),
        serde_json::Value::Array(a) => a.is_empty(),
        serde_json::Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

fn unsupported(dev: &str, key: &str, v: &serde_json::Value) -> Result<(), ModuleError> {
    if is_empty(v) {
        return Ok(());
    }
    Err(ModuleError::Args(format!(
        "network: {dev}: `{key}` ({v}) is not supported by kiln yet; leave it null/empty, or \
         configure it with another task"
    )))
}

/// A prefix length from a netmask (`255.255.255.0`, `ffff:ffff::`), or a plain length (`24`).
pub fn prefix_len(netmask: &str, ip: &IpAddr) -> Option<u8> {
    let m = netmask.trim().trim_start_matches('/');
    if let Ok(n) = m.parse::<u8>() {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        return (n <= max).then_some(n);
    }
    match (m.parse::<IpAddr>().ok()?, ip) {
        (IpAddr::V4(mask), IpAddr::V4(_)) => ipnet::ipv4_mask_to_prefix(mask).ok(),
        (IpAddr::V6(mask), IpAddr::V6(_)) => ipnet::ipv6_mask_to_prefix(mask).ok(),
        _ => None,
    }
}

/// `address` + `netmask` (or `address` as `ip/prefix`) as one network address.
pub fn address(dev: &str, address: &str, netmask: Option<&str>) -> Result<IpNet, ModuleError> {
    if let Ok(n) = address.parse::<IpNet>() {
        return Ok(n);
    }
    let ip: IpAddr = address.trim().parse().map_err(|_| {
        ModuleError::Args(format!(
            "network: {dev}: address {address:?} is not an IP address"
        ))
    })?;
    let mask = netmask.filter(|m| !m.is_empty()).ok_or_else(|| {
        ModuleError::Args(format!(
            "network: {dev}: address {address} has no netmask (give `netmask` or address/prefix)"
        ))
    })?;
    let p = prefix_len(mask, &ip).ok_or_else(|| {
        ModuleError::Args(format!(
            "network: {dev}: netmask {mask:?} is not a valid netmask for {ip}"
        ))
    })?;
    IpNet::new(ip, p).map_err(|e| ModuleError::Args(format!("network: {dev}: {e}")))
}

fn mtu(dev: &str, m: Option<i64>) -> Result<Option<u32>, ModuleError> {
    match m {
        None => Ok(None),
        Some(m) if (68..=65535).contains(&m) => Ok(Some(m as u32)),
        Some(m) => Err(ModuleError::Args(format!(
            "network: {dev}: mtu {m} is out of range (68 to 65535)"
        ))),
    }
}

fn route(dev: &str, r: &RouteArg) -> Result<Route, ModuleError> {
    unsupported(dev, "route options", &r.options)?;
    let dst = address(dev, &r.network, r.netmask.as_deref())?.trunc();
    let gw = r
        .gateway
        .as_deref()
        .filter(|g| !g.is_empty())
        .map(|g| {
            g.parse::<IpAddr>().map_err(|_| {
                ModuleError::Args(format!(
                    "network: {dev}: route gateway {g:?} is not an IP address"
                ))
            })
        })
        .transpose()?;
    let table = match r.table.as_deref().map(str::trim) {
        None | Some("") | Some("main") => None,
        Some(t) => Some(t.parse::<u32>().map_err(|_| {
            ModuleError::Args(format!(
                "network: {dev}: route table {t:?} must be a number (named tables are not supported)"
            ))
        })?),
    };
    let metric = r
        .metric
        .map(|m| {
            u32::try_from(m).map_err(|_| {
                ModuleError::Args(format!("network: {dev}: route metric {m} is out of range"))
            })
        })
        .transpose()?;
    Ok(Route {
        dst,
        gw,
        table,
        metric,
    })
}

/// One bridge or ether dict, checked and converted (kind and master are filled in later).
fn iface(a: &IfaceArg, kind: IfKind) -> Result<Iface, ModuleError> {
    let dev = a.device.as_str();
    unsupported(dev, "vlan", &a.vlan)?;
    unsupported(dev, "rules", &a.rules)?;
    unsupported(dev, "ethtool_opts", &a.ethtool_opts)?;
    unsupported(dev, "zone", &a.zone)?;
    let mut i = Iface::new(dev, kind);
    i.mtu = mtu(dev, a.mtu)?;
    i.onboot = a.onboot.unwrap_or(true);
    i.never_default = a.defroute == Some(false);
    i.mac = a.macaddress.clone().filter(|m| !m.is_empty());
    match a.bootproto.as_deref().unwrap_or("static") {
        "static" | "none" | "" => {}
        "dhcp" => i.dhcp = true,
        other => {
            return Err(ModuleError::Args(format!(
                "network: {dev}: bootproto {other:?} is not supported (static or dhcp)"
            )))
        }
    }
    if let Some(addr) = a.address.as_deref().filter(|s| !s.is_empty()) {
        if !i.dhcp {
            i.addresses.push(address(dev, addr, a.netmask.as_deref())?);
        }
    }
    if let Some(g) = a.gateway.as_deref().filter(|s| !s.is_empty()) {
        let g: IpAddr = g.parse().map_err(|_| {
            ModuleError::Args(format!(
                "network: {dev}: gateway {g:?} is not an IP address"
            ))
        })?;
        i.gateways.push(g);
    }
    i.routes = a
        .route
        .iter()
        .map(|r| route(dev, r))
        .collect::<Result<_, _>>()?;
    Ok(i)
}

/// The checked request: links for the agent, and each link's persistent shape (`port_kinds`
/// decided once the agent says which ports exist).
pub struct Wanted {
    pub ifaces: Vec<Iface>,
    /// Ports that are created as dummy links when missing.
    pub maybe_dummy: Vec<String>,
}

pub fn wanted(a: &Args) -> Result<Wanted, ModuleError> {
    if let Some(b) = a.bond_interfaces.iter().find(|b| !is_empty(b)) {
        return Err(ModuleError::Args(format!(
            "network: bond_interfaces ({b}) are not supported by kiln yet"
        )));
    }
    let mut ifaces: Vec<Iface> = vec![];
    let mut maybe_dummy = vec![];
    for b in &a.bridge_interfaces {
        let stp = b.stp.unwrap_or(false);
        ifaces.push(iface(b, IfKind::Bridge { stp })?);
    }
    for e in &a.ether_interfaces {
        if !e.ports.is_empty() {
            return Err(ModuleError::Args(format!(
                "network: {}: an ether interface has no ports (is it a bridge?)",
                e.device
            )));
        }
        ifaces.push(iface(e, IfKind::Ethernet)?);
    }
    for v in &a.veth_interfaces {
        let m = mtu(&v.device, v.mtu)?;
        let mut i = Iface::new(
            &v.device,
            IfKind::Veth {
                peer: v.peer_device.clone(),
            },
        );
        i.mtu = m;
        i.master = v.bridge.clone().filter(|b| !b.is_empty());
        let mut p = Iface::new(
            &v.peer_device,
            IfKind::VethPeer {
                peer: v.device.clone(),
            },
        );
        p.mtu = m;
        ifaces.push(i);
        ifaces.push(p);
    }
    // ports: an existing entry (ether or veth) joins the bridge; anything else is a dummy
    for b in &a.bridge_interfaces {
        let bridge_mtu = mtu(&b.device, b.mtu)?;
        for port in &b.ports {
            match ifaces.iter_mut().find(|i| &i.name == port) {
                Some(i) if matches!(i.kind, IfKind::Bridge { .. }) => {
                    return Err(ModuleError::Args(format!(
                        "network: bridge {} lists bridge {port} as a port",
                        b.device
                    )))
                }
                Some(i) => {
                    if let Some(m) = i.master.as_ref().filter(|m| *m != &b.device) {
                        return Err(ModuleError::Args(format!(
                            "network: {port} is a port of both {m} and {}",
                            b.device
                        )));
                    }
                    i.master = Some(b.device.clone());
                    if i.mtu.is_none() {
                        i.mtu = bridge_mtu;
                    }
                }
                None => {
                    let mut d = Iface::new(port, IfKind::Dummy);
                    d.master = Some(b.device.clone());
                    d.mtu = bridge_mtu;
                    ifaces.push(d);
                    maybe_dummy.push(port.clone());
                }
            }
        }
    }
    for (n, i) in ifaces.iter().enumerate() {
        if ifaces[..n].iter().any(|o| o.name == i.name) {
            return Err(ModuleError::Args(format!(
                "network: link {} is described twice",
                i.name
            )));
        }
        if let Some(m) = &i.master {
            if !ifaces
                .iter()
                .any(|b| &b.name == m && matches!(b.kind, IfKind::Bridge { .. }))
            {
                return Err(ModuleError::Args(format!(
                    "network: {} is to join bridge {m}, which is not in bridge_interfaces",
                    i.name
                )));
            }
        }
    }
    Ok(Wanted {
        ifaces,
        maybe_dummy,
    })
}

/// The agent's request for the live state.
pub fn net_request(w: &Wanted, check: bool) -> NetRequest {
    let mut links = vec![];
    for i in &w.ifaces {
        let (kind, peer, stp) = match &i.kind {
            IfKind::Bridge { stp } => (NetKind::Bridge, None, *stp),
            IfKind::Dummy if w.maybe_dummy.contains(&i.name) => (NetKind::PortOrDummy, None, false),
            IfKind::Dummy => (NetKind::Dummy, None, false),
            IfKind::Veth { peer } => (NetKind::Veth, Some(peer.clone()), false),
            // the veth's entry sets its peer's MTU and brings it up
            IfKind::VethPeer { .. } => continue,
            IfKind::Ethernet => (NetKind::Existing, None, false),
        };
        let mut routes: Vec<NetRoute> = i
            .routes
            .iter()
            .map(|r| NetRoute {
                destination: r.dst.to_string(),
                gateway: r.gw.map(|g| g.to_string()),
                table: r.table,
                metric: r.metric,
            })
            .collect();
        if !i.never_default && i.master.is_none() {
            for g in &i.gateways {
                routes.push(NetRoute {
                    destination: if g.is_ipv4() { "0.0.0.0/0" } else { "::/0" }.into(),
                    gateway: Some(g.to_string()),
                    table: None,
                    metric: None,
                });
            }
        }
        links.push(NetLink {
            name: i.name.clone(),
            kind,
            peer,
            stp,
            master: i.master.clone(),
            mtu: i.mtu,
            addresses: if i.master.is_none() {
                i.addresses.iter().map(|a| a.to_string()).collect()
            } else {
                vec![]
            },
            routes: if i.master.is_none() { routes } else { vec![] },
            up: true,
        });
    }
    NetRequest { links, check }
}

/// Persisted shape once the agent has said which ports are (or will be) dummies.
fn resolve_ports(w: &Wanted, report: &NetReport) -> Vec<Iface> {
    w.ifaces
        .iter()
        .map(|i| {
            let mut i = i.clone();
            if w.maybe_dummy.contains(&i.name) {
                let kind = report
                    .links
                    .iter()
                    .find(|l| l.name == i.name)
                    .map(|l| l.kind.as_str())
                    .unwrap_or("dummy");
                i.kind = if kind == "dummy" {
                    IfKind::Dummy
                } else {
                    IfKind::Ethernet
                };
            }
            i
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persist {
    NetworkManager,
    Networkd,
    None,
}

/// `ID`/`ID_LIKE` of an os-release file → the family's persistence.
pub fn persist_from_os_release(text: &str) -> Option<Persist> {
    let mut words = vec![];
    for line in text.lines() {
        if let Some((k, v)) = line.split_once('=') {
            if k.trim() == "ID" || k.trim() == "ID_LIKE" {
                words.extend(
                    v.trim()
                        .trim_matches(['"', '\''])
                        .split_whitespace()
                        .map(str::to_ascii_lowercase),
                );
            }
        }
    }
    if words
        .iter()
        .any(|w| ["rhel", "fedora", "centos", "rocky", "almalinux"].contains(&w.as_str()))
    {
        return Some(Persist::NetworkManager);
    }
    if words
        .iter()
        .any(|w| ["debian", "ubuntu"].contains(&w.as_str()))
    {
        return Some(Persist::Networkd);
    }
    None
}

async fn persist_mode(ctx: &Ctx, arg: &str) -> Result<Persist, ModuleError> {
    match arg {
        "networkmanager" | "NetworkManager" | "nm" => return Ok(Persist::NetworkManager),
        "networkd" | "systemd-networkd" => return Ok(Persist::Networkd),
        "none" | "no" | "false" => return Ok(Persist::None),
        "auto" => {}
        other => {
            return Err(ModuleError::Args(format!(
                "network: value of persist must be one of: auto, networkmanager, networkd, none, got: {other}"
            )))
        }
    }
    match ctx.fact("os_family") {
        Some("RedHat") => return Ok(Persist::NetworkManager),
        Some("Debian") => return Ok(Persist::Networkd),
        _ => {}
    }
    let text = super::support::sysutil::read_opt(ctx, "/etc/os-release")
        .await?
        .unwrap_or_default();
    persist_from_os_release(&text).ok_or_else(|| {
        ModuleError::Failed(
            "network: persist: auto cannot tell this host's family (not RedHat or Debian by \
             facts or /etc/os-release); set persist to networkmanager, networkd or none"
                .into(),
        )
    })
}

/// Tell a running NetworkManager / systemd-networkd to read the changed files (the live state is
/// already right, so this only makes them know the profiles). Skipped, and `reloaded` is null,
/// where the service is not running (a chroot, a container, the lab); a failed reload is a
/// warning, not a failure: the files and the live state are in place.
async fn reload(ctx: &Ctx, mode: Persist, o: Outcome) -> Result<Outcome, ModuleError> {
    let (service, tool, argv): (&str, &str, &[&str]) = match mode {
        Persist::NetworkManager => ("NetworkManager", "nmcli", &["connection", "reload"]),
        Persist::Networkd => ("systemd-networkd", "networkctl", &["reload"]),
        Persist::None => return Ok(o),
    };
    let (Some(tool), Some(systemctl)) = (
        super::support::sysutil::has_program(ctx, tool).await?,
        super::support::sysutil::has_program(ctx, "systemctl").await?,
    ) else {
        return Ok(o.with("reloaded", Value::Null));
    };
    let active = ctx
        .run(&[&systemctl, "is-active", "--quiet", service])
        .await?;
    if active.rc != 0 {
        return Ok(o.with("reloaded", Value::Null));
    }
    let mut cmd = vec![tool.as_str()];
    cmd.extend_from_slice(argv);
    let r = ctx.run(&cmd).await?;
    let shown = cmd.join(" ");
    Ok(if r.rc == 0 {
        o.with("reloaded", Value::Str(shown))
    } else {
        o.with("reloaded", Value::Null).with(
            "warnings",
            Value::List(vec![Value::Str(format!(
                "`{shown}` failed (rc {}): {}; the files are written, {service} reads them at its next start",
                r.rc,
                r.stderr_text().trim()
            ))]),
        )
    })
}

pub struct Network;

pub struct FilePlan {
    file: persist::File,
    changed: bool,
}

pub struct Plan {
    wanted: Wanted,
    mode: Persist,
    files: Vec<FilePlan>,
}

fn remote(e: TransportError) -> ModuleError {
    match e {
        TransportError::Remote { msg, .. } => ModuleError::Failed(msg),
        other => ModuleError::Transport(other),
    }
}

fn report_data(o: Outcome, report: &NetReport, files: &[FilePlan]) -> Outcome {
    let interfaces: Vec<Value> = report
        .links
        .iter()
        .map(|l| {
            let mut m = Map::new();
            m.insert("device".into(), Value::Str(l.name.clone()));
            m.insert("kind".into(), Value::Str(l.kind.clone()));
            m.insert("mtu".into(), Value::Int(i64::from(l.mtu)));
            m.insert("up".into(), Value::Bool(l.up));
            m.insert(
                "master".into(),
                l.master.clone().map(Value::Str).unwrap_or(Value::Null),
            );
            if let Some(s) = l.stp {
                m.insert("stp".into(), Value::Bool(s));
            }
            m.insert(
                "addresses".into(),
                Value::List(l.addresses.iter().cloned().map(Value::Str).collect()),
            );
            m.insert(
                "routes".into(),
                Value::List(l.routes.iter().cloned().map(Value::Str).collect()),
            );
            Value::Map(m)
        })
        .collect();
    o.with(
        "actions",
        Value::List(report.actions.iter().cloned().map(Value::Str).collect()),
    )
    .with("interfaces", Value::List(interfaces))
    .with(
        "persisted",
        Value::List(
            files
                .iter()
                .map(|f| Value::Str(f.file.path.clone()))
                .collect(),
        ),
    )
}

fn write_req(f: &persist::File, check: bool) -> WriteRequest {
    WriteRequest {
        path: f.path.clone(),
        content: f.content.clone().into_bytes(),
        mode: Some(f.mode),
        owner: Some("root".into()),
        group: Some("root".into()),
        check,
    }
}

impl Module for Network {
    const NAMES: &'static [&'static str] = &["kiln.builtin.network", "network"];
    type Args = Args;
    type Plan = Plan;

    async fn query(&self, a: Args, ctx: &Ctx) -> Result<Query<Plan>, ModuleError> {
        let w = wanted(&a)?;
        let mode = persist_mode(ctx, a.persist.trim()).await?;
        let report = ctx
            .session
            .net(net_request(&w, true))
            .await
            .map_err(remote)?;
        let ifaces = resolve_ports(&w, &report);
        let rendered = match mode {
            Persist::NetworkManager => persist::networkmanager(&ifaces),
            Persist::Networkd => persist::networkd(&ifaces),
            Persist::None => vec![],
        };
        let mut files = vec![];
        let mut diffs = vec![];
        for f in rendered {
            let r = ctx.session.write_file(write_req(&f, true)).await;
            let changed = match r {
                Ok(r) => r.changed,
                // the directory does not exist yet: the file is new
                Err(TransportError::Remote { .. }) => true,
                Err(e) => return Err(e.into()),
            };
            if changed && ctx.diff {
                let before = super::support::sysutil::read_opt(ctx, &f.path)
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                diffs.push(Diff {
                    before_header: Some(f.path.clone()),
                    after_header: Some(f.path.clone()),
                    before,
                    after: f.content.clone(),
                });
            }
            files.push(FilePlan { file: f, changed });
        }
        let live_changes = report.changed;
        if !live_changes && !files.iter().any(|f| f.changed) {
            return Ok(Query::Done(report_data(Outcome::ok(), &report, &files)));
        }
        let mut preview = report_data(Outcome::changed(), &report, &files);
        if live_changes {
            preview = preview.with_diff(Diff {
                before_header: Some("live network (netlink)".into()),
                after_header: Some("live network (netlink)".into()),
                before: String::new(),
                after: report.actions.iter().map(|a| format!("{a}\n")).collect(),
            });
        }
        for d in diffs {
            preview = preview.with_diff(d);
        }
        Ok(Query::Change {
            plan: Plan {
                wanted: w,
                mode,
                files,
            },
            preview,
        })
    }

    async fn apply(&self, p: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
        let report = match ctx.session.net(net_request(&p.wanted, false)).await {
            Ok(r) => r,
            Err(TransportError::Remote { msg, .. }) => {
                // nothing was persisted either: the files come after the live change
                return Ok(Outcome::failed(msg).with("persisted", Value::List(vec![])));
            }
            Err(e) => return Err(e.into()),
        };
        let mut dirs: Vec<&str> = vec![];
        for f in p.files.iter().filter(|f| f.changed) {
            let dir = super::support::sysutil::dirname(&f.file.path);
            if !dirs.contains(&dir) {
                ctx.session.mkdir(dir, Some(0o755)).await?;
                dirs.push(dir);
            }
            ctx.session.write_file(write_req(&f.file, false)).await?;
        }
        let mut o = report_data(Outcome::changed(), &report, &p.files);
        if p.files.iter().any(|f| f.changed) {
            o = reload(ctx, p.mode, o).await?;
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(y: &str) -> Args {
        let v: serde_json::Value = serde_yaml_like(y);
        serde_json::from_value(v).expect("args decode")
    }

    /// Test input as JSON (the engine hands modules JSON-model values).
    fn serde_yaml_like(j: &str) -> serde_json::Value {
        serde_json::from_str(j).expect("json")
    }

    #[test]
    fn netmasks_and_addresses() {
        let v4: IpAddr = "192.168.1.1".parse().unwrap();
        let v6: IpAddr = "fd00::1".parse().unwrap();
        assert_eq!(prefix_len("255.255.255.0", &v4), Some(24));
        assert_eq!(prefix_len("24", &v4), Some(24));
        assert_eq!(prefix_len("255.0.255.0", &v4), None);
        assert_eq!(prefix_len("ffff:ffff:ffff:ffff::", &v6), Some(64));
        assert_eq!(prefix_len("33", &v4), None);
        assert_eq!(
            address("br0", "192.168.33.3", Some("255.255.255.0"))
                .unwrap()
                .to_string(),
            "192.168.33.3/24"
        );
        assert_eq!(
            address("br0", "fd00::3/64", None).unwrap().to_string(),
            "fd00::3/64"
        );
        assert!(address("br0", "192.168.33.3", None)
            .unwrap_err()
            .to_string()
            .contains("no netmask"));
    }

    #[test]
    fn kayobe_dicts_become_links() {
        let a = args(
            r#"{"bridge_interfaces": [{"device": "breth1", "address": "192.168.33.3",
                "netmask": "255.255.255.0", "gateway": "192.168.33.1", "mtu": 1400,
                "ports": ["dummy1", "p-br"], "route": [{"network": "10.0.0.0", "netmask": "255.0.0.0",
                "gateway": "192.168.33.254"}], "stp": "false", "bootproto": "static", "onboot": "yes",
                "vlan": null, "rules": null, "defroute": null, "ethtool_opts": null, "zone": null,
                "allowed_addresses": null}],
               "veth_interfaces": [{"device": "p-br", "peer_device": "p-br-peer"}]}"#,
        );
        let w = wanted(&a).unwrap();
        assert_eq!(w.maybe_dummy, ["dummy1"]);
        let req = net_request(&w, true);
        let names: Vec<&str> = req.links.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["breth1", "p-br", "dummy1"]);
        let br = &req.links[0];
        assert_eq!(br.kind, NetKind::Bridge);
        assert!(!br.stp);
        assert_eq!(br.addresses, ["192.168.33.3/24"]);
        assert_eq!(br.routes.len(), 2);
        assert_eq!(br.routes[1].destination, "0.0.0.0/0");
        let veth = &req.links[1];
        assert_eq!(veth.kind, NetKind::Veth);
        assert_eq!(veth.master.as_deref(), Some("breth1"));
        assert_eq!(veth.mtu, Some(1400), "a port takes its bridge's MTU");
        assert_eq!(req.links[2].kind, NetKind::PortOrDummy);
    }

    #[test]
    fn unsupported_keys_are_errors_unless_empty() {
        let a = args(r#"{"ether_interfaces": [{"device": "eth1.10", "vlan": 10}]}"#);
        let e = wanted(&a).err().expect("vlan").to_string();
        assert!(e.contains("`vlan`") && e.contains("not supported"), "{e}");
        let a = args(r#"{"ether_interfaces": [{"device": "eth1", "rules": [], "zone": ""}]}"#);
        assert!(wanted(&a).is_ok());
        let a = args(r#"{"bond_interfaces": [{"device": "bond0"}]}"#);
        assert!(wanted(&a).is_err());
        let a =
            args(r#"{"veth_interfaces": [{"device": "v", "peer_device": "w", "bridge": "nope"}]}"#);
        let e = wanted(&a).err().expect("bridge").to_string();
        assert!(e.contains("not in bridge_interfaces"), "{e}");
        assert!(serde_json::from_value::<Args>(serde_json::json!({"bridges": []})).is_err());
    }

    #[test]
    fn os_release_families() {
        assert_eq!(
            persist_from_os_release("ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n"),
            Some(Persist::NetworkManager)
        );
        assert_eq!(
            persist_from_os_release("ID=ubuntu\nID_LIKE=debian\n"),
            Some(Persist::Networkd)
        );
        assert_eq!(persist_from_os_release("ID=alpine\n"), None);
    }
}
