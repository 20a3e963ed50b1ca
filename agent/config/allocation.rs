//! Kayobe's IP address allocation: a host without an address on a network gets the first free
//! address of the network's allocation pool (or of the whole CIDR, less its network and broadcast
//! addresses), recorded in the environment's `network-allocation.yml` as `<net>_ips: {host: ip}`.
//!
//! Shaped after Kayobe's `ip_allocation` module so its playbook (`ip-allocation.yml`) and its
//! files carry over unchanged: existing allocations are kept, an existing allocation outside the
//! CIDR is an error naming it, and the file is only written when something was allocated. Unlike
//! Kayobe's module the write is atomic (temporary file + rename in the same directory), so an
//! interrupted run never leaves a half-written allocation file, and allocations are serialised
//! inside one kiln process so parallel hosts never pick the same address.

use crate::value::{Map, Value};
use ipnet::IpNet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One allocation request, with Kayobe's argument names.
#[derive(Debug, Clone)]
pub struct Request {
    pub net_name: String,
    pub hostname: String,
    pub cidr: String,
    pub allocation_pool_start: Option<String>,
    pub allocation_pool_end: Option<String>,
    pub allocation_file: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Allocation {
    pub ip: IpAddr,
    /// Whether the address is new (and, outside check mode, was written to the file).
    pub changed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AllocationError {
    #[error("{file}: {msg}")]
    File { file: String, msg: String },
    #[error("invalid {what} {value:?} for network {net}: {msg}")]
    Arg {
        what: &'static str,
        value: String,
        net: String,
        msg: String,
    },
    #[error(
        "{file}: found invalid existing allocations in network {net}: {list} (fix or remove them in that file)"
    )]
    OutsideCidr {
        file: String,
        net: String,
        list: String,
    },
    #[error(
        "no unallocated IP addresses for {host} in {net} ({range}); widen the allocation pool or free an address in {file}"
    )]
    Exhausted {
        host: String,
        net: String,
        range: String,
        file: String,
    },
}

static LOCK: Mutex<()> = Mutex::new(());

/// Allocate (or look up) the host's address; in `check` mode nothing is written.
pub fn allocate(req: &Request, check: bool) -> Result<Allocation, AllocationError> {
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let file = req.allocation_file.display().to_string();
    let mut doc = read(&req.allocation_file)?;
    let net: IpNet = req.cidr.trim().parse().map_err(|e| AllocationError::Arg {
        what: "cidr",
        value: req.cidr.clone(),
        net: req.net_name.clone(),
        msg: format!("{e}"),
    })?;
    let key = format!("{}_ips", req.net_name);
    let entries = match doc.get(&key) {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Map(m)) => m.clone(),
        Some(_) => {
            return Err(AllocationError::File {
                file,
                msg: format!("`{key}` must be a mapping of host name to IP address"),
            })
        }
    };
    let mut used = Vec::new();
    let mut invalid = Vec::new();
    for (host, ip) in &entries {
        let text = crate::template::py_str_value(ip);
        match text.trim().parse::<IpAddr>() {
            Ok(a) if net.contains(&a) => used.push(a),
            _ => invalid.push(format!("{host}: {text}")),
        }
    }
    if !invalid.is_empty() {
        return Err(AllocationError::OutsideCidr {
            file,
            net: net.to_string(),
            list: invalid.join(", "),
        });
    }
    if let Some(existing) = entries.get(&req.hostname) {
        let ip = crate::template::py_str_value(existing)
            .trim()
            .parse()
            .map_err(|_| AllocationError::File {
                file: file.clone(),
                msg: format!("{key}.{}: not an IP address", req.hostname),
            })?;
        return Ok(Allocation { ip, changed: false });
    }
    let (first, last) = pool(req, &net)?;
    let ip = first_free(first, last, &used).ok_or_else(|| AllocationError::Exhausted {
        host: req.hostname.clone(),
        net: req.net_name.clone(),
        range: format!("{first}-{last}"),
        file: file.clone(),
    })?;
    if !check {
        let mut entries = entries;
        entries.insert(req.hostname.clone(), Value::str(ip.to_string()));
        doc.insert(key, Value::Map(entries));
        write(&req.allocation_file, &doc)?;
    }
    Ok(Allocation { ip, changed: true })
}

/// The first and last address that may be handed out.
fn pool(req: &Request, net: &IpNet) -> Result<(IpAddr, IpAddr), AllocationError> {
    let parse = |what: &'static str, v: &str| -> Result<IpAddr, AllocationError> {
        v.trim().parse().map_err(|e| AllocationError::Arg {
            what,
            value: v.to_string(),
            net: req.net_name.clone(),
            msg: format!("{e}"),
        })
    };
    match (
        req.allocation_pool_start
            .as_deref()
            .filter(|s| !s.is_empty()),
        req.allocation_pool_end.as_deref().filter(|s| !s.is_empty()),
    ) {
        (Some(s), Some(e)) => Ok((
            parse("allocation_pool_start", s)?,
            parse("allocation_pool_end", e)?,
        )),
        _ => {
            let (lo, hi) = (net.network(), net.broadcast());
            // Kayobe keeps the network and broadcast addresses out, except in a /32 (or /128).
            if net.prefix_len() == net.max_prefix_len() {
                Ok((lo, hi))
            } else {
                Ok((step(lo, 1), step(hi, -1)))
            }
        }
    }
}

fn step(ip: IpAddr, by: i128) -> IpAddr {
    match ip {
        IpAddr::V4(a) => u32::try_from(u32::from(a) as i128 + by)
            .map(|n| IpAddr::V4(n.into()))
            .unwrap_or(ip),
        IpAddr::V6(a) => {
            let n = u128::from(a);
            let next = if by >= 0 {
                n.checked_add(by as u128)
            } else {
                n.checked_sub(by.unsigned_abs())
            };
            next.map(|n| IpAddr::V6(n.into())).unwrap_or(ip)
        }
    }
}

fn first_free(first: IpAddr, last: IpAddr, used: &[IpAddr]) -> Option<IpAddr> {
    let mut ip = first;
    loop {
        if ip > last {
            return None;
        }
        if !used.contains(&ip) {
            return Some(ip);
        }
        let next = step(ip, 1);
        if next == ip {
            return None;
        }
        ip = next;
    }
}

fn read(path: &Path) -> Result<Map, AllocationError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
        Err(e) => {
            return Err(AllocationError::File {
                file: path.display().to_string(),
                msg: format!("cannot read: {e}"),
            })
        }
    };
    match crate::yaml::load(&text, &path.display().to_string()) {
        Ok(Value::Map(m)) => Ok(m),
        Ok(Value::Null) => Ok(Map::new()),
        Ok(_) => Err(AllocationError::File {
            file: path.display().to_string(),
            msg: "must be a YAML mapping of `<net>_ips` entries".into(),
        }),
        Err(e) => Err(AllocationError::File {
            file: path.display().to_string(),
            msg: e.to_string(),
        }),
    }
}

/// Write the allocations atomically, keeping the file's leading comment block.
fn write(path: &Path, doc: &Map) -> Result<(), AllocationError> {
    let fail = |msg: String| AllocationError::File {
        file: path.display().to_string(),
        msg,
    };
    let header: String = std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .take_while(|l| l.starts_with('#') || l.trim() == "---")
        .map(|l| format!("{l}\n"))
        .collect();
    let body = crate::yaml::dump(doc).map_err(fail)?;
    let header = if header.is_empty() {
        "---\n".to_string()
    } else {
        header
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create its directory: {e}")))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| fail(format!("cannot write next to it: {e}")))?;
    use std::io::Write;
    tmp.write_all(header.as_bytes())
        .and_then(|_| tmp.write_all(body.as_bytes()))
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| fail(format!("cannot write: {e}")))?;
    tmp.persist(path)
        .map_err(|e| fail(format!("cannot replace: {}", e.error)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(dir: &Path, host: &str, cidr: &str, pool: Option<(&str, &str)>) -> Request {
        Request {
            net_name: "aio".into(),
            hostname: host.into(),
            cidr: cidr.into(),
            allocation_pool_start: pool.map(|p| p.0.into()),
            allocation_pool_end: pool.map(|p| p.1.into()),
            allocation_file: dir.join("network-allocation.yml"),
        }
    }

    #[test]
    fn first_free_of_the_pool_then_kept() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("network-allocation.yml");
        std::fs::write(
            &f,
            "---\n# allocations\naio_ips:\n  builder: 192.168.33.3\n",
        )
        .unwrap();
        let pool = Some(("192.168.33.3", "192.168.33.30"));
        let a = allocate(&req(d.path(), "lab1", "192.168.33.0/24", pool), false).unwrap();
        assert_eq!(
            a,
            Allocation {
                ip: "192.168.33.4".parse().unwrap(),
                changed: true
            }
        );
        let again = allocate(&req(d.path(), "lab1", "192.168.33.0/24", pool), false).unwrap();
        assert_eq!(
            again,
            Allocation {
                ip: "192.168.33.4".parse().unwrap(),
                changed: false
            }
        );
        let b = allocate(&req(d.path(), "builder", "192.168.33.0/24", pool), false).unwrap();
        assert!(!b.changed);
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(text.starts_with("---\n# allocations\n"), "{text}");
        assert!(text.contains("lab1: 192.168.33.4"), "{text}");
        assert!(text.contains("builder: 192.168.33.3"), "{text}");
    }

    #[test]
    fn whole_cidr_skips_network_address_and_check_mode_writes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let a = allocate(&req(d.path(), "h", "10.0.0.0/30", None), true).unwrap();
        assert_eq!(a.ip, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert!(!d.path().join("network-allocation.yml").exists());
        allocate(&req(d.path(), "h", "10.0.0.0/30", None), false).unwrap();
        let b = allocate(&req(d.path(), "h2", "10.0.0.0/30", None), false).unwrap();
        assert_eq!(b.ip, "10.0.0.2".parse::<IpAddr>().unwrap());
        let e = allocate(&req(d.path(), "h3", "10.0.0.0/30", None), false).unwrap_err();
        assert!(
            e.to_string().contains("no unallocated IP addresses for h3"),
            "{e}"
        );
    }

    #[test]
    fn existing_allocation_outside_the_cidr_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("network-allocation.yml");
        std::fs::write(&f, "aio_ips:\n  old: 10.9.9.9\n").unwrap();
        let e = allocate(&req(d.path(), "h", "192.168.33.0/24", None), false).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("old: 10.9.9.9") && msg.contains("network-allocation.yml"),
            "{msg}"
        );
        assert_eq!(
            std::fs::read_to_string(&f).unwrap(),
            "aio_ips:\n  old: 10.9.9.9\n"
        );
    }
}
