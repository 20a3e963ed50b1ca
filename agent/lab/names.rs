//! Names and subnets derived from the lab name, so that labs with different names never share a
//! bridge, a namespace, a veth or a subnet. Interface names are limited to 15 bytes by the kernel,
//! so they carry a 6-hex-digit digest of the lab name instead of the name itself; the bridge's
//! alias (`kiln-lab <name> <dir>`) records which lab owns it, so a digest collision, or the same
//! lab name used from two folders, is detected instead of silently sharing the bridge.

use ipnet::Ipv4Net;
use sha2::{Digest, Sha256};
use std::net::Ipv4Addr;

/// What tells labs apart: the name and the folder, so the same name used from two folders (the
/// user's `kiln lab demo` and a test's, say) gets its own bridge, subnet and namespaces.
pub fn lab_key(lab: &str, dir: &std::path::Path) -> String {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    format!("{lab}@{}", dir.display())
}

/// First 6 hex digits of sha256(lab key).
pub fn short_id(lab: &str) -> String {
    hex::encode(&Sha256::digest(lab.as_bytes())[..3])
}

pub fn bridge(short: &str) -> String {
    format!("kl-{short}")
}

pub fn internal_bridge(short: &str) -> String {
    format!("ki-{short}")
}

/// A host's network namespace: the lab's name for people, its short id for uniqueness.
pub fn netns(lab: &str, short: &str, host: &str) -> String {
    format!("kiln-{lab}-{short}-{host}")
}

/// Root-side veth of host number `idx` (0-based) on the lab (`m`) or internal (`i`) network.
pub fn veth(short: &str, net: char, idx: usize) -> String {
    format!("k{short}{net}{idx}")
}

/// Fixed, locally administered MAC of a host's interface: 02:<short id>:<net>:<idx>.
pub fn mac(short: &str, net: char, idx: usize) -> String {
    let s = short.as_bytes();
    let pair = |i: usize| std::str::from_utf8(&s[i..i + 2]).unwrap_or("00");
    let net_byte = if net == 'm' { 0x6d } else { 0x69 };
    format!(
        "02:{}:{}:{}:{net_byte:02x}:{:02x}",
        pair(0),
        pair(2),
        pair(4),
        idx % 256
    )
}

pub fn bridge_alias(lab: &str, dir: &std::path::Path) -> String {
    let full = format!("kiln-lab {lab} {}", dir.display());
    if full.len() <= 200 {
        full
    } else {
        format!(
            "kiln-lab {lab} sha256:{}",
            hex::encode(&Sha256::digest(dir.display().to_string().as_bytes())[..16])
        )
    }
}

/// Candidate /24 subnets for a lab network, in order of preference: 10.<128..255>.<0..255>.0/24
/// taken from successive bytes of sha256("<lab>/<which>").
pub fn subnet_candidates(lab: &str, which: &str) -> Vec<Ipv4Net> {
    let mut out = Vec::new();
    let mut seed = Sha256::digest(format!("{lab}/{which}").as_bytes()).to_vec();
    for round in 0..4u8 {
        for pair in seed.chunks(2) {
            if let [a, b] = pair {
                let net = Ipv4Net::new(Ipv4Addr::new(10, 128 | a, *b, 0), 24);
                if let Ok(net) = net {
                    if !out.contains(&net) {
                        out.push(net);
                    }
                }
            }
        }
        let mut h = Sha256::new();
        h.update(&seed);
        h.update([round]);
        seed = h.finalize().to_vec();
    }
    out
}

/// Address of the bridge side (.1) of a lab subnet.
pub fn gateway(net: Ipv4Net) -> Ipv4Addr {
    nth(net, 1)
}

/// Address of host number `idx` (0-based): .10, .11, ...
pub fn host_addr(net: Ipv4Net, idx: usize) -> Ipv4Addr {
    nth(net, 10 + idx as u32)
}

fn nth(net: Ipv4Net, n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) + n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_the_kernel_limit_and_differ_per_lab() {
        let a = short_id("alpha");
        let b = short_id("beta");
        assert_ne!(a, b);
        assert_eq!(a.len(), 6);
        assert!(veth(&a, 'm', 199).len() <= 15);
        assert!(bridge(&a).len() <= 15);
        assert_eq!(mac("0a1b2c", 'i', 3), "02:0a:1b:2c:69:03");
        assert_ne!(
            subnet_candidates("alpha", "lab")[0],
            subnet_candidates("beta", "lab")[0]
        );
        assert_ne!(
            subnet_candidates("alpha", "lab")[0],
            subnet_candidates("alpha", "internal")[0]
        );
    }

    #[test]
    fn addresses() {
        let net: Ipv4Net = "10.200.3.0/24"
            .parse()
            .unwrap_or_else(|_| Ipv4Net::default());
        assert_eq!(gateway(net), Ipv4Addr::new(10, 200, 3, 1));
        assert_eq!(host_addr(net, 2), Ipv4Addr::new(10, 200, 3, 12));
        assert!(subnet_candidates("x", "lab").len() >= 16);
    }
}
