//! The distribution identities a lab host can wear. The userland under every host is this
//! machine's own (Debian); a flavor only replaces the files that tools read to decide which
//! distribution they are on: `/etc/os-release` (and `/usr/lib/os-release` it points to),
//! `/etc/redhat-release`/`/etc/rocky-release`/`/etc/system-release` for Rocky, `/etc/lsb-release`
//! and `/etc/debian_version` for Ubuntu. Files that would contradict the identity (Debian's
//! `debian_version` on a Rocky host) are removed from the host's overlay.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    Rocky9,
    Ubuntu2204,
    Debian12,
}

/// One file a flavor writes, relative to the host's `/`.
pub enum IdentityFile {
    File {
        path: &'static str,
        content: &'static str,
    },
    Symlink {
        path: &'static str,
        target: &'static str,
    },
}

const ROCKY9_OS_RELEASE: &str = r#"NAME="Rocky Linux"
VERSION="9.4 (Blue Onyx)"
ID="rocky"
ID_LIKE="rhel centos fedora"
VERSION_ID="9.4"
PLATFORM_ID="platform:el9"
PRETTY_NAME="Rocky Linux 9.4 (Blue Onyx)"
ANSI_COLOR="0;32"
LOGO="fedora-logo-icon"
CPE_NAME="cpe:/o:rocky:rocky:9::baseos"
HOME_URL="https://rockylinux.org/"
BUG_REPORT_URL="https://bugs.rockylinux.org/"
SUPPORT_END="2032-05-31"
ROCKY_SUPPORT_PRODUCT="Rocky-Linux-9"
ROCKY_SUPPORT_PRODUCT_VERSION="9.4"
REDHAT_SUPPORT_PRODUCT="Rocky Linux"
REDHAT_SUPPORT_PRODUCT_VERSION="9.4"
"#;

const ROCKY9_RELEASE: &str = "Rocky Linux release 9.4 (Blue Onyx)\n";

const UBUNTU2204_OS_RELEASE: &str = r#"PRETTY_NAME="Ubuntu 22.04.4 LTS"
NAME="Ubuntu"
VERSION_ID="22.04"
VERSION="22.04.4 LTS (Jammy Jellyfish)"
VERSION_CODENAME=jammy
ID=ubuntu
ID_LIKE=debian
HOME_URL="https://www.ubuntu.com/"
SUPPORT_URL="https://help.ubuntu.com/"
BUG_REPORT_URL="https://bugs.launchpad.net/ubuntu/"
PRIVACY_POLICY_URL="https://www.ubuntu.com/legal/terms-and-policies/privacy-policy"
UBUNTU_CODENAME=jammy
"#;

const UBUNTU2204_LSB_RELEASE: &str = r#"DISTRIB_ID=Ubuntu
DISTRIB_RELEASE=22.04
DISTRIB_CODENAME=jammy
DISTRIB_DESCRIPTION="Ubuntu 22.04.4 LTS"
"#;

const DEBIAN12_OS_RELEASE: &str = r#"PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
SUPPORT_URL="https://www.debian.org/support"
BUG_REPORT_URL="https://bugs.debian.org/"
"#;

impl Flavor {
    pub const ALL: [Flavor; 3] = [Flavor::Rocky9, Flavor::Ubuntu2204, Flavor::Debian12];

    /// The name used on the command line, in the state file and as the inventory group.
    pub fn as_str(self) -> &'static str {
        match self {
            Flavor::Rocky9 => "rocky9",
            Flavor::Ubuntu2204 => "ubuntu2204",
            Flavor::Debian12 => "debian12",
        }
    }

    /// The `ID` of its os-release.
    pub fn os_id(self) -> &'static str {
        match self {
            Flavor::Rocky9 => "rocky",
            Flavor::Ubuntu2204 => "ubuntu",
            Flavor::Debian12 => "debian",
        }
    }

    /// The `PRETTY_NAME` of its os-release.
    pub fn pretty_name(self) -> &'static str {
        match self {
            Flavor::Rocky9 => "Rocky Linux 9.4 (Blue Onyx)",
            Flavor::Ubuntu2204 => "Ubuntu 22.04.4 LTS",
            Flavor::Debian12 => "Debian GNU/Linux 12 (bookworm)",
        }
    }

    /// Files written into the host's root (over whatever this machine has there).
    pub fn identity_files(self) -> Vec<IdentityFile> {
        use IdentityFile::*;
        let os_release = |content| {
            [
                File {
                    path: "usr/lib/os-release",
                    content,
                },
                Symlink {
                    path: "etc/os-release",
                    target: "../usr/lib/os-release",
                },
            ]
        };
        match self {
            Flavor::Rocky9 => {
                let mut v: Vec<IdentityFile> = os_release(ROCKY9_OS_RELEASE).into();
                v.push(File {
                    path: "etc/rocky-release",
                    content: ROCKY9_RELEASE,
                });
                v.push(Symlink {
                    path: "etc/redhat-release",
                    target: "rocky-release",
                });
                v.push(Symlink {
                    path: "etc/system-release",
                    target: "rocky-release",
                });
                v.push(File {
                    path: "etc/rocky-release-upstream",
                    content: "Derived from Red Hat Enterprise Linux 9.4\n",
                });
                v
            }
            Flavor::Ubuntu2204 => {
                let mut v: Vec<IdentityFile> = os_release(UBUNTU2204_OS_RELEASE).into();
                v.push(File {
                    path: "etc/lsb-release",
                    content: UBUNTU2204_LSB_RELEASE,
                });
                v.push(File {
                    path: "etc/debian_version",
                    content: "bookworm/sid\n",
                });
                v
            }
            Flavor::Debian12 => os_release(DEBIAN12_OS_RELEASE).into(),
        }
    }

    /// Files of this machine's identity that contradict the flavor, removed from the host's root.
    pub fn removed_files(self) -> &'static [&'static str] {
        match self {
            Flavor::Rocky9 => &[
                "etc/debian_version",
                "etc/lsb-release",
                "etc/dpkg/origins/default",
            ],
            Flavor::Ubuntu2204 => &[
                "etc/redhat-release",
                "etc/rocky-release",
                "etc/system-release",
            ],
            Flavor::Debian12 => &[
                "etc/redhat-release",
                "etc/rocky-release",
                "etc/system-release",
                "etc/lsb-release",
            ],
        }
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Flavor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "rocky9" | "rocky" | "rocky-9" => Ok(Flavor::Rocky9),
            "ubuntu2204" | "ubuntu" | "ubuntu-22.04" | "jammy" => Ok(Flavor::Ubuntu2204),
            "debian12" | "debian" | "bookworm" => Ok(Flavor::Debian12),
            other => Err(format!(
                "unknown lab flavor `{other}`; known flavors: rocky9, ubuntu2204, debian12"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for f in Flavor::ALL {
            assert_eq!(f.as_str().parse::<Flavor>(), Ok(f));
        }
        assert!("fedora"
            .parse::<Flavor>()
            .unwrap_err()
            .contains("rocky9, ubuntu2204"));
    }

    #[test]
    fn os_release_matches_id() {
        for f in Flavor::ALL {
            let files = f.identity_files();
            let text = files
                .iter()
                .find_map(|x| match x {
                    IdentityFile::File {
                        path: "usr/lib/os-release",
                        content,
                    } => Some(*content),
                    _ => None,
                })
                .unwrap_or_default();
            assert!(
                text.contains(&format!("PRETTY_NAME=\"{}\"", f.pretty_name())),
                "{f}"
            );
            let id_line = text
                .lines()
                .find(|l| l.starts_with("ID="))
                .unwrap_or_default();
            assert_eq!(
                id_line.trim_start_matches("ID=").trim_matches('"'),
                f.os_id()
            );
        }
    }
}
