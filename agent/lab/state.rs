//! The lab's state file (`<dir>/state.json`): every name and PID `up` made, written before the
//! thing is made, so that `down` can remove exactly those, even after a failed or interrupted `up`.

use super::proc::ProcId;
use super::spec::HostNet;
use super::{Flavor, LabError};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

pub const STATE_FILE: &str = "state.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub name: String,
    /// Absolute lab folder.
    pub dir: PathBuf,
    pub short: String,
    pub bridge: String,
    pub bridge_alias: String,
    pub subnet: Ipv4Net,
    #[serde(default)]
    pub internal_bridge: Option<String>,
    #[serde(default)]
    pub internal_subnet: Option<Ipv4Net>,
    pub hosts: Vec<HostState>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostState {
    pub name: String,
    pub flavor: Flavor,
    pub net: HostNet,
    /// Index in the lab: fixes its addresses (.10 + idx) and veth names.
    pub idx: usize,
    pub netns: String,
    pub lab_addr: Option<Ipv4Addr>,
    pub internal_addr: Option<Ipv4Addr>,
    /// Root-side veth names.
    pub veths: Vec<String>,
    /// The `unshare` process (parent of sshd, in the root PID namespace).
    pub unshare: Option<ProcId>,
    /// sshd, PID 1 of the host's PID namespace.
    pub sshd: Option<ProcId>,
}

impl State {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(STATE_FILE)
    }

    pub fn load(dir: &Path) -> Result<Option<State>, LabError> {
        let path = Self::path(dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LabError::io(path, e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| LabError::State {
                path,
                msg: e.to_string(),
            })
    }

    /// Atomic write: temp file + rename.
    pub fn save(&self) -> Result<(), LabError> {
        let path = Self::path(&self.dir);
        let tmp = self.dir.join(".state.json.tmp");
        let text = serde_json::to_string_pretty(self).map_err(|e| LabError::State {
            path: path.clone(),
            msg: e.to_string(),
        })?;
        std::fs::write(&tmp, text + "\n").map_err(|e| LabError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| LabError::io(&path, e))
    }
}
