//! `kiln.builtin.network` for real, through `kiln playbook run` over SSH against two lab hosts:
//! a Rocky 9 host (NetworkManager keyfiles) and an Ubuntu 22.04 host (systemd-networkd units).
//! Each lab host is its own network namespace, so the bridges, veth pairs, addresses and routes
//! the module makes are real kernel objects, checked with `ip -j` inside the host.
//!
//! The scenario, on fresh hosts: `--check --diff` reports the actions and changes nothing (no
//! link, no file); the real run makes a bridge with a veth port (MTU 1400, STP off, an IPv4
//! address, a default route and a static route) and a second bridge with IPv6 addressing and a
//! route; the persisted files have the right content and mode; a second run is `changed=0`.
//! Then a bridge whose port does not exist needs a dummy link: on this kernel (no dummy driver,
//! see LAB.md) the task fails with the message naming CONFIG_DUMMY and nothing else changes (no
//! bridge, no files); on a kernel that has the driver it succeeds and the dummy is a port.
//!
//! Needs root, sshd and iproute2 (`ip`) for the lab; without them the test prints SKIPPED.

mod lab;
mod playbook_runner;

use kiln::lab::{Flavor, Host};
use playbook_runner::text;
use serde_json::Value as J;
use std::path::{Path, PathBuf};
use std::process::Command;

const PLAYBOOK: &str = r#"
- hosts: lab
  gather_facts: false
  tasks:
    - name: network
      kiln.builtin.network:
        bridge_interfaces:
          - {device: kbr0, address: 10.77.0.2, netmask: 255.255.255.0, gateway: 10.77.0.1,
             mtu: 1400, ports: [kv0],
             route: [{network: 10.99.0.0, netmask: 255.255.0.0, gateway: 10.77.0.254}],
             stp: "false", bootproto: static, onboot: "yes", vlan: null, rules: null,
             defroute: null, ethtool_opts: null, zone: null, allowed_addresses: null}
          - {device: kbr6, address: "fd77::2", netmask: "ffff:ffff:ffff:ffff::", gateway: null,
             mtu: null, ports: [kv6],
             route: [{network: "fd99::", netmask: "ffff:ffff:ffff::", gateway: "fd77::fe"}],
             stp: null, bootproto: static, onboot: "yes", vlan: null, rules: [],
             defroute: null, ethtool_opts: null, zone: null, allowed_addresses: null}
        veth_interfaces:
          - {device: kv0, peer_device: kv0-peer}
          - {device: kv6, peer_device: kv6-peer}
        persist: auto
"#;

const DUMMY_PLAYBOOK: &str = r#"
- hosts: lab
  gather_facts: false
  tasks:
    - name: network with a dummy port
      kiln.builtin.network:
        bridge_interfaces:
          - {device: kbrd, address: 10.78.0.2, netmask: 255.255.255.0, ports: [kdummy1]}
        persist: auto
"#;

const ETHER_PLAYBOOK: &str = r#"
- hosts: lab
  gather_facts: false
  tasks:
    - name: an existing link
      kiln.builtin.network:
        ether_interfaces:
          - {device: keth1, address: 10.79.0.2, netmask: 24, mtu: 1450, gateway: null,
             route: [{network: 10.80.0.0/16, gateway: 10.79.0.254, table: 100}], vlan: null,
             rules: null, bootproto: static, onboot: "yes", defroute: null, ethtool_opts: null,
             zone: null, allowed_addresses: null, macaddress: null}
        persist: auto
"#;

struct Run {
    rc: i32,
    events: Vec<J>,
    out: String,
}

impl Run {
    fn results(&self) -> Vec<&J> {
        self.events
            .iter()
            .filter(|e| e["event"] == "task_result")
            .collect()
    }
    fn result_for(&self, host: &str) -> &J {
        self.results()
            .into_iter()
            .find(|e| e["host"] == host)
            .unwrap_or_else(|| panic!("no result for {host}:\n{}", self.out))
    }
    fn stats(&self, host: &str, key: &str) -> i64 {
        self.events
            .iter()
            .find(|e| e["event"] == "recap")
            .and_then(|e| e["stats"][host][key].as_i64())
            .unwrap_or_else(|| panic!("no recap {key} for {host}:\n{}", self.out))
    }
}

fn kiln(inventory: &Path, playbook: &Path, flags: &[&str]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
    cmd.arg("-i")
        .arg(inventory)
        .args(["playbook", "run", "--format", "json"])
        .args(flags)
        .arg(playbook);
    let out = cmd.output().expect("run kiln");
    let stdout = text(&out.stdout);
    Run {
        rc: out.status.code().unwrap_or(-1),
        events: stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect(),
        out: format!("stdout:\n{stdout}\nstderr:\n{}", text(&out.stderr)),
    }
}

fn sh(h: &Host, argv: &[&str]) -> (bool, String) {
    let o = h.exec(argv).expect("exec in lab host");
    (
        o.status.success(),
        format!("{}{}", text(&o.stdout), text(&o.stderr)),
    )
}

fn ip_json(h: &Host, args: &[&str]) -> J {
    let mut argv = vec!["ip", "-j"];
    argv.extend_from_slice(args);
    let (ok, out) = sh(h, &argv);
    assert!(ok, "ip {args:?} on {}: {out}", h.name);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("ip {args:?}: {e}: {out}"))
}

fn link(h: &Host, name: &str) -> Option<J> {
    let (ok, out) = sh(h, &["ip", "-j", "-d", "link", "show", "dev", name]);
    if !ok {
        return None;
    }
    let v: J = serde_json::from_str(&out).expect("ip -j link json");
    v.as_array().and_then(|a| a.first().cloned())
}

/// `mode owner` of a file (`stat -c '%a %U'`), or None when it does not exist.
fn stat(h: &Host, path: &str) -> Option<String> {
    let (ok, out) = sh(h, &["stat", "-c", "%a %U", path]);
    ok.then(|| out.trim().to_string())
}

fn cat(h: &Host, path: &str) -> String {
    let (ok, out) = sh(h, &["cat", path]);
    assert!(ok, "cat {path} on {}: {out}", h.name);
    out
}

fn has_route(routes: &J, dst: &str, gw: &str, dev: &str) -> bool {
    routes.as_array().is_some_and(|rs| {
        rs.iter()
            .any(|r| r["dst"] == dst && r["gateway"] == gw && r["dev"] == dev)
    })
}

fn nm_files() -> [&'static str; 6] {
    [
        "/etc/NetworkManager/system-connections/kbr0.nmconnection",
        "/etc/NetworkManager/system-connections/kbr6.nmconnection",
        "/etc/NetworkManager/system-connections/kv0.nmconnection",
        "/etc/NetworkManager/system-connections/kv0-peer.nmconnection",
        "/etc/NetworkManager/system-connections/kv6.nmconnection",
        "/etc/NetworkManager/system-connections/kv6-peer.nmconnection",
    ]
}

fn networkd_files() -> Vec<String> {
    let mut v = vec![];
    for n in ["kbr0", "kbr6", "kv0", "kv6"] {
        v.push(format!("/etc/systemd/network/10-kiln-{n}.netdev"));
        v.push(format!("/etc/systemd/network/10-kiln-{n}.network"));
    }
    for n in ["kv0-peer", "kv6-peer"] {
        v.push(format!("/etc/systemd/network/10-kiln-{n}.network"));
    }
    v
}

fn files_for(h: &Host) -> Vec<String> {
    match h.flavor {
        Flavor::Rocky9 => nm_files().iter().map(|s| s.to_string()).collect(),
        _ => networkd_files(),
    }
}

fn check_live(h: &Host) {
    let br = link(h, "kbr0").unwrap_or_else(|| panic!("{}: no kbr0", h.name));
    assert_eq!(br["linkinfo"]["info_kind"], "bridge", "{br}");
    assert_eq!(br["mtu"], 1400, "{br}");
    assert_eq!(br["linkinfo"]["info_data"]["stp_state"], 0, "stp off: {br}");
    assert!(
        br["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "UP")),
        "{br}"
    );
    for (port, bridge, mtu) in [("kv0", "kbr0", 1400), ("kv6", "kbr6", 1500)] {
        let p = link(h, port).unwrap_or_else(|| panic!("{}: no {port}", h.name));
        assert_eq!(p["master"], bridge, "{p}");
        assert_eq!(p["linkinfo"]["info_kind"], "veth", "{p}");
        assert_eq!(p["mtu"], mtu, "{p}");
        let peer = link(h, &format!("{port}-peer")).expect("peer");
        assert_eq!(peer["mtu"], mtu, "{peer}");
        assert!(
            peer["flags"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x == "UP")),
            "{peer}"
        );
    }
    let addrs = ip_json(h, &["addr", "show", "dev", "kbr0"]);
    let a4 = &addrs[0]["addr_info"];
    assert!(
        a4.as_array().is_some_and(|a| a
            .iter()
            .any(|x| x["local"] == "10.77.0.2" && x["prefixlen"] == 24)),
        "{addrs}"
    );
    let routes = ip_json(h, &["route", "show"]);
    assert!(
        has_route(&routes, "10.99.0.0/16", "10.77.0.254", "kbr0"),
        "{routes}"
    );
    assert!(
        has_route(&routes, "default", "10.77.0.1", "kbr0"),
        "{routes}"
    );
    let a6 = ip_json(h, &["-6", "addr", "show", "dev", "kbr6"]);
    assert!(
        a6[0]["addr_info"].as_array().is_some_and(|a| a
            .iter()
            .any(|x| x["local"] == "fd77::2" && x["prefixlen"] == 64)),
        "{a6}"
    );
    let r6 = ip_json(h, &["-6", "route", "show"]);
    assert!(has_route(&r6, "fd99::/48", "fd77::fe", "kbr6"), "{r6}");
}

fn check_files(h: &Host) {
    match h.flavor {
        Flavor::Rocky9 => {
            for f in nm_files() {
                assert_eq!(stat(h, f).as_deref(), Some("600 root"), "{f}");
            }
            let br = cat(h, nm_files()[0]);
            for want in [
                "type=bridge\n",
                "interface-name=kbr0\n",
                "[bridge]\nstp=false\n",
                "[ethernet]\nmtu=1400\n",
                "[ipv4]\nmethod=manual\naddress1=10.77.0.2/24,10.77.0.1\nroute1=10.99.0.0/16,10.77.0.254\n",
            ] {
                assert!(br.contains(want), "kbr0 keyfile lacks {want:?}:\n{br}");
            }
            let br6 = cat(h, nm_files()[1]);
            assert!(
                br6.contains(
                    "[ipv6]\nmethod=manual\naddress1=fd77::2/64\nroute1=fd99::/48,fd77::fe\n"
                ),
                "{br6}"
            );
            let port = cat(h, nm_files()[2]);
            for want in [
                "type=veth\n",
                "master=kbr0\n",
                "slave-type=bridge\n",
                "[veth]\npeer=kv0-peer\n",
            ] {
                assert!(port.contains(want), "kv0 keyfile lacks {want:?}:\n{port}");
            }
            assert!(!port.contains("[ipv4]"), "{port}");
        }
        _ => {
            for f in networkd_files() {
                assert_eq!(stat(h, &f).as_deref(), Some("644 root"), "{f}");
            }
            let d = "/etc/systemd/network/10-kiln-";
            let netdev = cat(h, &format!("{d}kbr0.netdev"));
            assert!(
                netdev.contains("[NetDev]\nName=kbr0\nKind=bridge\nMTUBytes=1400\n"),
                "{netdev}"
            );
            assert!(netdev.contains("[Bridge]\nSTP=false\n"), "{netdev}");
            let net = cat(h, &format!("{d}kbr0.network"));
            for want in [
                "[Match]\nName=kbr0\n",
                "MTUBytes=1400\n",
                "Address=10.77.0.2/24\n",
                "Gateway=10.77.0.1\n",
                "[Route]\nDestination=10.99.0.0/16\nGateway=10.77.0.254\n",
            ] {
                assert!(net.contains(want), "kbr0.network lacks {want:?}:\n{net}");
            }
            let veth = cat(h, &format!("{d}kv0.netdev"));
            assert!(
                veth.contains("Kind=veth\n") && veth.contains("[Peer]\nName=kv0-peer\n"),
                "{veth}"
            );
            let port = cat(h, &format!("{d}kv0.network"));
            assert!(port.contains("[Network]\nBridge=kbr0\n"), "{port}");
            let net6 = cat(h, &format!("{d}kbr6.network"));
            assert!(
                net6.contains("Address=fd77::2/64\n")
                    && net6.contains("Destination=fd99::/48\nGateway=fd77::fe\n"),
                "{net6}"
            );
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write playbook");
    p
}

#[test]
fn bridges_veths_addresses_routes_live_and_persistent() {
    require_lab!();
    if lab::which("ip").is_none() {
        eprintln!("SKIPPED: `ip` is missing; install the Debian package iproute2");
        return;
    }
    let guard =
        lab::LabGuard::up(&lab::spec("knet").with_hosts(2, &[Flavor::Rocky9, Flavor::Ubuntu2204]));
    let tmp = tempfile::tempdir().expect("tempdir");
    let playbook = write(tmp.path(), "net.yml", PLAYBOOK);
    let hosts = &guard.hosts;

    // -- check mode on fresh hosts: says what it would do, does nothing
    let check = kiln(&guard.inventory, &playbook, &["--check", "--diff"]);
    assert_eq!(check.rc, 0, "{}", check.out);
    for h in hosts {
        let r = check.result_for(&h.name);
        assert_eq!(r["status"], "changed", "{r}");
        let actions: Vec<&str> = r["result"]["actions"]
            .as_array()
            .expect("actions")
            .iter()
            .filter_map(|a| a.as_str())
            .collect();
        for want in [
            "create bridge kbr0 (stp off)",
            "create veth pair kv0 <-> kv0-peer",
            "add kv0 to bridge kbr0",
            "add address 10.77.0.2/24 to kbr0",
            "add route default via 10.77.0.1 dev kbr0",
            "add route fd99::/48 via fd77::fe dev kbr6",
        ] {
            assert!(
                actions.contains(&want),
                "{}: no {want:?} in {actions:?}",
                h.name
            );
        }
        assert!(
            link(h, "kbr0").is_none(),
            "{}: check mode made kbr0",
            h.name
        );
        assert!(link(h, "kv0").is_none(), "{}: check mode made kv0", h.name);
        for f in files_for(h) {
            assert_eq!(stat(h, &f), None, "{}: check mode wrote {f}", h.name);
        }
        let diff = r["result"]["diff"].to_string();
        assert!(diff.contains("create bridge kbr0"), "{}: {diff}", h.name);
        // and each file it would write, with its new content
        let first_file = &files_for(h)[0];
        let diffs = r["result"]["diff"].as_array().expect("a diff list");
        let fd = diffs
            .iter()
            .find(|d| d["after_header"] == first_file.as_str())
            .unwrap_or_else(|| panic!("{}: no diff for {first_file}: {diff}", h.name));
        assert_eq!(fd["before"], "", "{fd}");
        assert!(
            fd["after"].as_str().is_some_and(|a| a.contains("kbr0")),
            "{fd}"
        );
    }

    // -- the real run
    let first = kiln(&guard.inventory, &playbook, &[]);
    assert_eq!(first.rc, 0, "{}", first.out);
    for h in hosts {
        assert_eq!(first.stats(&h.name, "changed"), 1, "{}", first.out);
        let r = &first.result_for(&h.name)["result"];
        let persisted: Vec<&str> = r["persisted"]
            .as_array()
            .expect("persisted")
            .iter()
            .filter_map(|p| p.as_str())
            .collect();
        let mut want = files_for(h);
        want.sort();
        let mut got: Vec<String> = persisted.iter().map(|s| s.to_string()).collect();
        got.sort();
        assert_eq!(got, want, "{}", h.name);
        eprintln!(
            "{}: actions {}\npersisted {}",
            h.name, r["actions"], r["persisted"]
        );
        // check mode was exact: it foresaw the same actions, in the same order
        assert_eq!(
            r["actions"],
            check.result_for(&h.name)["result"]["actions"],
            "{}",
            h.name
        );
        let ifaces = r["interfaces"].to_string();
        assert!(ifaces.contains("10.77.0.2/24"), "{ifaces}");
        check_live(h);
        check_files(h);
    }

    // -- idempotent
    let second = kiln(&guard.inventory, &playbook, &[]);
    assert_eq!(second.rc, 0, "{}", second.out);
    for h in hosts {
        assert_eq!(second.stats(&h.name, "changed"), 0, "{}", second.out);
        assert_eq!(second.stats(&h.name, "ok"), 1, "{}", second.out);
        let r = &second.result_for(&h.name)["result"];
        assert_eq!(r["actions"], serde_json::json!([]), "{r}");
    }

    // -- drift is repaired: a port taken out of its bridge, an MTU changed by hand
    for h in hosts {
        let (ok, out) = sh(h, &["ip", "link", "set", "kv0", "nomaster"]);
        assert!(ok, "{out}");
        let (ok, out) = sh(h, &["ip", "link", "set", "kv0-peer", "mtu", "1300"]);
        assert!(ok, "{out}");
    }
    let third = kiln(&guard.inventory, &playbook, &[]);
    assert_eq!(third.rc, 0, "{}", third.out);
    for h in hosts {
        let r = &third.result_for(&h.name)["result"];
        assert_eq!(
            r["actions"],
            serde_json::json!(["set mtu of kv0-peer 1300 -> 1400", "add kv0 to bridge kbr0"]),
            "{}: {r}",
            h.name
        );
        check_live(h);
    }

    // -- an existing link (an ether interface): address, MTU, a route in another table; a
    // missing one is a clear error
    let eplay = write(tmp.path(), "ether.yml", ETHER_PLAYBOOK);
    let e = kiln(&guard.inventory, &eplay, &[]);
    assert_eq!(e.rc, 2, "{}", e.out);
    for h in hosts {
        let msg = e.result_for(&h.name)["result"]["msg"].to_string();
        assert!(msg.contains("link keth1 does not exist"), "{msg}");
        let (ok, out) = sh(
            h,
            &[
                "ip", "link", "add", "keth1", "type", "veth", "peer", "name", "keth1p",
            ],
        );
        assert!(ok, "{out}");
    }
    for round in 0..2 {
        let e = kiln(&guard.inventory, &eplay, &[]);
        assert_eq!(e.rc, 0, "{}", e.out);
        for h in hosts {
            assert_eq!(e.stats(&h.name, "changed"), 1 - round, "{}", e.out);
            let l = link(h, "keth1").expect("keth1");
            assert_eq!(l["mtu"], 1450, "{l}");
            let a = ip_json(h, &["addr", "show", "dev", "keth1"]);
            assert!(a.to_string().contains("\"local\":\"10.79.0.2\""), "{a}");
            let r = ip_json(h, &["route", "show", "table", "100"]);
            assert!(has_route(&r, "10.80.0.0/16", "10.79.0.254", "keth1"), "{r}");
        }
    }
    let rocky = hosts
        .iter()
        .find(|h| h.flavor == Flavor::Rocky9)
        .expect("rocky");
    let k = cat(
        rocky,
        "/etc/NetworkManager/system-connections/keth1.nmconnection",
    );
    assert!(
        k.contains("type=ethernet\n")
            && k.contains("[ethernet]\nmtu=1450\n")
            && k.contains("address1=10.79.0.2/24\nroute1=10.80.0.0/16,10.79.0.254\nroute1_options=table=100\n"),
        "{k}"
    );
    let ubuntu = hosts
        .iter()
        .find(|h| h.flavor == Flavor::Ubuntu2204)
        .expect("ubuntu");
    let n = cat(ubuntu, "/etc/systemd/network/10-kiln-keth1.network");
    assert!(
        n.contains("Address=10.79.0.2/24\n")
            && n.contains("Destination=10.80.0.0/16\nGateway=10.79.0.254\nTable=100\n"),
        "{n}"
    );
    assert_eq!(
        stat(ubuntu, "/etc/systemd/network/10-kiln-keth1.netdev"),
        None,
        "no netdev for an existing link"
    );

    // -- a port that does not exist is a dummy link; this kernel may not have them
    let dummy_ok = {
        let h = &hosts[0];
        let (ok, _) = sh(h, &["ip", "link", "add", "kprobe0", "type", "dummy"]);
        if ok {
            sh(h, &["ip", "link", "del", "kprobe0"]);
        }
        ok
    };
    let dplay = write(tmp.path(), "dummy.yml", DUMMY_PLAYBOOK);
    let d = kiln(&guard.inventory, &dplay, &[]);
    for h in hosts {
        let r = d.result_for(&h.name);
        if dummy_ok {
            assert_eq!(r["status"], "changed", "{r}");
            let p = link(h, "kdummy1").expect("dummy made");
            assert_eq!(p["linkinfo"]["info_kind"], "dummy");
            assert_eq!(p["master"], "kbrd");
            continue;
        }
        assert_eq!(d.rc, 2, "{}", d.out);
        assert_eq!(r["status"], "failed", "{r}");
        let msg = r["result"]["msg"].as_str().unwrap_or_default();
        eprintln!("{}: dummy refusal: {msg}", h.name);
        assert!(
            msg.contains("cannot create dummy link kdummy1")
                && msg.contains("CONFIG_DUMMY")
                && msg.contains("modprobe dummy")
                && msg.contains("nothing else was changed"),
            "{}: {msg}",
            h.name
        );
        assert!(
            link(h, "kbrd").is_none(),
            "{}: the bridge was made anyway",
            h.name
        );
        assert!(link(h, "kdummy1").is_none(), "{}", h.name);
        for f in [
            "/etc/NetworkManager/system-connections/kbrd.nmconnection",
            "/etc/NetworkManager/system-connections/kdummy1.nmconnection",
            "/etc/systemd/network/10-kiln-kbrd.netdev",
            "/etc/systemd/network/10-kiln-kbrd.network",
            "/etc/systemd/network/10-kiln-kdummy1.netdev",
        ] {
            assert_eq!(stat(h, f), None, "{}: {f} was written", h.name);
        }
        // and what was there before is untouched
        check_live(h);
    }
}
