//! Gather facts natively on the host, under Ansible's fact names (without the `ansible_` prefix,
//! as in `ansible_facts`): distribution (from os-release), architecture, hostname, interfaces and
//! addresses (netlink), memory, CPUs, mounts, date and time, environment, package and service
//! manager. Each part is best effort: a part that cannot be read is left out rather than failing
//! the whole gathering.

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

pub async fn gather() -> Value {
    let mut f = Map::new();
    let (base, py) = tokio::join!(tokio::task::spawn_blocking(gather_blocking), python());
    f.extend(base.unwrap_or_default());
    f.extend(py);
    match interfaces().await {
        Ok(net) => f.extend(net),
        Err(e) => {
            f.insert("network_error".into(), json!(e));
        }
    }
    Value::Object(f)
}

/// The interpreter Ansible would discover on the host (`/usr/bin/python3` on the distributions
/// Kayobe supports, RHEL 8's platform-python, else `python3` on PATH) and ansible's `python` and
/// `python_version` facts for it (what runs Ansible's modules there; kiln's do not need it, but
/// playbooks read it, e.g. Kayobe's kolla role: `python3.{{ ansible_facts.python.version.minor }}`).
/// Asked of the interpreter itself (~10 ms, beside the rest of the gathering); left out when
/// the host has none.
async fn python() -> Map<String, Value> {
    const SNIPPET: &str = "import sys, json\ntry:\n    from ssl import create_default_context, SSLContext\n    s = True\nexcept ImportError:\n    s = False\nprint(json.dumps([sys.executable, list(sys.version_info), sys.implementation.name, s]))";
    let exe = ["/usr/bin/python3", "/usr/libexec/platform-python"]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_file())
        .unwrap_or("python3");
    let run = tokio::process::Command::new(exe)
        .args(["-I", "-S", "-c", SNIPPET])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let Ok(Ok(out)) = tokio::time::timeout(std::time::Duration::from_secs(5), run).await else {
        return Map::new();
    };
    let Ok((exe, v, kind, ssl)) =
        serde_json::from_slice::<(String, Vec<Value>, String, bool)>(&out.stdout)
    else {
        return Map::new();
    };
    if v.len() != 5 {
        return Map::new();
    }
    let mut f = Map::new();
    f.insert(
        "python_version".into(),
        json!(format!("{}.{}.{}", v[0], v[1], v[2])),
    );
    f.insert(
        "python".into(),
        json!({
            "executable": exe,
            "has_sslcontext": ssl,
            "type": kind,
            "version": {
                "major": v[0], "minor": v[1], "micro": v[2], "releaselevel": v[3], "serial": v[4],
            },
            "version_info": v,
        }),
    );
    f
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

pub fn os_release(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let v = shell_words::split(v)
                .ok()
                .and_then(|w| w.into_iter().next())
                .unwrap_or_default();
            (k.trim().to_string(), v)
        })
        .collect()
}

fn os_family(id: &str, id_like: &str) -> &'static str {
    let all = format!("{id} {id_like}");
    if all
        .split_whitespace()
        .any(|w| matches!(w, "rhel" | "fedora" | "centos" | "rocky" | "almalinux"))
    {
        "RedHat"
    } else if all
        .split_whitespace()
        .any(|w| matches!(w, "debian" | "ubuntu"))
    {
        "Debian"
    } else if all.contains("suse") {
        "Suse"
    } else if id == "arch" {
        "Archlinux"
    } else {
        "Linux"
    }
}

fn distribution_name(id: &str) -> String {
    match id {
        "rocky" => "Rocky".into(),
        "centos" => "CentOS".into(),
        "rhel" => "RedHat".into(),
        "ubuntu" => "Ubuntu".into(),
        "debian" => "Debian".into(),
        "almalinux" => "AlmaLinux".into(),
        "fedora" => "Fedora".into(),
        other => {
            let mut c = other.chars();
            c.next()
                .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                .unwrap_or_default()
        }
    }
}

fn which(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
        .unwrap_or(false)
        || ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
            .iter()
            .any(|d| std::path::Path::new(d).join(cmd).is_file())
}

fn gather_blocking() -> Map<String, Value> {
    let mut f = Map::new();
    let osr = os_release(&read("/etc/os-release"));
    let id = osr.get("ID").cloned().unwrap_or_default();
    let id_like = osr.get("ID_LIKE").cloned().unwrap_or_default();
    let version = osr.get("VERSION_ID").cloned().unwrap_or_default();
    f.insert("distribution".into(), json!(distribution_name(&id)));
    f.insert("distribution_version".into(), json!(version));
    f.insert(
        "distribution_major_version".into(),
        json!(version.split('.').next().unwrap_or("")),
    );
    f.insert(
        "distribution_release".into(),
        json!(osr.get("VERSION_CODENAME").cloned().unwrap_or_default()),
    );
    f.insert("os_family".into(), json!(os_family(&id, &id_like)));
    if let Ok(u) = nix::sys::utsname::uname() {
        let machine = u.machine().to_string_lossy().into_owned();
        f.insert("architecture".into(), json!(machine));
        f.insert("machine".into(), json!(machine));
        f.insert("system".into(), json!(u.sysname().to_string_lossy()));
        f.insert("kernel".into(), json!(u.release().to_string_lossy()));
        f.insert(
            "kernel_version".into(),
            json!(u.version().to_string_lossy()),
        );
        let node = u.nodename().to_string_lossy().into_owned();
        f.insert("nodename".into(), json!(node));
        f.insert(
            "hostname".into(),
            json!(node.split('.').next().unwrap_or("")),
        );
        f.insert("fqdn".into(), json!(node));
        f.insert(
            "domain".into(),
            json!(node.split_once('.').map(|x| x.1).unwrap_or("")),
        );
    }
    // memory
    let mut mem = BTreeMap::new();
    for l in read("/proc/meminfo").lines() {
        if let Some((k, v)) = l.split_once(':') {
            let kb: u64 = v
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            mem.insert(k.to_string(), kb / 1024);
        }
    }
    let g = |k: &str| mem.get(k).copied().unwrap_or(0);
    f.insert("memtotal_mb".into(), json!(g("MemTotal")));
    f.insert("memfree_mb".into(), json!(g("MemFree")));
    f.insert("swaptotal_mb".into(), json!(g("SwapTotal")));
    f.insert("swapfree_mb".into(), json!(g("SwapFree")));
    // CPUs
    let cpuinfo = read("/proc/cpuinfo");
    let vcpus = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let sockets: std::collections::BTreeSet<&str> = cpuinfo
        .lines()
        .filter(|l| l.starts_with("physical id"))
        .collect();
    let models: Vec<&str> = cpuinfo
        .lines()
        .filter(|l| l.starts_with("model name"))
        .filter_map(|l| l.split_once(':').map(|x| x.1.trim()))
        .collect();
    f.insert("processor_vcpus".into(), json!(vcpus));
    f.insert("processor_count".into(), json!(sockets.len().max(1)));
    f.insert(
        "processor_nproc".into(),
        json!(std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(vcpus)),
    );
    f.insert("processor".into(), json!(models));
    // mounts
    let mut mounts = Vec::new();
    for l in read("/proc/self/mounts").lines() {
        let p: Vec<&str> = l.split_whitespace().collect();
        if p.len() < 4 {
            continue;
        }
        let mut m = json!({"device": p[0], "mount": p[1], "fstype": p[2], "options": p[3]});
        if let Ok(s) = nix::sys::statvfs::statvfs(p[1]) {
            let bs = s.fragment_size();
            m["size_total"] = json!(s.blocks() * bs);
            m["size_available"] = json!(s.blocks_available() * bs);
            m["block_size"] = json!(bs);
        }
        mounts.push(m);
    }
    f.insert("mounts".into(), json!(mounts));
    // date and time
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    f.insert("date_time".into(), json!({"epoch": now.as_secs().to_string(), "epoch_float": format!("{:.6}", now.as_secs_f64())}));
    // environment
    let env: Map<String, Value> = std::env::vars().map(|(k, v)| (k, json!(v))).collect();
    f.insert("env".into(), Value::Object(env));
    f.insert(
        "user_id".into(),
        json!(nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_default()),
    );
    f.insert("user_uid".into(), json!(nix::unistd::getuid().as_raw()));
    f.insert("user_gid".into(), json!(nix::unistd::getgid().as_raw()));
    // package and service manager
    let pkg = if which("dnf") {
        "dnf"
    } else if which("yum") {
        "yum"
    } else if which("apt-get") {
        "apt"
    } else {
        "unknown"
    };
    f.insert("pkg_mgr".into(), json!(pkg));
    let init = read("/proc/1/comm").trim().to_string();
    let svc = if std::path::Path::new("/run/systemd/system").is_dir() || init == "systemd" {
        "systemd".to_string()
    } else {
        init
    };
    f.insert("service_mgr".into(), json!(svc));
    f
}

/// Links and addresses via rtnetlink, shaped like Ansible's `interfaces`, `<ifname>`,
/// `all_ipv4_addresses`, `all_ipv6_addresses` and `default_ipv4` facts.
async fn interfaces() -> Result<Map<String, Value>, String> {
    use futures::TryStreamExt;
    use rtnetlink::packet_route::address::AddressAttribute;
    use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags};
    use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
    let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| format!("netlink: {e}"))?;
    let conn = tokio::spawn(conn);
    let mut names = BTreeMap::new();
    let mut out = Map::new();
    let mut links = handle.link().get().execute();
    while let Some(l) = links
        .try_next()
        .await
        .map_err(|e| format!("netlink links: {e}"))?
    {
        let mut name = String::new();
        let mut mtu = 0;
        let mut mac = String::new();
        for a in &l.attributes {
            match a {
                LinkAttribute::IfName(n) => name = n.clone(),
                LinkAttribute::Mtu(m) => mtu = *m,
                LinkAttribute::Address(b) => {
                    mac = b
                        .iter()
                        .map(|x| format!("{x:02x}"))
                        .collect::<Vec<_>>()
                        .join(":")
                }
                _ => {}
            }
        }
        let up = l.header.flags.contains(LinkFlags::Up);
        names.insert(l.header.index, name.clone());
        out.insert(
            name.replace('-', "_"),
            json!({"device": name, "mtu": mtu, "macaddress": mac, "active": up, "ipv4_secondaries": [], "ipv6": []}),
        );
    }
    let mut all4 = Vec::new();
    let mut all6 = Vec::new();
    let mut addrs = handle.address().get().execute();
    while let Some(a) = addrs
        .try_next()
        .await
        .map_err(|e| format!("netlink addresses: {e}"))?
    {
        let Some(ifname) = names.get(&a.header.index) else {
            continue;
        };
        let ip = a
            .attributes
            .iter()
            .find_map(|x| match x {
                AddressAttribute::Local(ip) => Some(*ip),
                _ => None,
            })
            .or_else(|| {
                a.attributes.iter().find_map(|x| match x {
                    AddressAttribute::Address(ip) => Some(*ip),
                    _ => None,
                })
            });
        let Some(ip) = ip else { continue };
        let key = ifname.replace('-', "_");
        let Some(entry) = out.get_mut(&key) else {
            continue;
        };
        let plen = a.header.prefix_len;
        match ip {
            std::net::IpAddr::V4(v4) => {
                let net = ipnet::Ipv4Net::new(v4, plen).ok();
                let rec = json!({
                    "address": v4.to_string(),
                    "prefix": plen.to_string(),
                    "netmask": net.map(|n| n.netmask().to_string()).unwrap_or_default(),
                    "network": net.map(|n| n.network().to_string()).unwrap_or_default(),
                    "broadcast": net.map(|n| n.broadcast().to_string()).unwrap_or_default(),
                });
                if entry.get("ipv4").is_none() {
                    entry["ipv4"] = rec;
                } else if let Some(list) = entry["ipv4_secondaries"].as_array_mut() {
                    list.push(rec);
                }
                if !v4.is_loopback() {
                    all4.push(v4.to_string());
                }
            }
            std::net::IpAddr::V6(v6) => {
                if let Some(list) = entry["ipv6"].as_array_mut() {
                    list.push(json!({"address": v6.to_string(), "prefix": plen.to_string()}));
                }
                if !v6.is_loopback() {
                    all6.push(v6.to_string());
                }
            }
        }
    }
    // default IPv4 route: its interface's first address is `default_ipv4`
    let mut default_ipv4 = json!({});
    let mut routes = handle
        .route()
        .get(rtnetlink::RouteMessageBuilder::<std::net::Ipv4Addr>::new().build())
        .execute();
    while let Some(r) = routes
        .try_next()
        .await
        .map_err(|e| format!("netlink routes: {e}"))?
    {
        if r.header.destination_prefix_length != 0 {
            continue;
        }
        let gw = r.attributes.iter().find_map(|a| match a {
            RouteAttribute::Gateway(RouteAddress::Inet(g)) => Some(g.to_string()),
            _ => None,
        });
        let oif = r.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(i) => Some(*i),
            _ => None,
        });
        if let Some(name) = oif.and_then(|i| names.get(&i)) {
            let iface = out
                .get(&name.replace('-', "_"))
                .cloned()
                .unwrap_or_default();
            let mut d = iface.get("ipv4").cloned().unwrap_or(json!({}));
            d["interface"] = json!(name);
            d["gateway"] = json!(gw.unwrap_or_default());
            d["macaddress"] = iface.get("macaddress").cloned().unwrap_or_default();
            d["mtu"] = iface.get("mtu").cloned().unwrap_or_default();
            default_ipv4 = d;
            break;
        }
    }
    conn.abort();
    let ifnames: Vec<&String> = names.values().collect();
    out.insert("interfaces".into(), json!(ifnames));
    out.insert("all_ipv4_addresses".into(), json!(all4));
    out.insert("all_ipv6_addresses".into(), json!(all6));
    out.insert("default_ipv4".into(), default_ipv4);
    Ok(out)
}
