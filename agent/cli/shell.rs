//! `kiln shell PATTERN -- COMMAND...`: run one command on every matched host, in parallel, and
//! print each host's output and exit status the way `ansible PATTERN -m shell -a CMD` does.
//!
//! One argument after `--` is a shell command line (`/bin/sh -c`); several are a program and its
//! arguments, run without a shell.

use super::{exit, GlobalOpts};
use crate::transport::{self, fanout, ConnSpec, ExecRequest};
use crate::value::Map;
use clap::Args;
use std::io::Write;
use std::sync::Arc;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  kiln shell all -i lab/inventory.ini -- uptime\n  kiln shell builders --become -- 'dnf -q check-update; echo $?'\n  kiln shell 'web*' -f 10 --host-key-checking accept-new -- cat /etc/os-release"
)]
pub struct ShellArgs {
    /// Host pattern: `all`, a host or group name, a glob (`web*`), or a comma list.
    pub pattern: String,
    /// How many hosts at once.
    #[arg(short = 'f', long, default_value_t = 50)]
    pub forks: usize,
    #[command(flatten)]
    pub conn: super::connopts::ConnOpts,
    /// The command.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

pub fn run(a: ShellArgs, g: &GlobalOpts) -> anyhow::Result<i32> {
    let rt = super::runtime()?;
    rt.block_on(run_async(a, g))
}

async fn run_async(a: ShellArgs, g: &GlobalOpts) -> anyhow::Result<i32> {
    let loaded = super::context::load(g, Vec::new(), Vec::new())?;
    let mut matched: Vec<(String, Map)> = Vec::new();
    for host in loaded.run.inventory.select(&a.pattern)? {
        let vars = super::context::connection_vars(&loaded, &host)?;
        matched.push((host, vars));
    }
    if matched.is_empty() {
        eprintln!("[WARNING]: no hosts matched {:?}", a.pattern);
        return Ok(exit::OK);
    }
    let opts = a.conn.transport()?;
    let mut specs = std::collections::HashMap::new();
    for (name, vars) in &matched {
        let mut s = ConnSpec::from_vars(name, vars)?;
        if let Some(u) = &a.conn.user {
            s.user = Some(u.clone());
        }
        if let Some(k) = &a.conn.private_key {
            s.key_files.insert(0, k.clone());
        }
        if a.conn.become_ && s.become_.is_none() {
            s.become_ = Some(transport::BecomeSpec::sudo(&a.conn.become_user));
        }
        specs.insert(name.clone(), s);
    }
    let req = if a.command.len() == 1 {
        ExecRequest {
            shell: Some(a.command[0].clone()),
            ..Default::default()
        }
    } else {
        ExecRequest {
            argv: a.command.clone(),
            ..Default::default()
        }
    };
    let specs = Arc::new(specs);
    let opts = Arc::new(opts);
    let names: Vec<String> = matched.iter().map(|(n, _)| n.clone()).collect();
    let stopped = std::sync::OnceLock::new();
    let out = fanout::run(
        names,
        a.forks,
        |host| {
            let (specs, opts, req) = (specs.clone(), opts.clone(), req.clone());
            async move {
                let Some(spec) = specs.get(&host) else {
                    return Outcome::Unreachable("no connection settings".into());
                };
                let outcome = match transport::connect(spec, &opts).await {
                    Ok(sess) => {
                        let r = sess.exec(req).await;
                        sess.close().await;
                        match r {
                            Ok(r) => Outcome::Done(r),
                            Err(e) if e.is_unreachable() => Outcome::Unreachable(e.to_string()),
                            Err(e) => Outcome::Failed(e.to_string()),
                        }
                    }
                    Err(e) if e.is_unreachable() => Outcome::Unreachable(e.to_string()),
                    Err(e) => Outcome::Failed(e.to_string()),
                };
                print_outcome(&host, &outcome);
                outcome
            }
        },
        async {
            let _ = stopped.set(fanout::stop_signal().await);
        },
    )
    .await;
    let mut code = exit::OK;
    for (_, r) in &out.results {
        match r {
            Some(Outcome::Unreachable(_)) => code = exit::UNREACHABLE,
            Some(Outcome::Failed(_)) if code == exit::OK => code = exit::HOST_FAILED,
            Some(Outcome::Done(r)) if r.rc != 0 && code == exit::OK => code = exit::HOST_FAILED,
            _ => {}
        }
    }
    if out.interrupted {
        let sig = stopped
            .get()
            .copied()
            .unwrap_or(nix::sys::signal::Signal::SIGINT);
        eprintln!(
            "{}; hosts that had not finished were stopped",
            exit::stopped_message(sig)
        );
        code = exit::stopped_by(sig);
    }
    Ok(code)
}

enum Outcome {
    Done(transport::ExecResult),
    Failed(String),
    Unreachable(String),
}

fn print_outcome(host: &str, o: &Outcome) {
    let stdout = std::io::stdout();
    let mut w = stdout.lock();
    let _ = match o {
        Outcome::Done(r) => {
            let status = if r.rc == 0 { "CHANGED" } else { "FAILED" };
            let mut text = r.stdout_text();
            text.push_str(&r.stderr_text());
            writeln!(
                w,
                "{host} | {status} | rc={} >>\n{}",
                r.rc,
                text.trim_end_matches('\n')
            )
        }
        Outcome::Failed(m) => writeln!(
            w,
            "{host} | FAILED! => {}",
            serde_json::json!({"changed": false, "msg": m})
        ),
        Outcome::Unreachable(m) => {
            writeln!(
                w,
                "{host} | UNREACHABLE! => {}",
                serde_json::json!({"changed": false, "msg": m, "unreachable": true})
            )
        }
    };
}
