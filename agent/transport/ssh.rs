//! SSH connections with russh: TCP (or a ProxyJump chain of direct-tcpip channels), host key
//! verification, public-key authentication, and the command channels the agent runs on.
//!
//! Host keys are checked inside the handshake (`check_server_key`), so a host whose key is
//! unknown or changed is refused before authentication, let alone before any command runs.
//! `nodelay` is always on (one request/response exchange costs ~45 ms with Nagle here, ~2.5 ms
//! without) and curve25519-sha256 is the preferred key exchange (half the cost of the default).

use super::known_hosts::{self, Verdict};
use super::spec::{ConnSpec, HostKeyChecking};
use super::ssh_config;
use super::{Session, TransportError, TransportOptions};
use russh::client;
use russh::keys::{Algorithm, HashAlg, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;

/// One hop's fully resolved settings.
#[derive(Debug, Clone)]
pub struct Target {
    /// Name used in messages (inventory hostname, or the jump spec).
    pub label: String,
    pub addr: String,
    pub port: u16,
    pub user: String,
    pub key_files: Vec<PathBuf>,
    pub known_hosts: Vec<PathBuf>,
    pub checking: HostKeyChecking,
    pub connect_timeout: std::time::Duration,
}

#[derive(Debug)]
pub enum ClientError {
    Ssh(russh::Error),
    HostKey(String),
}

impl From<russh::Error> for ClientError {
    fn from(e: russh::Error) -> Self {
        ClientError::Ssh(e)
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Ssh(e) => write!(f, "{e}"),
            ClientError::HostKey(m) => f.write_str(m),
        }
    }
}

pub struct Client {
    target: Target,
}

impl client::Handler for Client {
    type Error = ClientError;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, ClientError> {
        let t = &self.target;
        let key = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key,
            PublicKeyOrCertificate::Certificate(_) => {
                return Err(ClientError::HostKey(
                    "the host presented a certificate; kiln checks plain host keys".into(),
                ))
            }
        };
        if t.checking == HostKeyChecking::Off {
            return Ok(true);
        }
        let fp = key.fingerprint(HashAlg::Sha256);
        let files = t
            .known_hosts
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        match known_hosts::check(&t.known_hosts, &t.addr, t.port, key) {
            Verdict::Known => Ok(true),
            Verdict::Changed { file, line } => Err(ClientError::HostKey(format!(
                "the {} host key of {} ({fp}) differs from the one recorded at {}:{line}; \
                 this may be a man-in-the-middle attack. If the host was reinstalled, remove that line \
                 (ssh-keygen -R '{}' -f {})",
                key.algorithm(),
                known_hosts::host_entry(&t.addr, t.port),
                file.display(),
                known_hosts::host_entry(&t.addr, t.port),
                file.display()
            ))),
            Verdict::Revoked { file, line } => Err(ClientError::HostKey(format!(
                "the host key {fp} is marked @revoked at {}:{line}",
                file.display()
            ))),
            Verdict::OtherTypes { file, line } => Err(ClientError::HostKey(format!(
                "the host offered a {} key ({fp}) but only keys of other types are recorded for it ({}:{line})",
                key.algorithm(),
                file.display()
            ))),
            Verdict::Unknown if t.checking == HostKeyChecking::AcceptNew => {
                let Some(file) = t.known_hosts.first() else {
                    return Err(ClientError::HostKey("no known_hosts file to record the new key in".into()));
                };
                known_hosts::learn(file, &t.addr, t.port, key).map_err(|e| {
                    ClientError::HostKey(format!("cannot record the new host key in {}: {e}", file.display()))
                })?;
                tracing::info!("{}: recorded new host key {fp} in {}", t.label, file.display());
                Ok(true)
            }
            Verdict::Unknown => Err(ClientError::HostKey(format!(
                "no host key for {} is recorded in {files} (the host offered {} {fp}); add it with \
                 ssh-keyscan, or run with --host-key-checking accept-new",
                known_hosts::host_entry(&t.addr, t.port),
                key.algorithm()
            ))),
        }
    }
}

pub type Handle = client::Handle<Client>;

fn default_user() -> String {
    std::env::var("USER")
        .ok()
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|u| u.name)
        })
        .unwrap_or_else(|| "root".into())
}

/// The user's home directory (`$HOME`), where `~/.ssh` is.
pub fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// Resolve the target and its jump hosts from the spec, ssh_config and the run's options.
pub fn resolve(
    spec: &ConnSpec,
    opts: &TransportOptions,
) -> Result<(Target, Vec<Target>), TransportError> {
    // ssh refuses such settings (exit 255), which Ansible reports as UNREACHABLE (exit 4, as
    // ansible-core 2.17 does): the same here, with the file and line kiln's reader names
    let cfg_err = |msg: String| TransportError::Unreachable {
        host: spec.host.clone(),
        msg: format!("the ssh configuration cannot be used: {msg}"),
    };
    let read_default = opts.read_user_ssh_config;
    let hc = ssh_config::lookup(spec.ssh_config.as_deref(), read_default, &spec.addr)
        .map_err(|e| cfg_err(e.to_string()))?;
    let mut known = if spec.known_hosts.is_empty() {
        hc.known_hosts.clone()
    } else {
        spec.known_hosts.clone()
    };
    if known.is_empty() {
        known.push(home().join(".ssh/known_hosts"));
    }
    let checking = opts
        .host_key_checking
        .or(spec.host_key_checking)
        .or(hc.strict)
        .unwrap_or_default();
    let timeout = spec
        .connect_timeout
        .or(hc.connect_timeout)
        .unwrap_or(opts.connect_timeout);
    let mut keys = spec.key_files.clone();
    keys.extend(hc.identity_files.iter().cloned());
    let target = Target {
        label: spec.host.clone(),
        addr: hc.host_name.clone().unwrap_or_else(|| spec.addr.clone()),
        port: spec.port.or(hc.port).unwrap_or(22),
        user: spec
            .user
            .clone()
            .or(hc.user.clone())
            .unwrap_or_else(default_user),
        key_files: keys.clone(),
        known_hosts: known.clone(),
        checking,
        connect_timeout: timeout,
    };
    let mut jumps = Vec::new();
    if let Some(chain) = spec.proxy_jump.clone().or(hc.proxy_jump.clone()) {
        for hop in chain.split(',').map(str::trim).filter(|h| !h.is_empty()) {
            let (user, rest) = match hop.rsplit_once('@') {
                Some((u, r)) => (Some(u.to_string()), r),
                None => (None, hop),
            };
            let (host, port) = match rest.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (
                    h.to_string(),
                    Some(
                        p.parse::<u16>()
                            .map_err(|_| cfg_err(format!("ProxyJump {hop}: bad port")))?,
                    ),
                ),
                _ => (
                    rest.trim_matches(|c| c == '[' || c == ']').to_string(),
                    None,
                ),
            };
            let jc = ssh_config::lookup(spec.ssh_config.as_deref(), read_default, &host)
                .map_err(|e| cfg_err(e.to_string()))?;
            let mut jkeys = jc.identity_files.clone();
            jkeys.extend(keys.iter().cloned());
            jumps.push(Target {
                label: format!("{} (via jump host {hop})", spec.host),
                addr: jc.host_name.clone().unwrap_or(host),
                port: port.or(jc.port).unwrap_or(22),
                user: user.or(jc.user.clone()).unwrap_or_else(default_user),
                key_files: jkeys,
                known_hosts: known.clone(),
                checking,
                connect_timeout: timeout,
            });
        }
    }
    Ok((target, jumps))
}

fn client_config(t: &Target, opts: &TransportOptions) -> Arc<client::Config> {
    // ask for a host key type we can verify first, as OpenSSH does
    let mut keys: Vec<Algorithm> = Vec::new();
    for a in known_hosts::recorded_algorithms(&t.known_hosts, &t.addr, t.port) {
        if let Algorithm::Rsa { .. } = a {
            keys.push(Algorithm::Rsa {
                hash: Some(HashAlg::Sha512),
            });
            keys.push(Algorithm::Rsa {
                hash: Some(HashAlg::Sha256),
            });
        } else {
            keys.push(a);
        }
    }
    for a in russh::Preferred::DEFAULT.key.iter() {
        if !keys.contains(a) {
            keys.push(a.clone());
        }
    }
    Arc::new(client::Config {
        nodelay: true,
        keepalive_interval: opts.keepalive,
        keepalive_max: 3,
        inactivity_timeout: None,
        preferred: russh::Preferred {
            kex: Cow::Owned(vec![
                russh::kex::CURVE25519,
                russh::kex::CURVE25519_PRE_RFC_8731,
                russh::kex::MLKEM768X25519_SHA256,
                russh::kex::DH_GEX_SHA256,
                russh::kex::DH_G16_SHA512,
                russh::kex::DH_G14_SHA256,
                russh::kex::EXTENSION_SUPPORT_AS_CLIENT,
                russh::kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
            ]),
            key: Cow::Owned(keys),
            ..Default::default()
        },
        ..Default::default()
    })
}

fn handshake_error(t: &Target, host: &str, e: ClientError) -> TransportError {
    match e {
        ClientError::HostKey(msg) => TransportError::HostKeyMismatch {
            host: host.into(),
            msg,
        },
        ClientError::Ssh(e) => TransportError::Unreachable {
            host: host.into(),
            msg: format!("SSH handshake with {}:{} failed: {e}", t.addr, t.port),
        },
    }
}

/// Open the SSH connection to one hop (directly, or through the previous hop) and authenticate.
async fn connect_hop(
    host: &str,
    t: &Target,
    via: Option<&Handle>,
    opts: &TransportOptions,
) -> Result<Handle, TransportError> {
    let config = client_config(t, opts);
    let handler = Client { target: t.clone() };
    let unreachable = |msg: String| TransportError::Unreachable {
        host: host.into(),
        msg,
    };
    let fut = async {
        match via {
            None => {
                let sock = tokio::net::TcpStream::connect((t.addr.as_str(), t.port))
                    .await
                    .map_err(|e| {
                        unreachable(format!("cannot connect to {}:{}: {e}", t.addr, t.port))
                    })?;
                let _ = sock.set_nodelay(true);
                client::connect_stream(config, sock, handler)
                    .await
                    .map_err(|e| handshake_error(t, host, e))
            }
            Some(jump) => {
                let ch = jump
                    .channel_open_direct_tcpip(t.addr.clone(), t.port as u32, "127.0.0.1", 0)
                    .await
                    .map_err(|e| {
                        unreachable(format!("jump host cannot reach {}:{}: {e}", t.addr, t.port))
                    })?;
                client::connect_stream(config, ch.into_stream(), handler)
                    .await
                    .map_err(|e| handshake_error(t, host, e))
            }
        }
    };
    let mut handle = tokio::time::timeout(t.connect_timeout, fut)
        .await
        .map_err(|_| {
            unreachable(format!(
                "timed out after {:?} connecting to {}:{}",
                t.connect_timeout, t.addr, t.port
            ))
        })??;
    authenticate(host, t, &mut handle, opts).await?;
    Ok(handle)
}

async fn authenticate(
    host: &str,
    t: &Target,
    h: &mut Handle,
    opts: &TransportOptions,
) -> Result<(), TransportError> {
    let mut tried: Vec<String> = Vec::new();
    let lost = |e: russh::Error| TransportError::Unreachable {
        host: host.into(),
        msg: format!("connection lost during authentication: {e}"),
    };
    let rsa_hash = h.best_supported_rsa_hash().await.map_err(lost)?.flatten();
    let mut files = t.key_files.clone();
    let explicit = !files.is_empty();
    if !explicit {
        for n in ["id_ed25519", "id_ecdsa", "id_rsa"] {
            files.push(home().join(".ssh").join(n));
        }
    }
    let passphrase = opts
        .key_passphrase
        .as_ref()
        .and_then(|s| s.expose().as_str().map(str::to_string));
    for f in files.into_iter().filter(|f| explicit || f.exists()) {
        let key = match russh::keys::load_secret_key(&f, passphrase.as_deref()) {
            Ok(k) => k,
            Err(russh::keys::Error::KeyIsEncrypted) => {
                tried.push(format!(
                    "{} (encrypted; give its passphrase with KILN_SSH_KEY_PASSPHRASE)",
                    f.display()
                ));
                continue;
            }
            Err(e) => {
                tried.push(format!("{} (cannot load: {e})", f.display()));
                continue;
            }
        };
        let hash = if matches!(key.algorithm(), Algorithm::Rsa { .. }) {
            rsa_hash
        } else {
            None
        };
        let r = h
            .authenticate_publickey(
                t.user.clone(),
                PrivateKeyWithHashAlg::new(Arc::new(key), hash),
            )
            .await
            .map_err(lost)?;
        if r.success() {
            return Ok(());
        }
        tried.push(f.display().to_string());
    }
    if opts.use_ssh_agent && std::env::var_os("SSH_AUTH_SOCK").is_some() {
        match russh::keys::agent::client::AgentClient::connect_env().await {
            Ok(mut agent) => {
                let ids = agent.request_identities().await.unwrap_or_default();
                for id in ids {
                    let pk = id.public_key().into_owned();
                    let hash = if matches!(pk.algorithm(), Algorithm::Rsa { .. }) {
                        rsa_hash
                    } else {
                        None
                    };
                    match h
                        .authenticate_publickey_with(t.user.clone(), pk.clone(), hash, &mut agent)
                        .await
                    {
                        Ok(r) if r.success() => return Ok(()),
                        Ok(_) => {
                            tried.push(format!("ssh-agent key {}", pk.fingerprint(HashAlg::Sha256)))
                        }
                        Err(e) => tried.push(format!(
                            "ssh-agent key {} ({e})",
                            pk.fingerprint(HashAlg::Sha256)
                        )),
                    }
                }
            }
            Err(e) => tried.push(format!("ssh-agent ({e})")),
        }
    }
    Err(TransportError::AuthFailed {
        host: host.into(),
        msg: format!(
            "{}@{}:{} refused every key tried: [{}]; set ansible_ssh_private_key_file or load the key into ssh-agent",
            t.user,
            t.addr,
            t.port,
            tried.join(", ")
        ),
    })
}

/// A connected, authenticated SSH connection and the jump connections it rides on.
pub struct Connected {
    pub handle: Handle,
    pub jumps: Vec<Handle>,
    pub target: Target,
}

impl Connected {
    pub async fn disconnect(self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
        for j in self.jumps.into_iter().rev() {
            let _ = j
                .disconnect(russh::Disconnect::ByApplication, "", "en")
                .await;
        }
    }
}

/// Open the SSH connection (through any jump hosts) and authenticate; no command runs yet.
pub async fn open(spec: &ConnSpec, opts: &TransportOptions) -> Result<Connected, TransportError> {
    let (target, jump_targets) = resolve(spec, opts)?;
    let mut jumps: Vec<Handle> = Vec::new();
    for j in &jump_targets {
        let h = connect_hop(&spec.host, j, jumps.last(), opts).await?;
        jumps.push(h);
    }
    let handle = connect_hop(&spec.host, &target, jumps.last(), opts).await?;
    Ok(Connected {
        handle,
        jumps,
        target,
    })
}

/// Connect directly (no connection daemon), make sure the agent is on the host, and start it.
pub async fn connect(spec: &ConnSpec, opts: &TransportOptions) -> Result<Session, TransportError> {
    // hash the agent binary while the handshake runs
    super::upload::prefetch(opts);
    let conn = open(spec, opts).await?;
    super::upload::start_agent(spec, conn, opts).await
}
