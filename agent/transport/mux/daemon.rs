//! The connection daemon itself (`kiln mux daemon`): holds each host's SSH connection with its
//! running agent, hands one to one run at a time, forwards whole frames, and closes what is idle.

use super::*;

/// One held SSH connection with its running agent.
struct Conn {
    key: String,
    label: String,
    persist: Duration,
    to_agent: mpsc::UnboundedSender<Bytes>,
    /// The run using it now: where the agent's frames go.
    client: Mutex<Option<mpsc::UnboundedSender<Bytes>>>,
    ping: Mutex<Option<oneshot::Sender<()>>>,
    dead: AtomicBool,
    last_used: Mutex<Instant>,
    ssh: tokio::sync::Mutex<Option<Connected>>,
}

impl Conn {
    /// Take over a channel on which the agent was just started.
    fn spawn(
        key: String,
        label: String,
        persist: Duration,
        ssh: Connected,
        s: Started,
    ) -> Arc<Conn> {
        let (to_agent, mut rx) = mpsc::unbounded_channel::<Bytes>();
        let conn = Arc::new(Conn {
            key,
            label,
            persist,
            to_agent,
            client: Mutex::new(None),
            ping: Mutex::new(None),
            dead: AtomicBool::new(false),
            last_used: Mutex::new(Instant::now()),
            ssh: tokio::sync::Mutex::new(Some(ssh)),
        });
        let write = s.write;
        tokio::spawn(async move {
            let mut w = write.make_writer();
            if write_queued(&mut rx, &mut w).await.is_ok() {
                // every sender gone: end of input for the agent, which exits
                let _ = w.shutdown().await;
                let _ = write.eof().await;
            }
        });
        // heartbeats, so the agent knows this daemon is there (see Request::Hello)
        crate::transport::session::spawn_heartbeat(conn.to_agent.downgrade());
        let c = conn.clone();
        let mut read = s.read;
        let mut buf = BytesMut::from(&s.stdout[..]);
        tokio::spawn(async move {
            loop {
                while let Some(frame) = split_frame(&mut buf) {
                    c.deliver(frame);
                }
                match read.wait().await {
                    Some(ChannelMsg::Data { data }) => buf.extend_from_slice(&data),
                    Some(ChannelMsg::ExtendedData { data, .. }) => {
                        tracing::debug!(
                            "{}: agent stderr: {}",
                            c.label,
                            String::from_utf8_lossy(&data)
                        );
                    }
                    Some(ChannelMsg::Eof | ChannelMsg::Close) | None => break,
                    Some(_) => {}
                }
            }
            c.dead.store(true, Ordering::SeqCst);
            // the run using it sees its socket close
            lock(&c.client).take();
            lock(&c.ping).take();
            tracing::info!("{}: connection closed", c.label);
        });
        conn
    }

    fn deliver(&self, frame: Bytes) {
        if frame_id(&frame) == Some(crate::protocol::HEARTBEAT_ID) {
            return;
        }
        {
            let mut ping = lock(&self.ping);
            if ping.is_some() && frame_id(&frame) == Some(PING_ID) {
                if let Some(tx) = ping.take() {
                    let _ = tx.send(());
                }
                return;
            }
        }
        if let Some(c) = lock(&self.client).as_ref() {
            let _ = c.send(frame);
        }
        // no run attached: an answer owed to a run that went away
    }

    /// Whether the agent still answers.
    async fn alive(&self) -> bool {
        if self.dead.load(Ordering::SeqCst) {
            return false;
        }
        let (tx, rx) = oneshot::channel();
        *lock(&self.ping) = Some(tx);
        let Ok(buf) = encode(&Frame {
            id: PING_ID,
            body: Request::Ping,
        }) else {
            return false;
        };
        if self.to_agent.send(Bytes::from(buf)).is_err() {
            return false;
        }
        matches!(tokio::time::timeout(PING_TIMEOUT, rx).await, Ok(Ok(())))
    }

    async fn close(&self) {
        self.dead.store(true, Ordering::SeqCst);
        lock(&self.client).take();
        if let Some(ssh) = self.ssh.lock().await.take() {
            ssh.disconnect().await;
        }
    }
}

/// Cut one whole frame (length prefix included) off the front of `buf`.
pub(super) fn split_frame(buf: &mut BytesMut) -> Option<Bytes> {
    let len = u32::from_be_bytes(buf.get(..4)?.try_into().ok()?) as usize;
    if buf.len() < 4 + len {
        return None;
    }
    Some(buf.split_to(4 + len).freeze())
}

/// The request id of a frame (length prefix included), without decoding its body.
pub(super) fn frame_id(frame: &[u8]) -> Option<u64> {
    rmp_serde::from_slice::<Frame<serde::de::IgnoredAny>>(frame.get(4..)?)
        .ok()
        .map(|f| f.id)
}

#[derive(Default)]
struct Daemon {
    idle: Mutex<HashMap<String, Vec<Arc<Conn>>>>,
    in_use: Mutex<Vec<Arc<Conn>>>,
    clients: AtomicUsize,
    last_activity: Mutex<Option<Instant>>,
    stop: Notify,
}

impl Daemon {
    fn touch(&self) {
        *lock(&self.last_activity) = Some(Instant::now());
    }

    /// A held connection for `key` whose agent answers, if any.
    async fn checkout(&self, key: &str) -> Option<Arc<Conn>> {
        loop {
            let c = lock(&self.idle).get_mut(key).and_then(Vec::pop)?;
            if c.alive().await {
                return Some(c);
            }
            tracing::info!(
                "{}: held connection does not answer; opening a new one",
                c.label
            );
            c.close().await;
        }
    }

    fn checkin(&self, c: Arc<Conn>) {
        *lock(&c.last_used) = Instant::now();
        lock(&self.idle).entry(c.key.clone()).or_default().push(c);
    }

    fn held(&self) -> Vec<Held> {
        let now = Instant::now();
        let mut out = Vec::new();
        for c in lock(&self.idle).values().flatten() {
            out.push(Held {
                label: c.label.clone(),
                in_use: false,
                idle_secs: now.duration_since(*lock(&c.last_used)).as_secs(),
                persist_secs: c.persist.as_secs(),
            });
        }
        for c in lock(&self.in_use).iter() {
            out.push(Held {
                label: c.label.clone(),
                in_use: true,
                idle_secs: 0,
                persist_secs: c.persist.as_secs(),
            });
        }
        out
    }

    /// Close connections unused for their persist time (and dead ones); true when nothing is
    /// held, no run is attached and nothing happened for a moment: time to go.
    async fn reap(&self) -> bool {
        let now = Instant::now();
        let expired: Vec<Arc<Conn>> = {
            let mut idle = lock(&self.idle);
            let mut out = Vec::new();
            for v in idle.values_mut() {
                let (gone, keep): (Vec<_>, Vec<_>) = v.drain(..).partition(|c| {
                    c.dead.load(Ordering::SeqCst)
                        || now.duration_since(*lock(&c.last_used)) >= c.persist
                });
                *v = keep;
                out.extend(gone);
            }
            idle.retain(|_, v| !v.is_empty());
            out
        };
        for c in expired {
            tracing::info!("{}: unused for {:?}, closing", c.label, c.persist);
            c.close().await;
        }
        let empty = lock(&self.idle).is_empty() && self.clients.load(Ordering::SeqCst) == 0;
        let quiet = lock(&self.last_activity)
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(2));
        empty && quiet
    }

    async fn close_all(&self) {
        let all: Vec<Arc<Conn>> = lock(&self.idle).drain().flat_map(|(_, v)| v).collect();
        for c in all {
            c.close().await;
        }
        let in_use: Vec<Arc<Conn>> = lock(&self.in_use).clone();
        for c in in_use {
            c.close().await;
        }
    }

    async fn open(&self, o: &OpenWire) -> Result<(Arc<Conn>, u64, String, bool), TransportError> {
        let key = o.key();
        if let Some(c) = self.checkout(&key).await {
            return Ok((c, 0, String::new(), true));
        }
        let spec = o.spec();
        let opts = o.opts();
        upload::prefetch(&opts);
        let ssh = ssh::open(&spec, &opts).await?;
        let started = match upload::launch(&spec, &ssh, &opts).await {
            Ok(s) => s,
            Err(e) => {
                ssh.disconnect().await;
                return Err(e);
            }
        };
        let uploaded = opts.stats.agent_bytes_uploaded.load(Ordering::Relaxed);
        let agent = upload::find_agent_binary(std::env::consts::ARCH, &opts)
            .and_then(|p| upload::cached_sha(&p))
            .map(|s| s.chars().take(12).collect())
            .unwrap_or_default();
        tracing::info!("{}: connected", o.label());
        Ok((
            Conn::spawn(key, o.label(), o.persist, ssh, started),
            uploaded,
            agent,
            false,
        ))
    }

    async fn serve(self: Arc<Self>, stream: UnixStream) {
        // only this user's runs may use its connections
        match stream.peer_cred() {
            Ok(c) if c.uid() == nix::unistd::getuid().as_raw() => {}
            _ => return,
        }
        let (r, mut w) = stream.into_split();
        let mut r = BufReader::new(r);
        let Ok(ask) = read_line::<Ask, _>(&mut r).await else {
            return;
        };
        let o = match ask {
            Ask::Status => {
                let held = self.held();
                let _ = write_line(
                    &mut w,
                    &Reply::Status {
                        pid: std::process::id(),
                        held,
                    },
                )
                .await;
                return;
            }
            Ask::Stop => {
                let _ = write_line(&mut w, &Reply::Stopping).await;
                self.stop.notify_one();
                return;
            }
            Ask::Open(o) => o,
        };
        self.clients.fetch_add(1, Ordering::SeqCst);
        self.touch();
        self.attach(&o, r, w).await;
        self.clients.fetch_sub(1, Ordering::SeqCst);
        self.touch();
    }

    async fn attach(
        &self,
        o: &OpenWire,
        mut r: BufReader<tokio::net::unix::OwnedReadHalf>,
        mut w: tokio::net::unix::OwnedWriteHalf,
    ) {
        let (conn, uploaded, agent, reused) = match self.open(o).await {
            Ok(x) => x,
            Err(e) => {
                let _ = write_line(&mut w, &Reply::Failed(e)).await;
                return;
            }
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
        *lock(&conn.client) = Some(tx);
        lock(&self.in_use).push(conn.clone());
        if write_line(
            &mut w,
            &Reply::Ready {
                uploaded,
                agent,
                reused,
            },
        )
        .await
        .is_err()
        {
            lock(&conn.client).take();
            lock(&self.in_use).retain(|c| !Arc::ptr_eq(c, &conn));
            self.checkin(conn);
            return;
        }
        let to_client = async move {
            let _ = write_queued(&mut rx, &mut w).await;
        };
        let agent_in = conn.to_agent.clone();
        let from_client = async move {
            let mut len = [0u8; 4];
            loop {
                if r.read_exact(&mut len).await.is_err() {
                    return false; // the run is done (or gone): keep the connection
                }
                let n = u32::from_be_bytes(len) as usize;
                if n == 0 {
                    return true; // reset_connection: forget it
                }
                if n > MAX_FRAME {
                    return true;
                }
                let mut frame = BytesMut::with_capacity(4 + n);
                frame.extend_from_slice(&len);
                frame.resize(4 + n, 0);
                if r.read_exact(&mut frame[4..]).await.is_err() {
                    return false; // half a frame: never forwarded, the agent is unaffected
                }
                if agent_in.send(frame.freeze()).is_err() {
                    return true;
                }
            }
        };
        let forget = tokio::select! {
            f = from_client => f,
            _ = to_client => true, // the connection died
        };
        lock(&conn.client).take();
        lock(&self.in_use).retain(|c| !Arc::ptr_eq(c, &conn));
        if forget || conn.dead.load(Ordering::SeqCst) {
            conn.close().await;
        } else {
            self.checkin(conn);
        }
    }
}

/// `kiln mux daemon --socket PATH` (started by [`connect`]): listen, serve, exit when idle.
pub fn daemon_main(path: &Path) -> i32 {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kiln mux daemon: cannot start the runtime: {e}");
            return 1;
        }
    };
    let r = rt.block_on(daemon(path));
    rt.shutdown_background();
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("kiln mux daemon: {e}");
            1
        }
    }
}

fn say_ready() {
    use std::io::Write;
    let mut out = std::io::stdout();
    let _ = out.write_all(b"ready\n");
    let _ = out.flush();
}

async fn daemon(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().unwrap_or(Path::new("/"));
    super::client::make_private_dir(dir)?;
    // one daemon per socket: the lock is held for the daemon's whole life
    let lockfile = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path.with_extension("lock"))?;
    let _lock = match nix::fcntl::Flock::lock(lockfile, nix::fcntl::FlockArg::LockExclusiveNonblock)
    {
        Ok(l) => l,
        Err(_) => {
            // another daemon holds it: wait until it listens, then leave the clients to it
            for _ in 0..100 {
                if UnixStream::connect(path).await.is_ok() {
                    say_ready();
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            return Err(std::io::Error::other(
                "another daemon holds the lock but does not listen",
            ));
        }
    };
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    tracing::info!(
        "listening on {} (pid {})",
        path.display(),
        std::process::id()
    );
    say_ready();
    let d = Arc::new(Daemon::default());
    d.touch();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            a = listener.accept() => {
                if let Ok((s, _)) = a {
                    tokio::spawn(d.clone().serve(s));
                }
            }
            _ = tick.tick() => {
                if d.reap().await {
                    break;
                }
            }
            _ = d.stop.notified() => {
                d.close_all().await;
                break;
            }
        }
    }
    let _ = std::fs::remove_file(path);
    tracing::info!("exiting");
    Ok(())
}
