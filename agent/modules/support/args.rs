//! Decoding a task's arguments into a module's serde struct, with Ansible's lenient typing.
//!
//! Ansible's argument spec converts: `"yes"`/`"no"`/`"on"`/`1` are booleans, numbers are accepted
//! where strings are wanted, a comma-separated string is a list, and a file mode may be an int
//! (`0644` in YAML is octal 420), an octal string (`"0644"`, `"644"`) or symbolic (`"u=rw,g=r"`).
//! The `deserialize_with` helpers here do the same for serde; [`decode`] turns serde's error into
//! Ansible's wording, naming the module.

use crate::modules::ModuleError;
use crate::value::{Map, Value};
use serde::de::{DeserializeOwned, Deserializer, Error as _};
use serde::Deserialize;

/// An argument with a fixed set of values (Ansible's `choices`), as an enum: each choice a
/// variant, and `Other` for any other text. `Other` is kept by the decoder so that, as in Ansible,
/// a bad value fails the task when it runs (with Ansible's choices error, from `checked`) and not
/// the playbook's load-time argument check. The choices are listed in the order of Ansible's
/// message; `| "alias"` after a choice adds a name that decodes to it without being listed, and
/// `default V` makes `V` the value when the argument is not given.
///
/// ```ignore
/// args::choices! {
///     /// `state:` of `group`.
///     pub enum State for "state" default Present { Present = "present", Absent = "absent" }
/// }
/// ```
macro_rules! choices {
    ($(#[$meta:meta])* $vis:vis enum $name:ident for $arg:literal $(default $def:ident)? {
        $($(#[$vmeta:meta])* $variant:ident = $text:literal $(| $alias:literal)*),+ $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        $vis enum $name {
            $($(#[$vmeta])* $variant,)+
            /// Not one of the choices: fails the task when it runs.
            Other(String),
        }

        #[allow(dead_code)]
        impl $name {
            /// Ansible's name for the value.
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)+
                    $name::Other(s) => s,
                }
            }

            /// The value, or Ansible's choices error for `Other`.
            pub fn checked(self) -> Result<Self, crate::modules::ModuleError> {
                match self {
                    $name::Other(o) => Err(Self::error(&o)),
                    v => Ok(v),
                }
            }

            /// Ansible's choices error for the value `got`.
            pub fn error(got: &str) -> crate::modules::ModuleError {
                let choices: &[&str] = &[$($text),+];
                crate::modules::ModuleError::Args(format!(
                    "value of {} must be one of: {}, got: {got}",
                    $arg,
                    choices.join(", ")
                ))
            }
        }

        $(
            impl Default for $name {
                fn default() -> Self {
                    $name::$def
                }
            }
        )?

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Ok(match crate::modules::support::args::string(d)?.as_str() {
                    $($text $(| $alias)* => $name::$variant,)+
                    o => $name::Other(o.to_string()),
                })
            }
        }
    };
}
pub(crate) use choices;

/// Decode templated arguments (secrets exposed: modules need the plaintext).
pub fn decode<T: DeserializeOwned>(module: &str, args: &Map) -> Result<T, ModuleError> {
    let json = Value::Map(args.clone()).to_json(true);
    serde_json::from_value(json).map_err(|e| {
        let msg = e.to_string();
        let msg = msg
            .strip_prefix("unknown field ")
            .map(|rest| format!("Unsupported parameters for ({module}) module: {rest}"))
            .unwrap_or_else(|| format!("{module}: {msg}"));
        ModuleError::Args(msg)
    })
}

fn json_to_bool(v: &serde_json::Value) -> Option<bool> {
    match v {
        serde_json::Value::Bool(b) => Some(*b),
        serde_json::Value::Number(n) => match n.as_f64() {
            Some(x) if x == 1.0 => Some(true),
            Some(x) if x == 0.0 => Some(false),
            _ => None,
        },
        serde_json::Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "yes" | "on" | "1" | "true" | "t" | "y" | "1.0" => Some(true),
            "no" | "off" | "0" | "false" | "f" | "n" | "0.0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

choices! {
    /// `state: present | absent` (the default is `present`). Any other text is kept as `Other` so
    /// that, as in Ansible, it fails the task when it runs (with Ansible's choices error, from
    /// [`PresentAbsent::present`]) and not the playbook's load-time argument check.
    pub enum PresentAbsent for "state" default Present {
        Absent = "absent",
        Present = "present",
    }
}

impl PresentAbsent {
    /// True for `present`, false for `absent`; Ansible's choices error otherwise.
    pub fn present(&self) -> Result<bool, ModuleError> {
        match self {
            PresentAbsent::Present => Ok(true),
            PresentAbsent::Absent => Ok(false),
            PresentAbsent::Other(o) => Err(Self::error(o)),
        }
    }
}

/// `#[serde(default = "crate::modules::support::args::yes")]`: an argument that defaults to true.
pub fn yes() -> bool {
    true
}

/// Ansible's `type='bool'`.
pub fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    json_to_bool(&v).ok_or_else(|| {
        D::Error::custom(format!(
            "the value {v} is not a valid boolean; valid booleans include yes/no, true/false, on/off, 1/0"
        ))
    })
}

pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    if v.is_null() {
        return Ok(None);
    }
    json_to_bool(&v)
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("the value {v} is not a valid boolean")))
}

fn json_to_string(v: serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(if b { "True" } else { "False" }.into()),
        _ => None,
    }
}

/// Ansible's `type='str'`: numbers and booleans are converted.
pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    let shown = v.to_string();
    json_to_string(v).ok_or_else(|| D::Error::custom(format!("expected a string, got {shown}")))
}

pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    if v.is_null() {
        return Ok(None);
    }
    let shown = v.to_string();
    json_to_string(v)
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("expected a string, got {shown}")))
}

/// Ansible's `type='list', elements='str'`: a list, or a comma-separated string.
pub fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    match v {
        serde_json::Value::Null => Ok(vec![]),
        serde_json::Value::Array(items) => items
            .into_iter()
            .map(|i| {
                let shown = i.to_string();
                json_to_string(i)
                    .ok_or_else(|| D::Error::custom(format!("expected a string, got {shown}")))
            })
            .collect(),
        serde_json::Value::String(s) => Ok(s
            .split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect()),
        other => json_to_string(other.clone())
            .map(|s| vec![s])
            .ok_or_else(|| D::Error::custom(format!("expected a list, got {other}"))),
    }
}

/// Ansible's `type='int'`: an int or a numeric string.
pub fn opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    match &v {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("{v} is not an integer"))),
        serde_json::Value::String(s) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| D::Error::custom(format!("{s:?} cannot be converted to an int"))),
        _ => Err(D::Error::custom(format!(
            "{v} cannot be converted to an int"
        ))),
    }
}

/// A file mode as Ansible accepts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Permission bits (from an int, or an octal string).
    Bits(u32),
    /// `u=rw,g=r,o=r`, `u+x`, `a-w`, ... applied to the current mode.
    Symbolic(String),
    /// `preserve` (copy/template): keep the source file's mode.
    Preserve,
}

impl Mode {
    /// The bits this mode gives a path whose current bits are `current` (0 when new).
    pub fn resolve(&self, current: u32, is_dir: bool) -> Result<u32, String> {
        match self {
            Mode::Bits(b) => Ok(*b),
            Mode::Preserve => Ok(current),
            Mode::Symbolic(s) => apply_symbolic(s, current & 0o7777, is_dir),
        }
    }
}

fn apply_symbolic(spec: &str, mut mode: u32, is_dir: bool) -> Result<u32, String> {
    let bad = || format!("mode must be in octal or symbolic form: {spec:?} is neither");
    for clause in spec.split(',') {
        let op_at = clause.find(['=', '+', '-']).ok_or_else(bad)?;
        let (who, rest) = clause.split_at(op_at);
        let mut whomask = 0u32;
        for c in who.chars() {
            whomask |= match c {
                'u' => 0o4700,
                'g' => 0o2070,
                'o' => 0o1007,
                'a' => 0o7777,
                _ => return Err(bad()),
            };
        }
        if who.is_empty() {
            whomask = 0o7777;
        }
        let op = rest.chars().next().ok_or_else(bad)?;
        let mut perm = 0u32;
        for c in rest[1..].chars() {
            perm |= match c {
                'r' => 0o444,
                'w' => 0o222,
                'x' => 0o111,
                'X' if is_dir || mode & 0o111 != 0 => 0o111,
                'X' => 0,
                's' => 0o6000,
                't' => 0o1000,
                _ => return Err(bad()),
            };
        }
        let bits = perm & whomask;
        mode = match op {
            '=' => (mode & !(whomask & 0o7777)) | bits,
            '+' => mode | bits,
            '-' => mode & !bits,
            _ => return Err(bad()),
        };
    }
    Ok(mode)
}

fn parse_mode(v: serde_json::Value) -> Result<Option<Mode>, String> {
    match v {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::Number(n) => n
            .as_u64()
            .map(|b| Some(Mode::Bits(b as u32)))
            .ok_or_else(|| format!("mode {n} is not a permission value")),
        serde_json::Value::String(s) if s == "preserve" => Ok(Some(Mode::Preserve)),
        serde_json::Value::String(s) => {
            if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) {
                u32::from_str_radix(&s, 8)
                    .map(|b| Some(Mode::Bits(b)))
                    .map_err(|_| format!("mode must be in octal or symbolic form: {s:?}"))
            } else {
                apply_symbolic(&s, 0, false)?;
                Ok(Some(Mode::Symbolic(s)))
            }
        }
        other => Err(format!("mode {other} is not a permission value")),
    }
}

pub fn opt_mode<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Mode>, D::Error> {
    parse_mode(serde_json::Value::deserialize(d)?).map_err(D::Error::custom)
}

/// A free-form module's command line (`command: ls -l`), or its `cmd` argument.
pub const RAW_PARAMS: &str = "_raw_params";

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct A {
        #[serde(default, deserialize_with = "bool")]
        force: bool,
        #[serde(default, deserialize_with = "opt_mode")]
        mode: Option<Mode>,
        #[serde(default, deserialize_with = "string_list")]
        names: Vec<String>,
    }

    fn dec(y: &str) -> Result<A, ModuleError> {
        let v = crate::yaml::load(y, "t").unwrap();
        decode("t", v.as_map().unwrap())
    }

    #[test]
    fn lenient_types() {
        let a = dec("force: 'yes'\nmode: 0644\nnames: a, b").unwrap();
        assert!(a.force);
        assert_eq!(a.mode, Some(Mode::Bits(0o644)));
        assert_eq!(a.names, vec!["a", "b"]);
        let a = dec("mode: '0600'\nnames: [1, x]").unwrap();
        assert_eq!(a.mode, Some(Mode::Bits(0o600)));
        assert_eq!(a.names, vec!["1", "x"]);
        let e = dec("bogus: 1").unwrap_err().to_string();
        assert!(
            e.starts_with("Unsupported parameters for (t) module: `bogus`"),
            "{e}"
        );
        assert!(dec("force: maybe").is_err());
    }

    #[test]
    fn symbolic_modes() {
        assert_eq!(apply_symbolic("u=rw,g=r,o=r", 0, false).unwrap(), 0o644);
        assert_eq!(apply_symbolic("u+x", 0o644, false).unwrap(), 0o744);
        assert_eq!(apply_symbolic("a-w", 0o666, false).unwrap(), 0o444);
        assert_eq!(apply_symbolic("a+X", 0o644, true).unwrap(), 0o755);
        assert_eq!(apply_symbolic("a+X", 0o644, false).unwrap(), 0o644);
        assert!(apply_symbolic("q=r", 0, false).is_err());
    }
}

/// A module's argument struct with Ansible's common file arguments (`add_file_common_args`:
/// `mode`, `owner`, `group`, `seuser`, `serole`, `selevel`, `setype`, `attributes` (alias `attr`),
/// `unsafe_writes`) added after the module's own fields, declared here once.
///
/// A macro and not `#[serde(flatten)]`: serde's flatten cannot be combined with
/// `deny_unknown_fields`, which every module keeps. The SELinux fields and `attributes` are
/// accepted as Ansible accepts them; kiln sets no SELinux context and no chattr attributes (the
/// lab's hosts have neither), as Ansible does on a host without SELinux.
/// `file_attrs()` gives the part kiln applies ([`super::fileattrs::Attrs`]).
macro_rules! with_file_common_args {
    ($(#[$meta:meta])* pub struct $name:ident { $($body:tt)* }) => {
        $(#[$meta])*
        pub struct $name {
            $($body)*
            #[serde(default, deserialize_with = "crate::modules::support::args::opt_mode")]
            pub mode: Option<crate::modules::support::args::Mode>,
            #[serde(default, deserialize_with = "crate::modules::support::args::opt_string")]
            pub owner: Option<String>,
            #[serde(default, deserialize_with = "crate::modules::support::args::opt_string")]
            pub group: Option<String>,
            #[serde(default)]
            pub seuser: Option<serde_json::Value>,
            #[serde(default)]
            pub serole: Option<serde_json::Value>,
            #[serde(default)]
            pub selevel: Option<serde_json::Value>,
            #[serde(default)]
            pub setype: Option<serde_json::Value>,
            #[serde(default, alias = "attr")]
            pub attributes: Option<serde_json::Value>,
            #[serde(default, deserialize_with = "crate::modules::support::args::opt_bool")]
            pub unsafe_writes: Option<bool>,
        }

        impl $name {
            /// The file attributes kiln applies: mode, owner, group.
            #[allow(dead_code)]
            pub fn file_attrs(&self) -> crate::modules::support::fileattrs::Attrs {
                crate::modules::support::fileattrs::Attrs {
                    mode: self.mode.clone(),
                    owner: self.owner.clone(),
                    group: self.group.clone(),
                }
            }
        }
    };
}
pub(crate) use with_file_common_args;
