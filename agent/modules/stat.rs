//! `stat`: report a path's status as Ansible's `stat` dict (`exists`, `path`, `mode: '0644'`,
//! `isdir`, `isreg`, `islnk`, `uid`, `gid`, `pw_name`, `gr_name`, `size`, `mtime`, `checksum`,
//! `lnk_source`, ...). Read-only: never changed.
//!
//! The agent answers it all in one request, from syscalls and in-process digests; only the MIME
//! type takes a process on the host (`file`, when installed), and the agent remembers that per
//! file version, so a file stat'ed again costs no process at all.

use super::support::args;
use super::{Ctx, Module, ModuleError, Outcome, Query};
use crate::value::{Map, Value};
use serde::Deserialize;

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(alias = "dest", alias = "name", deserialize_with = "args::string")]
    pub path: String,
    #[serde(default, deserialize_with = "args::bool")]
    pub follow: bool,
    #[serde(
        default = "crate::modules::support::args::yes",
        deserialize_with = "args::bool",
        alias = "get_md5"
    )]
    pub get_checksum: bool,
    #[serde(
        default = "sha1",
        alias = "checksum",
        alias = "checksum_algo",
        deserialize_with = "args::string"
    )]
    pub checksum_algorithm: String,
    #[serde(
        default = "crate::modules::support::args::yes",
        alias = "mime",
        alias = "mime_type",
        alias = "mime-type",
        deserialize_with = "args::bool"
    )]
    pub get_mime: bool,
    #[serde(
        default = "crate::modules::support::args::yes",
        alias = "attr",
        alias = "attributes",
        deserialize_with = "args::bool"
    )]
    pub get_attributes: bool,
}

fn sha1() -> String {
    "sha1".into()
}

pub struct Stat;

impl Module for Stat {
    const NAMES: &'static [&'static str] = &["stat", "ansible.builtin.stat", "ansible.legacy.stat"];
    type Args = Args;
    type Plan = ();

    async fn query(&self, a: Args, ctx: &Ctx) -> Result<Query<()>, ModuleError> {
        let algo = a.checksum_algorithm.to_ascii_lowercase();
        if !["md5", "sha1", "sha224", "sha256", "sha384", "sha512"].contains(&algo.as_str()) {
            return Err(ModuleError::Args(format!(
                "value of checksum_algorithm must be one of: md5, sha1, sha224, sha256, sha384, sha512, got: {algo}"
            )));
        }
        let _ = a.get_attributes;
        let d = ctx
            .session
            .stat_detail(
                &a.path,
                a.follow,
                a.get_checksum.then(|| algo.clone()),
                a.get_mime,
            )
            .await?;
        let st = &d.base;
        let mut m = Map::new();
        if !st.exists {
            m.insert("exists".into(), Value::Bool(false));
            return Ok(Query::Done(Outcome::ok().with("stat", m)));
        }
        let k = st.kind.as_str();
        let mode = st.mode;
        let b = |bit: u32| Value::Bool(mode & bit != 0);
        m.insert("exists".into(), Value::Bool(true));
        m.insert("path".into(), Value::Str(a.path.clone()));
        m.insert("mode".into(), Value::Str(format!("{:04o}", mode & 0o7777)));
        m.insert("isdir".into(), Value::Bool(k == "directory"));
        m.insert("ischr".into(), Value::Bool(k == "char"));
        m.insert("isblk".into(), Value::Bool(k == "block"));
        m.insert("isreg".into(), Value::Bool(k == "file"));
        m.insert("isfifo".into(), Value::Bool(k == "fifo"));
        m.insert("islnk".into(), Value::Bool(k == "link"));
        m.insert("issock".into(), Value::Bool(k == "socket"));
        m.insert("uid".into(), Value::Int(st.uid.into()));
        m.insert("gid".into(), Value::Int(st.gid.into()));
        m.insert("size".into(), Value::Int(st.size as i64));
        m.insert("inode".into(), Value::Int(d.inode as i64));
        m.insert("dev".into(), Value::Int(d.dev as i64));
        m.insert("nlink".into(), Value::Int(d.nlink as i64));
        m.insert("atime".into(), Value::Float(d.atime));
        m.insert("mtime".into(), Value::Float(st.mtime));
        m.insert("ctime".into(), Value::Float(d.ctime));
        for (name, bit) in [
            ("wusr", 0o200),
            ("rusr", 0o400),
            ("xusr", 0o100),
            ("wgrp", 0o020),
            ("rgrp", 0o040),
            ("xgrp", 0o010),
            ("woth", 0o002),
            ("roth", 0o004),
            ("xoth", 0o001),
            ("isuid", 0o4000),
            ("isgid", 0o2000),
        ] {
            m.insert(name.into(), b(bit));
        }
        m.insert("blocks".into(), Value::Int(d.blocks as i64));
        m.insert("block_size".into(), Value::Int(d.block_size as i64));
        m.insert("device_type".into(), Value::Int(d.rdev as i64));
        m.insert("readable".into(), Value::Bool(d.readable));
        m.insert("writeable".into(), Value::Bool(d.writeable));
        m.insert("executable".into(), Value::Bool(d.executable));
        m.insert(
            "pw_name".into(),
            Value::Str(st.owner.clone().unwrap_or_default()),
        );
        m.insert(
            "gr_name".into(),
            Value::Str(st.group.clone().unwrap_or_default()),
        );
        if k == "link" {
            m.insert(
                "lnk_source".into(),
                Value::Str(d.realpath.clone().unwrap_or_default()),
            );
            m.insert(
                "lnk_target".into(),
                Value::Str(st.link_target.clone().unwrap_or_default()),
            );
        }
        if let Some(c) = &d.checksum {
            m.insert("checksum".into(), Value::Str(c.clone()));
        }
        if let (Some(t), Some(c)) = (&d.mimetype, &d.charset) {
            if !t.is_empty() {
                m.insert("mimetype".into(), Value::Str(t.clone()));
                m.insert("charset".into(), Value::Str(c.clone()));
            }
        }
        Ok(Query::Done(Outcome::ok().with("stat", m)))
    }

    async fn apply(&self, _: (), _: &Ctx) -> Result<Outcome, ModuleError> {
        Ok(Outcome::ok())
    }
}
