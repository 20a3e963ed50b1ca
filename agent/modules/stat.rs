//! `stat`: report a path's status as Ansible's `stat` dict (`exists`, `path`, `mode: '0644'`,
//! `isdir`, `isreg`, `islnk`, `uid`, `gid`, `pw_name`, `gr_name`, `size`, `mtime`, `checksum`,
//! `lnk_source`, ...). Read-only: never changed.
//!
//! The agent's stat gives the core fields; one `sh` exec on the host adds what it does not carry
//! (inode, device, links, atime/ctime, access checks for the agent's user, the checksum with the
//! requested algorithm, the MIME type when `file` is installed).

use super::args;
use super::fileattrs::mode_str;
use super::{Ctx, Module, ModuleError, Outcome, Query};
use crate::transport::ExecRequest;
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
        default = "crate::modules::args::yes",
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
        default = "crate::modules::args::yes",
        alias = "mime",
        alias = "mime_type",
        alias = "mime-type",
        deserialize_with = "args::bool"
    )]
    pub get_mime: bool,
    #[serde(
        default = "crate::modules::args::yes",
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

// Four execs (sh, stat, the checksum tool, file), as few as the fields allow: `file` answers
// type and encoding in one run (as Ansible's stat asks it), `readlink -f` runs only for links, and
// the checksum is cut out of sha1sum's line by the shell rather than by another process.
const SCRIPT: &str = r#"p=$1; L=$2; algo=$3; mime=$4
stat $L -c '%i %d %h %.9X %.9Z %b %B %t %T' -- "$p" || exit 1
[ -r "$p" ] && echo 1 || echo 0
[ -w "$p" ] && echo 1 || echo 0
[ -x "$p" ] && echo 1 || echo 0
if [ -L "$p" ]; then readlink -f -- "$p" 2>/dev/null || echo; else echo; fi
if [ -n "$algo" ] && [ -f "$p" ] && [ -r "$p" ]; then s=$("${algo}sum" -- "$p"); s=${s#\\}; echo "${s%% *}"; else echo; fi
if [ "$mime" = 1 ] && command -v file >/dev/null 2>&1; then m=$(file -b $L --mime -- "$p"); echo "${m%%;*}"; c=${m#*charset=}; [ "$c" = "$m" ] && c=; echo "$c"; else echo; echo; fi
"#;

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
        let st = ctx.session.stat(&a.path, a.follow, false).await?;
        let mut m = Map::new();
        if !st.exists {
            m.insert("exists".into(), Value::Bool(false));
            return Ok(Query::Done(Outcome::ok().with("stat", m)));
        }
        let r = ctx
            .session
            .exec(ExecRequest {
                argv: vec![
                    "sh".into(),
                    "-c".into(),
                    SCRIPT.into(),
                    "sh".into(),
                    a.path.clone(),
                    if a.follow { "-L" } else { "" }.into(),
                    if a.get_checksum {
                        algo.clone()
                    } else {
                        String::new()
                    },
                    if a.get_mime { "1" } else { "0" }.into(),
                ],
                ..Default::default()
            })
            .await?;
        let text = r.stdout_text();
        let lines: Vec<&str> = text.split('\n').collect();
        let get = |i: usize| lines.get(i).copied().unwrap_or("");
        let f: Vec<&str> = get(0).split(' ').collect();
        let num = |i: usize| f.get(i).and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
        let flt = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
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
        m.insert("inode".into(), Value::Int(num(0)));
        m.insert("dev".into(), Value::Int(num(1)));
        m.insert("nlink".into(), Value::Int(num(2)));
        m.insert("atime".into(), Value::Float(flt(3)));
        m.insert("mtime".into(), Value::Float(st.mtime));
        m.insert("ctime".into(), Value::Float(flt(4)));
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
        m.insert("blocks".into(), Value::Int(num(5)));
        m.insert("block_size".into(), Value::Int(num(6)));
        let major = i64::from_str_radix(f.get(7).copied().unwrap_or("0"), 16).unwrap_or(0);
        let minor = i64::from_str_radix(f.get(8).copied().unwrap_or("0"), 16).unwrap_or(0);
        m.insert("device_type".into(), Value::Int((major << 8) | minor));
        m.insert("readable".into(), Value::Bool(get(1) == "1"));
        m.insert("writeable".into(), Value::Bool(get(2) == "1"));
        m.insert("executable".into(), Value::Bool(get(3) == "1"));
        m.insert(
            "pw_name".into(),
            Value::Str(st.owner.clone().unwrap_or_default()),
        );
        m.insert(
            "gr_name".into(),
            Value::Str(st.group.clone().unwrap_or_default()),
        );
        if k == "link" {
            m.insert("lnk_source".into(), Value::Str(get(4).to_string()));
            m.insert(
                "lnk_target".into(),
                Value::Str(st.link_target.clone().unwrap_or_default()),
            );
        }
        if a.get_checksum && !get(5).is_empty() {
            m.insert("checksum".into(), Value::Str(get(5).to_string()));
        }
        if a.get_mime && !get(6).is_empty() {
            m.insert("mimetype".into(), Value::Str(get(6).to_string()));
            m.insert("charset".into(), Value::Str(get(7).to_string()));
        }
        let _ = mode_str;
        Ok(Query::Done(Outcome::ok().with("stat", m)))
    }

    async fn apply(&self, _: (), _: &Ctx) -> Result<Outcome, ModuleError> {
        Ok(Outcome::ok())
    }
}
