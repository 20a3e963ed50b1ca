//! `kiln mux`: the connections kept open between runs (see `transport::mux`).
//!
//! `status` lists them, `stop` closes them all (Ansible users run `ssh -O stop` or remove
//! `~/.ansible/cp` for the same effect); `daemon` is the daemon itself, started by runs.

use super::GlobalOpts;
use crate::transport::mux;
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct MuxArgs {
    #[command(subcommand)]
    pub cmd: MuxCmd,
}

#[derive(Subcommand, Debug)]
pub enum MuxCmd {
    /// List the held connections: host, user, become user, in use or idle for how long.
    Status,
    /// Close every held connection (their agents exit) and end the daemon.
    Stop,
    /// The daemon (started by runs that persist connections).
    #[command(hide = true)]
    Daemon {
        #[arg(long)]
        socket: PathBuf,
    },
}

pub fn run(a: MuxArgs, _g: &GlobalOpts) -> anyhow::Result<i32> {
    if let MuxCmd::Daemon { socket } = &a.cmd {
        return Ok(mux::daemon_main(socket));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        match a.cmd {
            MuxCmd::Status => match mux::status().await? {
                None => println!(
                    "no connection daemon runs ({})",
                    mux::socket_path().display()
                ),
                Some((pid, held)) => {
                    println!(
                        "connection daemon pid {pid} at {}: {} connection(s)",
                        mux::socket_path().display(),
                        held.len()
                    );
                    for h in held {
                        if h.in_use {
                            println!("  {}  in use", h.label);
                        } else {
                            println!(
                                "  {}  idle {} s (closes after {} s)",
                                h.label, h.idle_secs, h.persist_secs
                            );
                        }
                    }
                }
            },
            MuxCmd::Stop => {
                if mux::stop().await? {
                    println!("closed the held connections; the daemon has exited");
                } else {
                    println!("no connection daemon runs");
                }
            }
            MuxCmd::Daemon { .. } => {}
        }
        Ok(0)
    })
}
