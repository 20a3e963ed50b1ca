//! The files that make the `network` module's links survive a reboot: NetworkManager keyfiles
//! (Rocky 9 and the RedHat family) or systemd-networkd units (Ubuntu 22.04 and the Debian family).
//!
//! Pure functions from the configured links ([`Iface`]) to whole files ([`File`]), so they are
//! unit-tested here and the module only writes them (atomically, with `write_file`, which makes
//! a second run `changed: false`). Choices, and why:
//!
//! * **NetworkManager**: one `/etc/NetworkManager/system-connections/<name>.nmconnection` per
//!   link, mode 0600 owner root (NetworkManager ignores keyfiles anyone else can read). `id` and
//!   `interface-name` are the link name; the `uuid` is derived from the name (stable across runs,
//!   so rewriting a file is not a new profile). Bridges have `[bridge] stp=`; ports have
//!   `master=<bridge>` and `slave-type=bridge` (the spelling every NetworkManager 1.x reads) and no
//!   IP settings; a bridge's MTU is `[ethernet] mtu=` (bridge profiles carry the ethernet setting).
//! * **systemd-networkd**: `/etc/systemd/network/10-kiln-<name>.netdev` for links networkd must
//!   create (bridge, dummy, veth) and `10-kiln-<name>.network` for every link, mode 0644. The `10-`
//!   prefix sorts before netplan's `10-netplan-*` (networkd uses the first `.network` file that
//!   matches a link, in lexical order across `/etc`, `/run` and `/lib`), so kiln's settings win
//!   for the links kiln manages and nothing else is matched. Bridges get
//!   `ConfigureWithoutCarrier=yes` so their address comes up before a port has a carrier.

use ipnet::IpNet;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::net::IpAddr;

pub const NM_DIR: &str = "/etc/NetworkManager/system-connections";
pub const NETWORKD_DIR: &str = "/etc/systemd/network";
/// File-name prefix of kiln's networkd units (see the module docs for why `10-`).
pub const NETWORKD_PREFIX: &str = "10-kiln-";

/// What kind of link an [`Iface`] is, as the persisted configuration must describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfKind {
    Bridge {
        stp: bool,
    },
    Dummy,
    /// The first end of a veth pair (the one that creates it).
    Veth {
        peer: String,
    },
    /// The other end of a veth pair.
    VethPeer {
        peer: String,
    },
    /// A device that exists by itself (a NIC).
    Ethernet,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: IpNet,
    pub gw: Option<IpAddr>,
    pub table: Option<u32>,
    pub metric: Option<u32>,
}

/// One link's persistent configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    pub name: String,
    pub kind: IfKind,
    /// The bridge this link is a port of (ports have no IP settings of their own).
    pub master: Option<String>,
    pub mtu: Option<u32>,
    pub dhcp: bool,
    pub addresses: Vec<IpNet>,
    /// The default gateway (per address family).
    pub gateways: Vec<IpAddr>,
    /// `defroute: false`: never a default route through this link.
    pub never_default: bool,
    pub routes: Vec<Route>,
    /// Bring the link up at boot.
    pub onboot: bool,
    pub mac: Option<String>,
}

impl Iface {
    pub fn new(name: &str, kind: IfKind) -> Iface {
        Iface {
            name: name.to_string(),
            kind,
            master: None,
            mtu: None,
            dhcp: false,
            addresses: vec![],
            gateways: vec![],
            never_default: false,
            routes: vec![],
            onboot: true,
            mac: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub path: String,
    pub content: String,
    pub mode: u32,
}

/// A stable UUID for a profile name: sha256 of it, shaped as an RFC 4122 name-based UUID.
pub fn profile_uuid(name: &str) -> String {
    let h = Sha256::digest(format!("kiln network profile {name}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &x[0..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

fn is_v4(ip: &IpAddr) -> bool {
    ip.is_ipv4()
}

/// NetworkManager keyfiles, one per link.
pub fn networkmanager(ifaces: &[Iface]) -> Vec<File> {
    ifaces
        .iter()
        .map(|i| File {
            path: format!("{NM_DIR}/{}.nmconnection", i.name),
            content: nm_keyfile(i),
            mode: 0o600,
        })
        .collect()
}

fn nm_ip_section(out: &mut String, i: &Iface, v4: bool) {
    let fam = if v4 { "ipv4" } else { "ipv6" };
    let addrs: Vec<&IpNet> = i
        .addresses
        .iter()
        .filter(|a| a.addr().is_ipv4() == v4)
        .collect();
    let routes: Vec<&Route> = i
        .routes
        .iter()
        .filter(|r| r.dst.addr().is_ipv4() == v4)
        .collect();
    let gw = i.gateways.iter().find(|g| is_v4(g) == v4);
    let _ = writeln!(out, "\n[{fam}]");
    let method = if i.dhcp {
        "auto"
    } else if !addrs.is_empty() {
        "manual"
    } else if v4 {
        "disabled"
    } else {
        "ignore"
    };
    let _ = writeln!(out, "method={method}");
    if method == "manual" || method == "auto" {
        for (n, a) in addrs.iter().enumerate() {
            match (n, gw) {
                (0, Some(g)) if !i.never_default => {
                    let _ = writeln!(out, "address{}={a},{g}", n + 1);
                }
                _ => {
                    let _ = writeln!(out, "address{}={a}", n + 1);
                }
            }
        }
        for (n, r) in routes.iter().enumerate() {
            let mut line = format!("route{}={}", n + 1, r.dst);
            match (r.gw, r.metric) {
                (Some(g), Some(m)) => line.push_str(&format!(",{g},{m}")),
                (Some(g), None) => line.push_str(&format!(",{g}")),
                (None, Some(m)) => line.push_str(&format!(",,{m}")),
                (None, None) => {}
            }
            let _ = writeln!(out, "{line}");
            if let Some(t) = r.table {
                let _ = writeln!(out, "route{}_options=table={t}", n + 1);
            }
        }
        if i.never_default {
            let _ = writeln!(out, "never-default=true");
        }
    }
}

/// One NetworkManager keyfile.
pub fn nm_keyfile(i: &Iface) -> String {
    let mut out =
        String::from("# Written by kiln (kiln.builtin.network); changes here are overwritten.\n");
    let ty = match &i.kind {
        IfKind::Bridge { .. } => "bridge",
        IfKind::Dummy => "dummy",
        IfKind::Veth { .. } | IfKind::VethPeer { .. } => "veth",
        IfKind::Ethernet => "ethernet",
    };
    let _ = writeln!(out, "[connection]");
    let _ = writeln!(out, "id={}", i.name);
    let _ = writeln!(out, "uuid={}", profile_uuid(&i.name));
    let _ = writeln!(out, "type={ty}");
    let _ = writeln!(out, "interface-name={}", i.name);
    let _ = writeln!(out, "autoconnect={}", i.onboot);
    if let Some(m) = &i.master {
        let _ = writeln!(out, "master={m}");
        let _ = writeln!(out, "slave-type=bridge");
    }
    if i.mtu.is_some() || i.mac.is_some() {
        let _ = writeln!(out, "\n[ethernet]");
        if let Some(mac) = &i.mac {
            let _ = writeln!(out, "mac-address={mac}");
        }
        if let Some(m) = i.mtu {
            let _ = writeln!(out, "mtu={m}");
        }
    }
    match &i.kind {
        IfKind::Bridge { stp } => {
            let _ = writeln!(out, "\n[bridge]\nstp={stp}");
        }
        IfKind::Veth { peer } | IfKind::VethPeer { peer } => {
            let _ = writeln!(out, "\n[veth]\npeer={peer}");
        }
        _ => {}
    }
    if i.master.is_none() {
        nm_ip_section(&mut out, i, true);
        nm_ip_section(&mut out, i, false);
    }
    out
}

/// systemd-networkd units: a `.netdev` for links networkd creates, a `.network` for every link.
pub fn networkd(ifaces: &[Iface]) -> Vec<File> {
    let mut files = vec![];
    for i in ifaces {
        let base = format!("{NETWORKD_DIR}/{NETWORKD_PREFIX}{}", i.name);
        if let Some(netdev) = networkd_netdev(i) {
            files.push(File {
                path: format!("{base}.netdev"),
                content: netdev,
                mode: 0o644,
            });
        }
        files.push(File {
            path: format!("{base}.network"),
            content: networkd_network(i),
            mode: 0o644,
        });
    }
    files
}

const HEADER: &str = "# Written by kiln (kiln.builtin.network); changes here are overwritten.\n";

/// The `.netdev` of a link networkd must create; `None` for a veth's second end (its first end's
/// `.netdev` makes both) and for devices that exist by themselves.
pub fn networkd_netdev(i: &Iface) -> Option<String> {
    let kind = match &i.kind {
        IfKind::Bridge { .. } => "bridge",
        IfKind::Dummy => "dummy",
        IfKind::Veth { .. } => "veth",
        IfKind::VethPeer { .. } | IfKind::Ethernet => return None,
    };
    let mut out = String::from(HEADER);
    let _ = writeln!(out, "[NetDev]\nName={}\nKind={kind}", i.name);
    if let Some(m) = i.mtu {
        let _ = writeln!(out, "MTUBytes={m}");
    }
    match &i.kind {
        IfKind::Bridge { stp } => {
            let _ = writeln!(out, "\n[Bridge]\nSTP={stp}");
        }
        IfKind::Veth { peer } => {
            let _ = writeln!(out, "\n[Peer]\nName={peer}");
            if let Some(m) = i.mtu {
                let _ = writeln!(out, "MTUBytes={m}");
            }
        }
        _ => {}
    }
    Some(out)
}

/// The `.network` of a link: match by name, MTU, then either its bridge or its addressing.
pub fn networkd_network(i: &Iface) -> String {
    let mut out = String::from(HEADER);
    let _ = writeln!(out, "[Match]\nName={}", i.name);
    if let Some(mac) = &i.mac {
        let _ = writeln!(out, "MACAddress={mac}");
    }
    let mut link = vec![];
    if let Some(m) = i.mtu {
        link.push(format!("MTUBytes={m}"));
    }
    if !i.onboot {
        link.push("ActivationPolicy=manual".to_string());
    }
    if !link.is_empty() {
        let _ = writeln!(out, "\n[Link]\n{}", link.join("\n"));
    }
    let _ = writeln!(out, "\n[Network]");
    if let Some(m) = &i.master {
        let _ = writeln!(out, "Bridge={m}");
        return out;
    }
    if i.dhcp {
        let _ = writeln!(out, "DHCP=yes");
    }
    for a in &i.addresses {
        let _ = writeln!(out, "Address={a}");
    }
    if !i.never_default {
        for g in &i.gateways {
            let _ = writeln!(out, "Gateway={g}");
        }
    }
    if i.addresses.is_empty() && !i.dhcp {
        let _ = writeln!(out, "LinkLocalAddressing=no");
    }
    if matches!(i.kind, IfKind::Bridge { .. }) {
        let _ = writeln!(out, "ConfigureWithoutCarrier=yes");
    }
    for r in &i.routes {
        let _ = writeln!(out, "\n[Route]\nDestination={}", r.dst);
        if let Some(g) = r.gw {
            let _ = writeln!(out, "Gateway={g}");
        }
        if let Some(t) = r.table {
            let _ = writeln!(out, "Table={t}");
        }
        if let Some(m) = r.metric {
            let _ = writeln!(out, "Metric={m}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bridge() -> Iface {
        let mut b = Iface::new("breth1", IfKind::Bridge { stp: false });
        b.mtu = Some(1400);
        b.addresses = vec!["192.168.33.3/24".parse().unwrap()];
        b.gateways = vec!["192.168.33.1".parse().unwrap()];
        b.routes = vec![Route {
            dst: "10.0.0.0/8".parse().unwrap(),
            gw: Some("192.168.33.254".parse().unwrap()),
            table: None,
            metric: None,
        }];
        b
    }

    fn port() -> Iface {
        let mut d = Iface::new("dummy1", IfKind::Dummy);
        d.master = Some("breth1".into());
        d
    }

    #[test]
    fn networkmanager_keyfiles() {
        let files = networkmanager(&[bridge(), port()]);
        assert_eq!(
            files[0].path,
            "/etc/NetworkManager/system-connections/breth1.nmconnection"
        );
        assert_eq!(files[0].mode, 0o600);
        let want = format!(
            "# Written by kiln (kiln.builtin.network); changes here are overwritten.\n\
             [connection]\nid=breth1\nuuid={}\ntype=bridge\ninterface-name=breth1\nautoconnect=true\n\
             \n[ethernet]\nmtu=1400\n\
             \n[bridge]\nstp=false\n\
             \n[ipv4]\nmethod=manual\naddress1=192.168.33.3/24,192.168.33.1\nroute1=10.0.0.0/8,192.168.33.254\n\
             \n[ipv6]\nmethod=ignore\n",
            profile_uuid("breth1")
        );
        assert_eq!(files[0].content, want);
        let p = &files[1].content;
        assert!(p.contains("type=dummy\ninterface-name=dummy1\n"), "{p}");
        assert!(p.contains("master=breth1\nslave-type=bridge\n"), "{p}");
        assert!(!p.contains("[ipv4]"), "ports have no IP settings: {p}");
        // stable, well-formed UUIDs
        assert_eq!(profile_uuid("breth1"), profile_uuid("breth1"));
        assert_ne!(profile_uuid("breth1"), profile_uuid("dummy1"));
        let u = profile_uuid("breth1");
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "5");
    }

    #[test]
    fn networkmanager_v6_table_metric_and_never_default() {
        let mut b = bridge();
        b.addresses.push("fd00:33::3/64".parse().unwrap());
        b.never_default = true;
        b.routes.push(Route {
            dst: "fd00:99::/48".parse().unwrap(),
            gw: Some("fd00:33::fe".parse().unwrap()),
            table: Some(100),
            metric: Some(20),
        });
        let k = nm_keyfile(&b);
        assert!(
            k.contains("[ipv4]\nmethod=manual\naddress1=192.168.33.3/24\n"),
            "{k}"
        );
        assert!(k.contains("never-default=true"), "{k}");
        assert!(
            k.contains("[ipv6]\nmethod=manual\naddress1=fd00:33::3/64\nroute1=fd00:99::/48,fd00:33::fe,20\nroute1_options=table=100\n"),
            "{k}"
        );
        let mut v = Iface::new(
            "p-br0",
            IfKind::Veth {
                peer: "p-br0-peer".into(),
            },
        );
        v.master = Some("br0".into());
        let k = nm_keyfile(&v);
        assert!(
            k.contains("type=veth") && k.contains("[veth]\npeer=p-br0-peer\n"),
            "{k}"
        );
        let mut e = Iface::new("eth1", IfKind::Ethernet);
        e.dhcp = true;
        e.onboot = false;
        let k = nm_keyfile(&e);
        assert!(
            k.contains("type=ethernet") && k.contains("autoconnect=false"),
            "{k}"
        );
        assert!(k.contains("[ipv4]\nmethod=auto\n"), "{k}");
    }

    #[test]
    fn networkd_units() {
        let mut v = Iface::new(
            "p-br0",
            IfKind::Veth {
                peer: "p-br0-peer".into(),
            },
        );
        v.master = Some("breth1".into());
        v.mtu = Some(1400);
        let mut peer = Iface::new(
            "p-br0-peer",
            IfKind::VethPeer {
                peer: "p-br0".into(),
            },
        );
        peer.mtu = Some(1400);
        let files = networkd(&[bridge(), port(), v, peer]);
        let names: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            names,
            [
                "/etc/systemd/network/10-kiln-breth1.netdev",
                "/etc/systemd/network/10-kiln-breth1.network",
                "/etc/systemd/network/10-kiln-dummy1.netdev",
                "/etc/systemd/network/10-kiln-dummy1.network",
                "/etc/systemd/network/10-kiln-p-br0.netdev",
                "/etc/systemd/network/10-kiln-p-br0.network",
                "/etc/systemd/network/10-kiln-p-br0-peer.network",
            ]
        );
        assert!(files.iter().all(|f| f.mode == 0o644));
        assert_eq!(
            files[0].content,
            format!("{HEADER}[NetDev]\nName=breth1\nKind=bridge\nMTUBytes=1400\n\n[Bridge]\nSTP=false\n")
        );
        assert_eq!(
            files[1].content,
            format!(
                "{HEADER}[Match]\nName=breth1\n\n[Link]\nMTUBytes=1400\n\n[Network]\n\
                 Address=192.168.33.3/24\nGateway=192.168.33.1\nConfigureWithoutCarrier=yes\n\
                 \n[Route]\nDestination=10.0.0.0/8\nGateway=192.168.33.254\n"
            )
        );
        assert_eq!(
            files[2].content,
            format!("{HEADER}[NetDev]\nName=dummy1\nKind=dummy\n")
        );
        assert_eq!(
            files[3].content,
            format!("{HEADER}[Match]\nName=dummy1\n\n[Network]\nBridge=breth1\n")
        );
        assert!(files[4]
            .content
            .contains("Kind=veth\nMTUBytes=1400\n\n[Peer]\nName=p-br0-peer\nMTUBytes=1400\n"));
        assert!(files[6].content.contains("LinkLocalAddressing=no"));
    }
}
