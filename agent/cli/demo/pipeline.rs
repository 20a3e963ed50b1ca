//! The image half of `kiln lab demo`: issue 16's mission on the lab environment.
//!
//! 1. The vault: `environments/lab/secrets.yml.age` holds the Pulp and registry credentials. The
//!    first run makes it (random passwords, encrypted to the control host's age identity that
//!    `control host bootstrap` made); every run reads it back through kiln's keyring, as any verb
//!    does.
//! 2. This machine's services for the lab, on its lab-bridge address (reachable from the lab
//!    hosts and from here): a fake Pulp (nginx with HTTP basic auth over a small file tree, its
//!    access log naming the user of each request) and a registry (Debian's docker-registry with
//!    htpasswd auth, data in the lab folder). They keep running after the demo, recorded in the
//!    lab folder (`lab::services`), and `kiln lab down` stops them. Ports and names come from the
//!    environment (`pulp.yml`, `kolla.yml`).
//! 3. `playbook run pulp-auth-proxy.yml -l lab-builder`: the Pulp auth proxy with the vault's
//!    credentials, as a podman container on the builder.
//! 4. `seed container image build --push --update-tags -l lab-builder`: the real kolla-build
//!    (`--engine podman`, through a `podman system service` the demo runs for the duration) over
//!    the environment's image tree, whose Dockerfiles fetch from the mirror through the proxy;
//!    then kiln's publish step: push with the vault's registry credentials, digests from the
//!    registry, the credential check of the pushed layers read back from the registry, the build
//!    record, kolla-image-tags.yml. Skipped when a build record exists, unless `--rebuild`.
//! 5. The tag, the image → digest table, the record's path and the kolla-image-tags.yml diff.
//!
//! Where the images are built: on this machine (`lab-builder`, `ansible_connection=local`), not
//! in a lab host. A lab host is a network namespace whose root is an overlay over this machine's
//! `/`: podman there needs vfs storage (every layer a full copy), a cgroup mount and a
//! `podman system service` kept alive without systemd, and a lab host has no route to PyPI for
//! Kayobe's kolla role. This machine runs podman with runc as the ci-builder procedure does on
//! its builder, has kolla in `.venv-kolla` (tests/setup), and keeps the build within the demo's
//! time budget. The lab hosts still see the build's services: the fake Pulp and the registry
//! listen on the lab bridge.

use super::super::image_build::{
    self, BuildArgs, ContainerArgs, ContainerCmd, ImageArgs, ImageCmd,
};
use super::super::playbook::{resolve_playbook, run_playbooks, Mode, RunOpts, Verb};
use super::super::{context, exit, GlobalOpts};
use crate::build::record;
use crate::lab::{services, Lab};
use crate::value::Value;
use anyhow::{anyhow, bail, Context as _};
use clap::Parser;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The builder host of `environments/lab/inventory/hosts`.
const BUILDER: &str = "lab-builder";
/// The base image the lab's image tree starts from (`kolla/images/base/Dockerfile.j2`), shared
/// with tests/kolla_build_diff.rs: imported from a busybox-static tree cached as a tarball.
const BASE_IMAGE: &str = "localhost/kb-busybox:latest";
const BASE_TARBALL: &str = "/var/cache/kiln-lab/kb-busybox-rootfs.tar";
/// The stand-in for the proxy's nginx image (environments/lab/files/nginx-stand-in.sh), cached.
const NGINX_TARBALL: &str = "/var/cache/kiln-lab/pp-nginx-stable-alpine-stand-in.tar";

#[derive(Parser)]
struct PlayDefaults {
    #[command(flatten)]
    run: RunOpts,
}

#[derive(Parser)]
struct BuildDefaults {
    #[command(flatten)]
    build: BuildArgs,
}

/// The environment's values the demo's own steps need, templated for the builder.
struct Settings {
    gateway: String,
    pulp_port: u16,
    registry_port: u16,
    pulp_user: String,
    pulp_password: String,
    registry_user: String,
    registry_password: String,
    base_path: PathBuf,
    proxy_image: String,
    proxy_container: String,
    kolla_venv: PathBuf,
    tags_file: PathBuf,
}

pub fn run(g: &GlobalOpts, lab: &Lab, config: &Path, rebuild: bool) -> anyhow::Result<i32> {
    let env_dir = config.join("environments").join("lab");
    println!("\n== the image pipeline (issue 16): fake Pulp → Pulp auth proxy → kolla-build → push → record → kolla-image-tags.yml\n");
    ensure_vault(&env_dir)?;
    let s = settings(g)?;
    let builder = &s.base_path;
    // kolla-build writes its per-image logs there but does not make the folder
    // (kolla/kolla-build.conf: logs_dir)
    std::fs::create_dir_all(builder.join("kolla-logs"))
        .with_context(|| format!("creating {}", builder.display()))?;

    // podman on this machine: runc and the rlimits this machine allows (LAB.md), the lab's
    // registry as insecure (plain HTTP), for the engine modules and kolla-build alike.
    let conf = builder.join("containers.conf");
    std::fs::write(
        &conf,
        "[engine]\nruntime = \"runc\"\n[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=4096:4096\"]\n",
    )?;
    let regconf = builder.join("registries.conf");
    std::fs::write(
        &regconf,
        format!(
            "[[registry]]\nlocation = \"{}:{}\"\ninsecure = true\n",
            s.gateway, s.registry_port
        ),
    )?;
    std::env::set_var("CONTAINERS_CONF", &conf);
    std::env::set_var("CONTAINERS_REGISTRIES_CONF", &regconf);

    let t = Instant::now();
    images(&env_dir, &s)?;
    let pulp_dir = services::dir(&lab.dir).join("pulp");
    upstream(lab, &env_dir, &pulp_dir, &s)?;
    registry(lab, &services::dir(&lab.dir).join("registry"), &s)?;
    println!(
        "fake Pulp:  http://{}:{}/pulp/content/ (nginx, basic auth as {}; access log {})",
        s.gateway,
        s.pulp_port,
        s.pulp_user,
        pulp_dir.join("access.log").display()
    );
    println!(
        "registry:   {}:{} (docker-registry, htpasswd auth as {}, plain HTTP)",
        s.gateway, s.registry_port, s.registry_user
    );
    println!("(services ready in {:.1} s)", t.elapsed().as_secs_f64());

    // The Pulp auth proxy.
    println!("\n== kiln --environment lab playbook run pulp-auth-proxy.yml -l {BUILDER}\n");
    let run = PlayDefaults::try_parse_from(["kiln", "--diff", "-l", BUILDER])?.run;
    let code = run_playbooks(
        g,
        &run,
        &[shipped("pulp-auth-proxy.yml")],
        &Verb::new(&["playbook", "run"]),
        Vec::new(),
        Mode::Run,
    )?;
    services::record_container(&lab.dir, &s.proxy_container, Some(&conf))?;
    if code != exit::OK {
        println!("\n(the Pulp auth proxy was not deployed: not building)");
        return Ok(code);
    }

    // The build, unless one was recorded and no rebuild was asked for.
    let records = record::records_dir(config);
    let earlier = record::latest(&records).ok();
    let tags_before = std::fs::read_to_string(&s.tags_file).unwrap_or_default();
    let log_before = std::fs::read_to_string(pulp_dir.join("access.log"))
        .unwrap_or_default()
        .lines()
        .count();
    let built = if earlier.is_some() && !rebuild {
        println!(
            "\n== not building: a build was recorded already (`kiln lab demo --rebuild` builds and pushes again)"
        );
        None
    } else {
        let mut argv = vec!["kiln", "--push", "--update-tags", "-l", BUILDER];
        let found = s.kolla_venv.join("bin/kolla-build").is_file();
        if !found {
            // Kayobe's kolla role (the `install` tag) would install it, but it fetches kolla's
            // upper constraints from opendev.org, which a lab machine may not reach
            bail!(
                "kolla is not installed in {} (kolla_venv: KILN_KOLLA_VENV, else ./.venv-kolla): run tests/setup (it installs kolla 18.8.0 there), or set KILN_KOLLA_VENV to a venv holding kolla-build",
                s.kolla_venv.display()
            );
        }
        argv.extend(["--skip-tags", "install"]);
        println!(
            "\n== kiln --environment lab seed container image build {}\n",
            argv[1..].join(" ")
        );
        println!(
            "kolla: found in {} (kolla_venv), so the kolla role's install tag is skipped\n",
            s.kolla_venv.display()
        );
        let podman = PodmanService::start(&builder.join("podman.sock"))?;
        let build = BuildDefaults::try_parse_from(argv)?.build;
        let t = Instant::now();
        let code = image_build::run(
            "seed",
            ContainerArgs {
                cmd: ContainerCmd::Image(ImageArgs {
                    cmd: ImageCmd::Build(build),
                }),
            },
            g,
        )?;
        drop(podman);
        let secs = t.elapsed().as_secs_f64();
        if exit::is_stopped(code) {
            return Ok(code);
        }
        if code != exit::OK {
            println!(
                "\n(the build or the push failed, see above; the build record says which image)"
            );
            if let Ok(l) = record::latest(&records) {
                if earlier.as_ref().map(|e| &e.path) != Some(&l.path) {
                    println!("record: {}", l.path.display());
                }
            }
            return Ok(code);
        }
        Some(secs)
    };

    // What the run made.
    let latest = record::latest(&records)
        .map_err(|e| anyhow!("no build record in {}: {e}", records.display()))?;
    let rec = record::BuildRecord::read(&latest.path)?;
    println!("\n== the build\n");
    if let Some(secs) = built {
        println!("built and pushed in {secs:.0} s");
    }
    println!("tag:    {}", rec.tag);
    println!("record: {}", latest.path.display());
    print!("{}", rec.render(None));
    let log = std::fs::read_to_string(pulp_dir.join("access.log")).unwrap_or_default();
    let through: Vec<&str> = log
        .lines()
        .skip(log_before)
        .filter(|l| l.starts_with(&format!("{} ", s.pulp_user)) && l.ends_with(" 200"))
        .collect();
    if built.is_some() {
        println!(
            "\nthe fake Pulp served {} request(s) of this build through the proxy, authenticated as {} (the images hold neither the credentials nor the Pulp URL):",
            through.len(),
            s.pulp_user
        );
        for l in through.iter().filter(|l| l.contains("/pulp/content/")) {
            println!("  {l}");
        }
    }
    let tags_after = std::fs::read_to_string(&s.tags_file).unwrap_or_default();
    println!("\n{}:", s.tags_file.display());
    if tags_after == tags_before {
        println!("  (unchanged by this run)");
    } else {
        let diff = similar::TextDiff::from_lines(&tags_before, &tags_after);
        print!(
            "{}",
            diff.unified_diff().context_radius(2).header(
                "kolla-image-tags.yml (before)",
                "kolla-image-tags.yml (after)"
            )
        );
    }
    Ok(exit::OK)
}

fn shipped(name: &str) -> PathBuf {
    let p = resolve_playbook(&PathBuf::from(name));
    std::path::absolute(&p).unwrap_or(p)
}

/// The lab environment's vault: made on the first run with random credentials, encrypted to
/// the control host's age identity.
fn ensure_vault(env_dir: &Path) -> anyhow::Result<()> {
    use crate::vault::age_files::{encrypt, Recipient, Recipients};
    let vault = env_dir.join("secrets.yml.age");
    if vault.exists() {
        println!("vault: {} (Pulp and registry credentials)", vault.display());
        return Ok(());
    }
    let id_path = context::default_identity_path()
        .ok_or_else(|| anyhow!("no HOME: cannot find the age identity"))?;
    let text = std::fs::read_to_string(&id_path).with_context(|| {
        format!(
            "reading the age identity {} (`kiln control host bootstrap` makes it)",
            id_path.display()
        )
    })?;
    let secret = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .ok_or_else(|| anyhow!("{}: no AGE-SECRET-KEY line", id_path.display()))?;
    let id: age::x25519::Identity = secret
        .parse()
        .map_err(|e| anyhow!("{}: {e}", id_path.display()))?;
    let public = id.to_public().to_string();
    let recipient = Recipient::parse(&public).map_err(|e| anyhow!(e))?;
    let plain = format!(
        "---\n# The lab environment's secrets (made by `kiln lab demo`; `kiln vault edit` changes them).\n\
         stackhpc_repo_mirror_username: kiln-lab-pulp\n\
         stackhpc_repo_mirror_password: \"{}\"\n\
         kolla_docker_registry_username: kiln-lab-push\n\
         kolla_docker_registry_password: \"{}\"\n",
        random_text()?,
        random_text()?
    );
    let bytes = encrypt(plain.as_bytes(), &Recipients::Keys(vec![recipient]), true)
        .map_err(|e| anyhow!("encrypting {}: {e}", vault.display()))?;
    crate::vault::write::write_atomic(
        &env_dir.join(crate::vault::recipients::RECIPIENTS_FILE),
        format!(
            "# the control host's age identity ({})\n{public}\n",
            id_path.display()
        )
        .as_bytes(),
        Some(0o644),
    )?;
    crate::vault::write::write_atomic(&vault, &bytes, Some(0o600))?;
    println!(
        "vault: created {} with random Pulp and registry credentials, encrypted to {public} ({})",
        vault.display(),
        id_path.display()
    );
    Ok(())
}

fn random_text() -> anyhow::Result<String> {
    let mut b = [0u8; 18];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .context("reading /dev/urandom")?;
    Ok(hex::encode(b))
}

fn settings(g: &GlobalOpts) -> anyhow::Result<Settings> {
    let loaded = context::load(g, Vec::new(), Vec::new())?;
    let scope: Arc<dyn crate::template::VarSource> = Arc::new(loaded.run.host_scope(BUILDER)?);
    let get = |name: &str| -> anyhow::Result<String> {
        let v = loaded
            .templar
            .template(
                &scope,
                &Value::Str(format!("{{{{ {name} }}}}")),
                "kiln lab demo",
            )
            .map_err(|e| anyhow!("{name} (environments/lab, for {BUILDER}): {e}"))?;
        Ok(crate::template::py_str_value(&v))
    };
    let port = |name: &str| -> anyhow::Result<u16> {
        get(name)?
            .parse()
            .map_err(|e| anyhow!("{name} (environments/lab): not a port: {e}"))
    };
    Ok(Settings {
        gateway: get("kiln_lab_gateway")?,
        pulp_port: port("kiln_lab_pulp_port")?,
        registry_port: port("kiln_lab_registry_port")?,
        pulp_user: get("stackhpc_repo_mirror_username")?,
        pulp_password: get("stackhpc_repo_mirror_password")?,
        registry_user: get("kolla_docker_registry_username")?,
        registry_password: get("kolla_docker_registry_password")?,
        base_path: std::path::absolute(get("base_path")?)?,
        proxy_image: get("pulp_auth_proxy_image")?,
        proxy_container: get("pulp_auth_proxy_container_name")?,
        kolla_venv: std::path::absolute(get("kolla_venv")?)?,
        tags_file: PathBuf::from(get("kiln_image_tags_file")?),
    })
}

fn sh(script: &str, args: &[&str]) -> anyhow::Result<String> {
    let o = Command::new("sh")
        .arg("-ec")
        .arg(script)
        .arg("sh")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running sh")?;
    if !o.status.success() {
        bail!(
            "{}: {}",
            script.lines().next().unwrap_or(""),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// The base image of the lab's image tree and the proxy's nginx stand-in, imported into this
/// machine's podman once (from tarballs cached in /var/cache/kiln-lab, shared with the tests).
fn images(env_dir: &Path, s: &Settings) -> anyhow::Result<()> {
    sh(
        "mkdir -p /var/cache/kiln-lab
        if [ ! -f \"$1\" ]; then
          d=$(mktemp -d); mkdir -p $d/bin $d/etc $d/tmp; cp /bin/busybox $d/bin/busybox
          for a in sh echo cat true false ls mkdir touch sleep; do ln -sf busybox $d/bin/$a; done
          echo 'root:x:0:0:root:/root:/bin/sh' > $d/etc/passwd; echo 'root:x:0:' > $d/etc/group
          tar -C $d -cf \"$1.tmp\" . && rm -rf $d && mv \"$1.tmp\" \"$1\"
        fi
        podman image exists \"$2\" || podman import -q \"$1\" \"$2\" >/dev/null",
        &[BASE_TARBALL, BASE_IMAGE],
    )
    .context("the base image (busybox-static: tests/setup installs it)")?;
    let script = env_dir.join("files/nginx-stand-in.sh");
    sh(
        "[ -f \"$1\" ] || sh \"$3\" \"$1\"
        podman image exists \"$2\" || podman import -q --change 'CMD [\"/usr/sbin/nginx\",\"-g\",\"daemon off;\"]' \"$1\" \"$2\" >/dev/null",
        &[NGINX_TARBALL, &s.proxy_image, &script.display().to_string()],
    )
    .context("the proxy's nginx image")?;
    Ok(())
}

/// An htpasswd file (bcrypt), the password given to htpasswd on its standard input.
fn htpasswd(path: &Path, user: &str, password: &str) -> anyhow::Result<()> {
    let mut c = Command::new("htpasswd")
        .args(["-c", "-i", "-B"])
        .arg(path)
        .arg(user)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running htpasswd (apache2-utils)")?;
    c.stdin
        .take()
        .ok_or_else(|| anyhow!("htpasswd: no stdin"))?
        .write_all(password.as_bytes())?;
    let o = c.wait_with_output()?;
    if !o.status.success() {
        bail!("htpasswd: {}", String::from_utf8_lossy(&o.stderr).trim());
    }
    Ok(())
}

fn wait_port(addr: &str, port: u16, what: &str, log: &Path) -> anyhow::Result<()> {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if std::net::TcpStream::connect((addr, port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!(
        "{what} did not start listening on {addr}:{port}: {}",
        std::fs::read_to_string(log).unwrap_or_default().trim()
    )
}

/// Start a lab service detached from the demo (its own process group, so a Ctrl-C of the demo
/// leaves it), recorded for `kiln lab down`.
fn spawn(lab: &Lab, name: &str, c: &mut Command, log: &Path) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let out = std::fs::File::create(log)?;
    let child = c
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    services::record_pid(&lab.dir, name, child.id())?;
    Ok(())
}

/// The fake Pulp: nginx with basic auth over the environment's `files/pulp-content` tree (and
/// Pulp's status URL, for the proxy's health check), logging `$remote_user $request_uri $status`.
fn upstream(lab: &Lab, env_dir: &Path, d: &Path, s: &Settings) -> anyhow::Result<()> {
    let www = d.join("www");
    std::fs::create_dir_all(www.join("pulp/api/v3/status"))?;
    std::fs::create_dir_all(d.join("tmp"))?;
    std::fs::write(
        www.join("pulp/api/v3/status/index.json"),
        "{\"versions\": [{\"component\": \"core\", \"version\": \"3.49.0\"}], \"online_workers\": []}\n",
    )?;
    // the content: the environment's files/pulp-content tree, served under /pulp/content/
    super::copy_tree(
        &env_dir.join("files/pulp-content"),
        &www.join("pulp/content"),
    )?;
    htpasswd(&d.join("htpasswd"), &s.pulp_user, &s.pulp_password)?;
    if services::running(&lab.dir, "pulp") {
        return Ok(());
    }
    std::fs::write(
        d.join("nginx.conf"),
        format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  log_format pulp '$remote_user $request_uri $status';\n\
               access_log {d}/access.log pulp;\n\
               client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp;\n\
               uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;\n\
               server {{\n    listen {addr}:{port};\n    root {d}/www;\n\
                 auth_basic \"pulp\";\n    auth_basic_user_file {d}/htpasswd;\n\
                 location = /pulp/api/v3/status/ {{ default_type application/json; try_files /pulp/api/v3/status/index.json =404; }}\n\
               }}\n}}\n",
            d = d.display(),
            addr = s.gateway,
            port = s.pulp_port
        ),
    )?;
    let log = d.join("nginx.out");
    spawn(
        lab,
        "pulp",
        Command::new("nginx")
            .arg("-c")
            .arg(d.join("nginx.conf"))
            .arg("-p")
            .arg(d),
        &log,
    )?;
    wait_port(
        &s.gateway,
        s.pulp_port,
        "the fake Pulp (nginx)",
        &d.join("error.log"),
    )
}

/// The registry: Debian's docker-registry with htpasswd auth, its data in the lab folder.
fn registry(lab: &Lab, d: &Path, s: &Settings) -> anyhow::Result<()> {
    std::fs::create_dir_all(d.join("data"))?;
    if services::running(&lab.dir, "registry") {
        return Ok(());
    }
    htpasswd(&d.join("htpasswd"), &s.registry_user, &s.registry_password)?;
    std::fs::write(
        d.join("config.yml"),
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {data}\n\
             http:\n  addr: {addr}:{port}\nauth:\n  htpasswd:\n    realm: kiln-lab\n    path: {pw}\n",
            data = d.join("data").display(),
            addr = s.gateway,
            port = s.registry_port,
            pw = d.join("htpasswd").display()
        ),
    )?;
    let log = d.join("registry.log");
    spawn(
        lab,
        "registry",
        Command::new("docker-registry")
            .arg("serve")
            .arg(d.join("config.yml")),
        &log,
    )?;
    wait_port(
        &s.gateway,
        s.registry_port,
        "the registry (docker-registry)",
        &log,
    )
}

/// `podman system service` on a unix socket for kolla-build, for the build's duration.
struct PodmanService(Child);

impl PodmanService {
    fn start(sock: &Path) -> anyhow::Result<PodmanService> {
        let _ = std::fs::remove_file(sock);
        let child = Command::new("podman")
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", sock.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting podman system service")?;
        let svc = PodmanService(child);
        let end = Instant::now() + Duration::from_secs(10);
        while !sock.exists() {
            if Instant::now() > end {
                bail!("podman system service did not make {}", sock.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(svc)
    }
}

impl Drop for PodmanService {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
