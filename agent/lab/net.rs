//! The lab's network, made with `ip`: one bridge per lab network in the root namespace, one
//! network namespace per host, one veth pair per (host, network) with the host side named
//! `eth0`/`eth1`. Bridges carry an alias naming their lab, which is how collisions are found.

use super::cmd::{ip_json, run};
use super::LabError;
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;
use std::path::Path;

pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

pub fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

fn link_alias(name: &str) -> Option<String> {
    std::fs::read_to_string(Path::new("/sys/class/net").join(name).join("ifalias"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Creates the bridge (with `addr` on it, if given) or checks that the existing one is ours.
pub fn ensure_bridge(
    name: &str,
    alias: &str,
    addr: Option<(Ipv4Addr, u8)>,
) -> Result<(), LabError> {
    if !link_exists(name) {
        if let Err(e) = run(&["ip", "link", "add", name, "type", "bridge"]) {
            if !link_exists(name) {
                return Err(e);
            }
        } else {
            run(&["ip", "link", "set", "dev", name, "alias", alias])?;
        }
    }
    let found = link_alias(name).unwrap_or_default();
    if found != alias {
        return Err(LabError::Collision(format!(
            "bridge {name} already exists and belongs to `{found}`, not to this lab (`{alias}`); \
             choose another lab name, or bring that lab down first"
        )));
    }
    if let Some((ip, prefix)) = addr {
        let cidr = format!("{ip}/{prefix}");
        let have = ip_json(&["-4", "addr", "show", "dev", name])?;
        let present = addrs_of(&have)
            .iter()
            .any(|(a, p)| *a == ip && *p == prefix);
        if !present {
            run(&["ip", "addr", "add", &cidr, "dev", name])?;
        }
    }
    run(&["ip", "link", "set", "dev", name, "up"])?;
    Ok(())
}

fn addrs_of(json: &serde_json::Value) -> Vec<(Ipv4Addr, u8)> {
    let mut out = Vec::new();
    for link in json.as_array().into_iter().flatten() {
        for ai in link["addr_info"].as_array().into_iter().flatten() {
            let local = ai["local"]
                .as_str()
                .and_then(|s| s.parse::<Ipv4Addr>().ok());
            let prefix = ai["prefixlen"].as_u64().and_then(|p| u8::try_from(p).ok());
            if let (Some(a), Some(p)) = (local, prefix) {
                out.push((a, p));
            }
        }
    }
    out
}

/// IPv4 networks in use in the root namespace (addresses and routes), except on `ignore`.
pub fn used_networks(ignore: &[&str]) -> Result<Vec<Ipv4Net>, LabError> {
    let mut out = Vec::new();
    let addrs = ip_json(&["-4", "addr"])?;
    for link in addrs.as_array().into_iter().flatten() {
        if link["ifname"].as_str().is_some_and(|n| ignore.contains(&n)) {
            continue;
        }
        for (a, p) in addrs_of(&serde_json::Value::Array(vec![link.clone()])) {
            if let Ok(n) = Ipv4Net::new(a, p) {
                out.push(n.trunc());
            }
        }
    }
    let routes = ip_json(&["-4", "route", "show", "table", "all"])?;
    for r in routes.as_array().into_iter().flatten() {
        if r["dev"].as_str().is_some_and(|n| ignore.contains(&n)) {
            continue;
        }
        let Some(dst) = r["dst"].as_str() else {
            continue;
        };
        let net = if dst.contains('/') {
            dst.parse::<Ipv4Net>().ok()
        } else {
            dst.parse::<Ipv4Addr>()
                .ok()
                .and_then(|a| Ipv4Net::new(a, 32).ok())
        };
        // "default" and 0.0.0.0/0 overlap everything; they are not a reason to skip a subnet.
        if let Some(n) = net.filter(|n| n.prefix_len() > 0) {
            out.push(n);
        }
    }
    Ok(out)
}

pub fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

pub fn add_netns(name: &str) -> Result<(), LabError> {
    if !netns_exists(name) {
        run(&["ip", "netns", "add", name])?;
    }
    run(&["ip", "-n", name, "link", "set", "lo", "up"])?;
    Ok(())
}

/// A veth pair: `veth` on `bridge` in the root namespace, `ifname` with `addr/24` in `netns`.
/// The host side gets the fixed `mac`, so a re-made host answers ARP with the MAC this machine
/// already has cached for its address.
pub fn add_host_link(
    netns: &str,
    veth: &str,
    bridge: &str,
    ifname: &str,
    mac: &str,
    addr: Ipv4Addr,
) -> Result<(), LabError> {
    if link_exists(veth) {
        run(&["ip", "link", "del", veth])?;
    }
    run(&[
        "ip", "link", "add", veth, "type", "veth", "peer", "name", ifname, "address", mac, "netns",
        netns,
    ])?;
    run(&["ip", "link", "set", "dev", veth, "master", bridge, "up"])?;
    run(&[
        "ip",
        "-n",
        netns,
        "addr",
        "add",
        &format!("{addr}/24"),
        "dev",
        ifname,
    ])?;
    run(&["ip", "-n", netns, "link", "set", "dev", ifname, "up"])?;
    Ok(())
}

/// Removes a link if present (ignores "does not exist" races).
pub fn del_link(name: &str) -> Result<(), LabError> {
    if link_exists(name) {
        if let Err(e) = run(&["ip", "link", "del", name]) {
            if link_exists(name) {
                return Err(e);
            }
        }
    }
    Ok(())
}

pub fn del_netns(name: &str) -> Result<(), LabError> {
    if netns_exists(name) {
        if let Err(e) = run(&["ip", "netns", "del", name]) {
            if netns_exists(name) {
                return Err(e);
            }
        }
    }
    Ok(())
}
