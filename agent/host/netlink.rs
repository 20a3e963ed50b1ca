//! The `Net` agent op: bring links, addresses and routes in the agent's own network namespace to
//! a wanted state with rtnetlink (no `ip` commands, no parsing of their output).
//!
//! The work is shaped by two needs. **Check mode must be exact**, so every step is computed
//! against an in-memory model of the namespace ([`Model`]: links, addresses, routes as the kernel
//! dumps them) and the same code then either only updates the model (check) or also sends the
//! netlink request (apply). **A refusal must leave nothing half done** where it can be foreseen:
//! everything is validated against the model before the first change, and dummy links — which
//! some kernels cannot create at all (no `CONFIG_DUMMY`, or no loadable modules) — are created
//! first, so a kernel that refuses them fails the op with nothing else changed (dummies this op
//! already made are deleted again).
//!
//! Order of the work: dummies, bridges (STP as asked, off by default), veth pairs; MTUs of ports;
//! enslaving ports; MTUs of bridges (the kernel lowers a bridge's MTU to its ports' when they
//! join, so the bridge comes after); links up; addresses; routes. Nothing is removed: addresses
//! and routes that are not asked for stay, so a run cannot cut the connection it came in on.

use crate::protocol::{NetKind, NetLink, NetLinkState, NetReport, NetRequest, NetRoute};
use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{
    BridgeStpState, InfoBridge, InfoData, LinkAttribute, LinkFlags, LinkInfo,
};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteScope};
use rtnetlink::{Handle, LinkBridge, LinkDummy, LinkMessageBuilder, LinkUnspec, LinkVeth};
use std::io::{Error, ErrorKind};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const MAIN_TABLE: u32 = 254;
const LOCAL_TABLE: u32 = 255;

fn bad(msg: String) -> Error {
    Error::new(ErrorKind::InvalidInput, msg)
}

/// Run the op: validate, then apply (or, in check mode, simulate) in the fixed order above.
pub async fn apply(req: NetRequest) -> std::io::Result<NetReport> {
    let wants = req
        .links
        .iter()
        .map(Want::parse)
        .collect::<std::io::Result<Vec<_>>>()?;
    let (conn, handle, _) = rtnetlink::new_connection()
        .map_err(|e| Error::other(format!("cannot open a netlink socket: {e}")))?;
    let conn = tokio::spawn(conn);
    let model = Model::load(&handle).await;
    let r = match model {
        Ok(model) => {
            let mut run = Run {
                handle,
                check: req.check,
                model,
                actions: vec![],
                fake_index: 1 << 30,
            };
            run.all(&wants).await.map(|links| NetReport {
                changed: !run.actions.is_empty(),
                actions: run.actions,
                links,
            })
        }
        Err(e) => Err(e),
    };
    conn.abort();
    r
}

// ---------------------------------------------------------------------------------------------
// The request, parsed

struct Want {
    name: String,
    kind: NetKind,
    peer: Option<String>,
    stp: bool,
    master: Option<String>,
    mtu: Option<u32>,
    addrs: Vec<IpNet>,
    routes: Vec<WantRoute>,
    up: bool,
}

struct WantRoute {
    dst: IpNet,
    gw: Option<IpAddr>,
    table: u32,
    metric: Option<u32>,
}

impl WantRoute {
    fn text(&self) -> String {
        route_text(&self.dst, self.gw, self.table, self.metric)
    }
}

fn route_text(dst: &IpNet, gw: Option<IpAddr>, table: u32, metric: Option<u32>) -> String {
    let mut s = if dst.prefix_len() == 0 {
        "default".to_string()
    } else {
        dst.to_string()
    };
    if let Some(g) = gw {
        s.push_str(&format!(" via {g}"));
    }
    if table != MAIN_TABLE {
        s.push_str(&format!(" table {table}"));
    }
    if let Some(m) = metric {
        s.push_str(&format!(" metric {m}"));
    }
    s
}

fn check_name(name: &str) -> std::io::Result<()> {
    if name.is_empty()
        || name.len() > 15
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(bad(format!(
            "{name:?} is not a valid link name (1 to 15 characters, no '/', ':' or spaces)"
        )));
    }
    Ok(())
}

impl Want {
    fn parse(l: &NetLink) -> std::io::Result<Want> {
        check_name(&l.name)?;
        if let Some(p) = &l.peer {
            check_name(p)?;
        }
        if l.kind == NetKind::Veth && l.peer.is_none() {
            return Err(bad(format!("veth {} needs a peer name", l.name)));
        }
        let addrs = l
            .addresses
            .iter()
            .map(|a| {
                a.parse::<IpNet>().map_err(|_| {
                    bad(format!(
                        "{a:?} (for {}) is not an address with a prefix, like 192.0.2.1/24",
                        l.name
                    ))
                })
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        let routes = l
            .routes
            .iter()
            .map(|r| WantRoute::parse(r, &l.name))
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Want {
            name: l.name.clone(),
            kind: l.kind,
            peer: l.peer.clone(),
            stp: l.stp,
            master: l.master.clone(),
            mtu: l.mtu,
            addrs,
            routes,
            up: l.up,
        })
    }
}

impl WantRoute {
    fn parse(r: &NetRoute, link: &str) -> std::io::Result<WantRoute> {
        let dst = r.destination.parse::<IpNet>().map_err(|_| {
            bad(format!(
                "route destination {:?} (on {link}) is not a network with a prefix, like 10.0.0.0/8",
                r.destination
            ))
        })?;
        let gw = r
            .gateway
            .as_deref()
            .map(|g| {
                g.parse::<IpAddr>().map_err(|_| {
                    bad(format!(
                        "route gateway {g:?} (on {link}) is not an IP address"
                    ))
                })
            })
            .transpose()?;
        if let Some(g) = gw {
            if g.is_ipv4() != dst.addr().is_ipv4() {
                return Err(bad(format!(
                    "route {dst} on {link}: gateway {g} is not of the same IP version"
                )));
            }
        }
        Ok(WantRoute {
            dst: dst.trunc(),
            gw,
            table: r.table.unwrap_or(MAIN_TABLE),
            metric: r.metric,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The namespace, as the kernel reports it (and as check mode imagines it after each step)

#[derive(Clone, Debug)]
struct LinkSt {
    index: u32,
    name: String,
    kind: String,
    mtu: u32,
    up: bool,
    master: Option<u32>,
    stp: Option<bool>,
    addrs: Vec<IpNet>,
}

#[derive(Clone, Debug)]
struct RouteSt {
    table: u32,
    dst: IpNet,
    gw: Option<IpAddr>,
    oif: Option<u32>,
    metric: Option<u32>,
}

impl RouteSt {
    /// The kernel's default metric when none was given: 0 for IPv4, 1024 for IPv6.
    fn metric(&self) -> u32 {
        self.metric
            .unwrap_or(if self.dst.addr().is_ipv4() { 0 } else { 1024 })
    }
}

fn want_metric(r: &WantRoute) -> u32 {
    r.metric
        .unwrap_or(if r.dst.addr().is_ipv4() { 0 } else { 1024 })
}

#[derive(Default, Debug)]
struct Model {
    links: Vec<LinkSt>,
    routes: Vec<RouteSt>,
}

fn nl_err(what: &str, e: rtnetlink::Error) -> Error {
    Error::other(format!("netlink: cannot {what}: {}", nl_text(&e)))
}

/// The errno of a kernel refusal, if it was one.
fn nl_errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(m.raw_code().abs()),
        _ => None,
    }
}

fn nl_text(e: &rtnetlink::Error) -> String {
    match e {
        rtnetlink::Error::NetlinkError(m) => {
            let io = m.to_io();
            if m.raw_code().abs() == libc_eperm() {
                format!("{io} (changing links needs root: run the task with become: true)")
            } else {
                io.to_string()
            }
        }
        other => other.to_string(),
    }
}

const fn libc_eperm() -> i32 {
    1
}
const EOPNOTSUPP: i32 = 95;
const EEXIST: i32 = 17;

fn ip_of(a: &AddressAttribute) -> Option<IpAddr> {
    match a {
        AddressAttribute::Local(ip) | AddressAttribute::Address(ip) => Some(*ip),
        _ => None,
    }
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

impl Model {
    async fn load(handle: &Handle) -> std::io::Result<Model> {
        let mut m = Model::default();
        let mut links = handle.link().get().execute();
        while let Some(l) = links
            .try_next()
            .await
            .map_err(|e| nl_err("list links", e))?
        {
            let mut st = LinkSt {
                index: l.header.index,
                name: String::new(),
                kind: String::new(),
                mtu: 0,
                up: l.header.flags.contains(LinkFlags::Up),
                master: None,
                stp: None,
                addrs: vec![],
            };
            for a in &l.attributes {
                match a {
                    LinkAttribute::IfName(n) => st.name = n.clone(),
                    LinkAttribute::Mtu(x) => st.mtu = *x,
                    LinkAttribute::Controller(x) if *x != 0 => st.master = Some(*x),
                    LinkAttribute::LinkInfo(infos) => {
                        for i in infos {
                            match i {
                                LinkInfo::Kind(k) => st.kind = k.to_string(),
                                LinkInfo::Data(InfoData::Bridge(b)) => {
                                    for x in b {
                                        if let InfoBridge::StpState(s) = x {
                                            st.stp = Some(*s != BridgeStpState::Disabled);
                                        }
                                    }
                                }
                                _ => {}
                            }
                        }
                    }
                    _ => {}
                }
            }
            m.links.push(st);
        }
        let mut addrs = handle.address().get().execute();
        while let Some(a) = addrs
            .try_next()
            .await
            .map_err(|e| nl_err("list addresses", e))?
        {
            // IPv4: IFA_LOCAL is the interface's own address (IFA_ADDRESS is the peer's on
            // point-to-point links); IPv6 has only IFA_ADDRESS.
            let ip = a
                .attributes
                .iter()
                .find(|x| matches!(x, AddressAttribute::Local(_)))
                .or_else(|| {
                    a.attributes
                        .iter()
                        .find(|x| matches!(x, AddressAttribute::Address(_)))
                })
                .and_then(ip_of);
            let (Some(ip), Some(link)) =
                (ip, m.links.iter_mut().find(|l| l.index == a.header.index))
            else {
                continue;
            };
            if let Ok(net) = IpNet::new(ip, a.header.prefix_len) {
                link.addrs.push(net);
            }
        }
        for v4 in [true, false] {
            let query = if v4 {
                rtnetlink::RouteMessageBuilder::<Ipv4Addr>::new().build()
            } else {
                rtnetlink::RouteMessageBuilder::<Ipv6Addr>::new().build()
            };
            let mut routes = handle.route().get(query).execute();
            while let Some(r) = routes
                .try_next()
                .await
                .map_err(|e| nl_err("list routes", e))?
            {
                let mut st = RouteSt {
                    table: u32::from(r.header.table),
                    dst: if v4 {
                        IpNet::V4(Default::default())
                    } else {
                        IpNet::V6(Default::default())
                    },
                    gw: None,
                    oif: None,
                    metric: None,
                };
                let mut dst = None;
                for a in &r.attributes {
                    match a {
                        RouteAttribute::Table(t) => st.table = *t,
                        RouteAttribute::Destination(d) => dst = route_ip(d),
                        RouteAttribute::Gateway(g) => st.gw = route_ip(g),
                        RouteAttribute::Oif(i) => st.oif = Some(*i),
                        RouteAttribute::Priority(p) => st.metric = Some(*p),
                        _ => {}
                    }
                }
                if st.table == LOCAL_TABLE {
                    continue;
                }
                if let Some(d) = dst {
                    match IpNet::new(d, r.header.destination_prefix_length) {
                        Ok(n) => st.dst = n.trunc(),
                        Err(_) => continue,
                    }
                }
                m.routes.push(st);
            }
        }
        Ok(m)
    }

    fn link(&self, name: &str) -> Option<&LinkSt> {
        self.links.iter().find(|l| l.name == name)
    }

    fn link_mut(&mut self, name: &str) -> Option<&mut LinkSt> {
        self.links.iter_mut().find(|l| l.name == name)
    }

    fn name_of(&self, index: u32) -> Option<String> {
        self.links
            .iter()
            .find(|l| l.index == index)
            .map(|l| l.name.clone())
    }

    fn state(&self, name: &str) -> Option<NetLinkState> {
        let l = self.link(name)?;
        let mut routes: Vec<String> = self
            .routes
            .iter()
            .filter(|r| r.oif == Some(l.index))
            .filter(|r| !(r.dst.addr().is_ipv6() && r.dst.addr().is_unicast_link_local_net()))
            .map(|r| route_text(&r.dst, r.gw, r.table, r.metric))
            .collect();
        routes.dedup();
        Some(NetLinkState {
            name: l.name.clone(),
            kind: l.kind.clone(),
            mtu: l.mtu,
            up: l.up,
            master: l.master.and_then(|m| self.name_of(m)),
            stp: l.stp,
            addresses: l.addrs.iter().map(|a| a.to_string()).collect(),
            routes,
        })
    }
}

/// `fe80::/10`, stable-Rust spelling of `Ipv6Addr::is_unicast_link_local`.
trait LinkLocal {
    fn is_unicast_link_local_net(&self) -> bool;
}
impl LinkLocal for IpAddr {
    fn is_unicast_link_local_net(&self) -> bool {
        match self {
            IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
            IpAddr::V4(_) => false,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The work

struct Run {
    handle: Handle,
    check: bool,
    model: Model,
    actions: Vec<String>,
    fake_index: u32,
}

fn kind_word(k: NetKind) -> &'static str {
    match k {
        NetKind::Bridge => "bridge",
        NetKind::Dummy => "dummy",
        NetKind::Veth => "veth",
        NetKind::Existing | NetKind::PortOrDummy => "",
    }
}

impl Run {
    async fn all(&mut self, wants: &[Want]) -> std::io::Result<Vec<NetLinkState>> {
        self.validate(wants)?;
        self.create_dummies(wants).await?;
        for w in wants.iter().filter(|w| w.kind == NetKind::Bridge) {
            self.bridge(w).await?;
        }
        for w in wants.iter().filter(|w| w.kind == NetKind::Veth) {
            self.veth(w).await?;
        }
        self.reload().await?;
        for w in wants.iter().filter(|w| w.kind != NetKind::Bridge) {
            self.mtu(&w.name, w.mtu).await?;
            if let Some(p) = &w.peer {
                self.mtu(p, w.mtu).await?;
            }
        }
        for w in wants {
            if let Some(m) = &w.master {
                self.enslave(&w.name, m).await?;
            }
        }
        self.reload().await?;
        if self.check {
            self.imagine_bridge_mtus();
        }
        for w in wants.iter().filter(|w| w.kind == NetKind::Bridge) {
            self.mtu(&w.name, w.mtu).await?;
        }
        for w in wants.iter().filter(|w| w.up) {
            self.up(&w.name).await?;
            if let Some(p) = &w.peer {
                self.up(p).await?;
            }
        }
        for w in wants {
            for a in &w.addrs {
                self.address(&w.name, a).await?;
            }
        }
        for w in wants {
            for r in &w.routes {
                self.route(&w.name, r).await?;
            }
        }
        self.reload().await?;
        let mut out = vec![];
        for w in wants {
            for name in std::iter::once(&w.name).chain(w.peer.as_ref()) {
                if let Some(s) = self.model.state(name) {
                    out.push(s);
                }
            }
        }
        Ok(out)
    }

    /// Re-read the kernel's state (apply only; check mode keeps its imagined model).
    async fn reload(&mut self) -> std::io::Result<()> {
        if !self.check {
            self.model = Model::load(&self.handle).await?;
        }
        Ok(())
    }

    /// Everything that can be known to fail, before the first change.
    fn validate(&self, wants: &[Want]) -> std::io::Result<()> {
        let wanted = |name: &str| {
            wants
                .iter()
                .find(|w| w.name == name)
                .or_else(|| wants.iter().find(|w| w.peer.as_deref() == Some(name)))
        };
        for w in wants {
            let have = self.model.link(&w.name);
            match (w.kind, have) {
                (NetKind::Existing, None) => {
                    // a veth's peer, created by the veth, may be listed on its own
                    let is_peer = wants
                        .iter()
                        .any(|v| v.kind == NetKind::Veth && v.peer.as_deref() == Some(&w.name));
                    if !is_peer {
                        return Err(bad(format!(
                            "link {} does not exist (only bridges, dummy links and veth pairs are created)",
                            w.name
                        )));
                    }
                }
                (NetKind::Existing | NetKind::PortOrDummy, Some(_)) | (_, None) => {}
                (k, Some(l)) if l.kind != kind_word(k) => {
                    return Err(bad(format!(
                        "link {} exists but is {}, not a {} link; rename or remove it first",
                        w.name,
                        if l.kind.is_empty() {
                            "a plain device".to_string()
                        } else {
                            format!("a {} link", l.kind)
                        },
                        kind_word(k)
                    )))
                }
                _ => {}
            }
            if let Some(m) = &w.master {
                let will_be_bridge = wants
                    .iter()
                    .any(|b| b.kind == NetKind::Bridge && &b.name == m);
                let is_bridge = self.model.link(m).is_some_and(|l| l.kind == "bridge");
                if !will_be_bridge && !is_bridge {
                    return Err(bad(format!(
                        "{} is to be a port of {m}, but {m} is not a bridge",
                        w.name
                    )));
                }
                if m == &w.name {
                    return Err(bad(format!("{m} cannot be a port of itself")));
                }
            }
            if let Some(p) = &w.peer {
                if let (Some(_), None) = (self.model.link(&w.name), self.model.link(p)) {
                    return Err(bad(format!(
                        "veth {} exists but its peer {p} does not; remove {} or fix the peer name",
                        w.name, w.name
                    )));
                }
                if let (None, Some(_)) = (self.model.link(&w.name), self.model.link(p)) {
                    return Err(bad(format!(
                        "veth peer {p} exists but {} does not; remove {p} or fix the names",
                        w.name
                    )));
                }
            }
        }
        for (i, w) in wants.iter().enumerate() {
            if wants[..i].iter().any(|o| o.name == w.name) {
                return Err(bad(format!("link {} is listed twice", w.name)));
            }
            if let Some(p) = &w.peer {
                if let Some(o) = wanted(p).filter(|o| o.kind != NetKind::Existing && o.name == *p) {
                    return Err(bad(format!(
                        "{p} is both veth {}'s peer and a {} link",
                        w.name,
                        kind_word(o.kind)
                    )));
                }
            }
        }
        Ok(())
    }

    /// Check mode: a bridge made in this run takes its ports' smallest MTU when they join, as
    /// the kernel does for a bridge whose MTU nobody set.
    fn imagine_bridge_mtus(&mut self) {
        let made = |l: &LinkSt| l.index > 1 << 30;
        let mut new = vec![];
        for b in self
            .model
            .links
            .iter()
            .filter(|l| l.kind == "bridge" && made(l))
        {
            let min = self
                .model
                .links
                .iter()
                .filter(|p| p.master == Some(b.index))
                .map(|p| p.mtu)
                .min();
            if let Some(m) = min {
                new.push((b.index, m));
            }
        }
        for (index, m) in new {
            if let Some(l) = self.model.links.iter_mut().find(|l| l.index == index) {
                l.mtu = m;
            }
        }
    }

    fn add_fake(&mut self, name: &str, kind: &str, stp: Option<bool>) {
        self.fake_index += 1;
        self.model.links.push(LinkSt {
            index: self.fake_index,
            name: name.to_string(),
            kind: kind.to_string(),
            mtu: 1500,
            up: false,
            master: None,
            stp,
            addrs: vec![],
        });
    }

    async fn create_dummies(&mut self, wants: &[Want]) -> std::io::Result<()> {
        let mut made: Vec<String> = vec![];
        for w in wants
            .iter()
            .filter(|w| matches!(w.kind, NetKind::Dummy | NetKind::PortOrDummy))
        {
            if self.model.link(&w.name).is_some() {
                continue;
            }
            self.actions.push(format!("create dummy link {}", w.name));
            if !self.check {
                if let Err(e) = self
                    .handle
                    .link()
                    .add(LinkDummy::new(&w.name).build())
                    .execute()
                    .await
                {
                    let undone = self.undo_dummies(&made).await;
                    let why = if nl_errno(&e) == Some(EOPNOTSUPP) {
                        format!(
                            "the kernel has no `dummy` link type ({}; it needs CONFIG_DUMMY: try \
                             `modprobe dummy`, or use a kernel built with the dummy driver)",
                            nl_text(&e)
                        )
                    } else {
                        nl_text(&e)
                    };
                    return Err(Error::other(format!(
                        "cannot create dummy link {}: {why}; nothing else was changed{undone}",
                        w.name
                    )));
                }
                made.push(w.name.clone());
            }
            self.add_fake(&w.name, "dummy", None);
        }
        Ok(())
    }

    /// Delete dummies this op made before a later one failed; says what it could not undo.
    async fn undo_dummies(&mut self, made: &[String]) -> String {
        let mut left = vec![];
        if made.is_empty() {
            return String::new();
        }
        let now = Model::load(&self.handle).await.unwrap_or_default();
        for name in made {
            let ok = match now.link(name) {
                Some(l) => self.handle.link().del(l.index).execute().await.is_ok(),
                None => true,
            };
            if !ok {
                left.push(name.clone());
            }
        }
        if left.is_empty() {
            format!(
                " (the dummy links made before it were removed again: {})",
                made.join(", ")
            )
        } else {
            format!(
                " (but these dummy links made before it could not be removed: {})",
                left.join(", ")
            )
        }
    }

    async fn bridge(&mut self, w: &Want) -> std::io::Result<()> {
        let onoff = if w.stp { "on" } else { "off" };
        let stp = if w.stp {
            BridgeStpState::KernelStp
        } else {
            BridgeStpState::Disabled
        };
        match self.model.link(&w.name) {
            None => {
                let action = format!("create bridge {} (stp {onoff})", w.name);
                if !self.check {
                    let msg = LinkMessageBuilder::<LinkBridge>::new(&w.name)
                        .stp_state(stp)
                        .build();
                    self.handle
                        .link()
                        .add(msg)
                        .execute()
                        .await
                        .map_err(|e| nl_err(&action, e))?;
                }
                self.actions.push(action);
                self.add_fake(&w.name, "bridge", Some(w.stp));
            }
            Some(l) if l.stp != Some(w.stp) => {
                let action = format!("set stp {onoff} on bridge {}", w.name);
                let index = l.index;
                if !self.check {
                    let msg = LinkMessageBuilder::<LinkBridge>::new(&w.name)
                        .index(index)
                        .stp_state(stp)
                        .build();
                    self.handle
                        .link()
                        .change(msg)
                        .execute()
                        .await
                        .map_err(|e| nl_err(&action, e))?;
                }
                self.actions.push(action);
                if let Some(l) = self.model.link_mut(&w.name) {
                    l.stp = Some(w.stp);
                }
            }
            Some(_) => {}
        }
        Ok(())
    }

    async fn veth(&mut self, w: &Want) -> std::io::Result<()> {
        let Some(peer) = &w.peer else { return Ok(()) };
        if self.model.link(&w.name).is_some() {
            return Ok(());
        }
        let action = format!("create veth pair {} <-> {peer}", w.name);
        if !self.check {
            self.handle
                .link()
                .add(LinkVeth::new(&w.name, peer).build())
                .execute()
                .await
                .map_err(|e| nl_err(&action, e))?;
        }
        self.actions.push(action);
        self.add_fake(&w.name, "veth", None);
        self.add_fake(peer, "veth", None);
        Ok(())
    }

    fn index(&self, name: &str) -> std::io::Result<u32> {
        self.model
            .link(name)
            .map(|l| l.index)
            .ok_or_else(|| Error::other(format!("link {name} disappeared while being configured")))
    }

    async fn change(
        &self,
        action: &str,
        msg: rtnetlink::packet_route::link::LinkMessage,
    ) -> std::io::Result<()> {
        if self.check {
            return Ok(());
        }
        self.handle
            .link()
            .change(msg)
            .execute()
            .await
            .map_err(|e| nl_err(action, e))
    }

    async fn mtu(&mut self, name: &str, mtu: Option<u32>) -> std::io::Result<()> {
        let Some(mtu) = mtu else { return Ok(()) };
        let index = self.index(name)?;
        let have = self.model.link(name).map(|l| l.mtu).unwrap_or_default();
        if have == mtu {
            return Ok(());
        }
        let action = format!("set mtu of {name} {have} -> {mtu}");
        self.change(&action, LinkUnspec::new_with_index(index).mtu(mtu).build())
            .await?;
        self.actions.push(action);
        if let Some(l) = self.model.link_mut(name) {
            l.mtu = mtu;
        }
        Ok(())
    }

    async fn enslave(&mut self, name: &str, bridge: &str) -> std::io::Result<()> {
        let index = self.index(name)?;
        let br = self.index(bridge)?;
        if self.model.link(name).and_then(|l| l.master) == Some(br) {
            return Ok(());
        }
        let action = format!("add {name} to bridge {bridge}");
        self.change(
            &action,
            LinkUnspec::new_with_index(index).controller(br).build(),
        )
        .await?;
        self.actions.push(action);
        if let Some(l) = self.model.link_mut(name) {
            l.master = Some(br);
        }
        Ok(())
    }

    async fn up(&mut self, name: &str) -> std::io::Result<()> {
        let index = self.index(name)?;
        if self.model.link(name).is_some_and(|l| l.up) {
            return Ok(());
        }
        let action = format!("set {name} up");
        self.change(&action, LinkUnspec::new_with_index(index).up().build())
            .await?;
        self.actions.push(action);
        if let Some(l) = self.model.link_mut(name) {
            l.up = true;
        }
        Ok(())
    }

    async fn address(&mut self, name: &str, a: &IpNet) -> std::io::Result<()> {
        let index = self.index(name)?;
        if self
            .model
            .link(name)
            .is_some_and(|l| l.addrs.iter().any(|x| x == a))
        {
            return Ok(());
        }
        let action = format!("add address {a} to {name}");
        if !self.check {
            self.handle
                .address()
                .add(index, a.addr(), a.prefix_len())
                .execute()
                .await
                .map_err(|e| nl_err(&action, e))?;
        }
        self.actions.push(action);
        if let Some(l) = self.model.link_mut(name) {
            l.addrs.push(*a);
        }
        // the kernel adds the connected route with the address
        self.model.routes.push(RouteSt {
            table: MAIN_TABLE,
            dst: a.trunc(),
            gw: None,
            oif: Some(index),
            metric: None,
        });
        Ok(())
    }

    async fn route(&mut self, name: &str, r: &WantRoute) -> std::io::Result<()> {
        let index = self.index(name)?;
        let same_slot =
            |x: &RouteSt| x.table == r.table && x.dst == r.dst && x.metric() == want_metric(r);
        if self.model.routes.iter().any(|x| {
            x.table == r.table
                && x.dst == r.dst
                && x.gw == r.gw
                && x.oif == Some(index)
                && r.metric.is_none_or(|m| x.metric() == m)
        }) {
            return Ok(());
        }
        let replace = self.model.routes.iter().any(same_slot);
        let action = format!(
            "{} route {} dev {name}",
            if replace { "replace" } else { "add" },
            r.text()
        );
        if !self.check {
            let mut msg = match (r.dst, r.gw) {
                (IpNet::V4(d), gw) => {
                    let mut b = rtnetlink::RouteMessageBuilder::<Ipv4Addr>::new()
                        .destination_prefix(d.addr(), d.prefix_len())
                        .output_interface(index)
                        .table_id(r.table);
                    match gw {
                        Some(IpAddr::V4(g)) => b = b.gateway(g),
                        _ => b = b.scope(RouteScope::Link),
                    }
                    if let Some(m) = r.metric {
                        b = b.priority(m);
                    }
                    self.handle.route().add(b.build())
                }
                (IpNet::V6(d), gw) => {
                    let mut b = rtnetlink::RouteMessageBuilder::<Ipv6Addr>::new()
                        .destination_prefix(d.addr(), d.prefix_len())
                        .output_interface(index)
                        .table_id(r.table);
                    if let Some(IpAddr::V6(g)) = gw {
                        b = b.gateway(g);
                    }
                    if let Some(m) = r.metric {
                        b = b.priority(m);
                    }
                    self.handle.route().add(b.build())
                }
            };
            if replace {
                msg = msg.replace();
            }
            msg.execute().await.map_err(|e| {
                if nl_errno(&e) == Some(EEXIST) {
                    Error::other(format!(
                        "netlink: cannot {action}: a route to {} already exists in table {}",
                        r.dst, r.table
                    ))
                } else {
                    nl_err(&action, e)
                }
            })?;
        }
        self.actions.push(action);
        if replace {
            self.model.routes.retain(|x| !same_slot(x));
        }
        self.model.routes.push(RouteSt {
            table: r.table,
            dst: r.dst,
            gw: r.gw,
            oif: Some(index),
            metric: r.metric,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked_before_anything_runs() {
        let l = NetLink {
            name: "br0".into(),
            kind: NetKind::Bridge,
            addresses: vec!["192.168.1.2".into()],
            ..Default::default()
        };
        let e = Want::parse(&l).err().expect("no prefix");
        assert!(e.to_string().contains("192.0.2.1/24"), "{e}");
        let l = NetLink {
            name: "a-name-that-is-too-long".into(),
            ..Default::default()
        };
        assert!(Want::parse(&l).is_err());
        let r = NetRoute {
            destination: "10.0.0.0/8".into(),
            gateway: Some("fd00::1".into()),
            ..Default::default()
        };
        let e = WantRoute::parse(&r, "br0").err().expect("mixed families");
        assert!(e.to_string().contains("same IP version"), "{e}");
        let r = NetRoute {
            destination: "10.1.2.3/8".into(),
            gateway: Some("192.168.1.1".into()),
            table: Some(100),
            metric: None,
        };
        let w = WantRoute::parse(&r, "br0").expect("valid");
        assert_eq!(w.text(), "10.0.0.0/8 via 192.168.1.1 table 100");
        let d = NetRoute {
            destination: "0.0.0.0/0".into(),
            gateway: Some("192.168.1.1".into()),
            ..Default::default()
        };
        assert_eq!(
            WantRoute::parse(&d, "br0").expect("valid").text(),
            "default via 192.168.1.1"
        );
    }
}
