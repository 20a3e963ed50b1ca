//! kiln's shipped `playbooks/purge-command-not-found.yml`, run for real over SSH against lab
//! hosts: an Ubuntu 22.04 host with `command-not-found` and `python3-command-not-found`
//! installed (small stand-in packages built with dpkg-deb on the host: the lab has no Ubuntu
//! mirror; the stand-in carries the same apt hook conffile so purge vs remove shows), and a
//! Rocky 9 host the play must skip. First run purges both packages and the hook (changed);
//! the second run changes nothing. Through `ansible-playbook`, and `kiln playbook run` once
//! kiln has that verb.

mod lab;
mod playbook_runner;

use kiln::lab::Flavor;
use playbook_runner::*;
use std::path::PathBuf;

const HOOK: &str = "/etc/apt/apt.conf.d/50command-not-found";

/// Builds and installs a stand-in package `name` (with the apt hook as a conffile for
/// command-not-found) on lab host `h`.
fn install_stand_in(h: &kiln::lab::Host, name: &str) {
    let conffile = if name == "command-not-found" {
        format!(
            "mkdir -p $d/etc/apt/apt.conf.d && \
             echo 'APT::Update::Post-Invoke-Success {{\"true\";}};' > $d{HOOK} && \
             echo {HOOK} > $d/DEBIAN/conffiles && "
        )
    } else {
        String::new()
    };
    let script = format!(
        "set -e; d=$(mktemp -d); mkdir -p $d/DEBIAN && \
         printf 'Package: {name}\\nVersion: 1.0\\nArchitecture: all\\nMaintainer: kiln tests <kiln@example.invalid>\\nDescription: stand-in for the test\\n' > $d/DEBIAN/control && \
         {conffile} dpkg-deb --build $d /root/{name}.deb >/dev/null && dpkg -i /root/{name}.deb >/dev/null"
    );
    let out = h.exec(&["sh", "-c", &script]).expect("exec on lab host");
    assert!(
        out.status.success(),
        "installing {name} failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// dpkg's status of `name` on `h` ("ii", "rc", ...), or None when dpkg does not know it.
fn dpkg_status(h: &kiln::lab::Host, name: &str) -> Option<String> {
    let out = h
        .exec(&["dpkg-query", "-W", "-f=${db:Status-Abbrev}", name])
        .expect("exec dpkg-query");
    out.status
        .success()
        .then(|| text(&out.stdout).trim().to_string())
}

fn exists(h: &kiln::lab::Host, path: &str) -> bool {
    h.exec(&["test", "-e", path])
        .expect("exec test")
        .status
        .success()
}

#[test]
fn purges_command_not_found_on_ubuntu_only() {
    require_lab!();
    if let Some(reason) = ansible_skip_reason() {
        eprintln!("SKIPPED: {reason}");
        return;
    }
    if lab::which("dpkg-deb").is_none() {
        eprintln!("SKIPPED: dpkg-deb is missing (Debian package dpkg)");
        return;
    }
    let playbook =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("playbooks/purge-command-not-found.yml");
    for runner in Runner::available() {
        let lab = lab::LabGuard::up(
            &lab::spec("purgecnf").with_hosts(2, &[Flavor::Ubuntu2204, Flavor::Rocky9]),
        );
        let ubuntu = lab
            .hosts
            .iter()
            .find(|h| h.flavor == Flavor::Ubuntu2204)
            .expect("ubuntu");
        let rocky = lab
            .hosts
            .iter()
            .find(|h| h.flavor == Flavor::Rocky9)
            .expect("rocky");
        for name in ["command-not-found", "python3-command-not-found"] {
            install_stand_in(ubuntu, name);
            assert_eq!(dpkg_status(ubuntu, name).as_deref(), Some("ii"));
        }
        // The Rocky host has it too (same Debian userland), so a run that ignored the
        // distribution would show there.
        install_stand_in(rocky, "command-not-found");
        assert!(exists(ubuntu, HOOK));

        let extra = ["purge_command_not_found_group=lab".to_string()];
        let first = runner.run(&lab.inventory, &playbook, &extra);
        assert_eq!(first.rc, 0, "{}", first.out);
        let purge = "Ensure command-not-found is purged";
        let statuses: Vec<&str> = first
            .tasks
            .iter()
            .filter(|(t, _)| t == purge)
            .map(|(_, s)| s.as_str())
            .collect();
        assert_eq!(statuses.len(), 2, "{}", first.out);
        assert!(
            statuses.contains(&"changed") && statuses.contains(&"skipped"),
            "{}",
            first.out
        );
        for name in ["command-not-found", "python3-command-not-found"] {
            // Purged, not just removed: dpkg forgets it ("rc" would mean config left behind).
            assert_eq!(
                dpkg_status(ubuntu, name),
                None,
                "{runner:?}: {name} still known to dpkg"
            );
        }
        assert!(
            !exists(ubuntu, HOOK),
            "{runner:?}: the apt hook is still there"
        );
        assert_eq!(
            dpkg_status(rocky, "command-not-found").as_deref(),
            Some("ii"),
            "{runner:?}: the Rocky host was touched"
        );

        let second = runner.run(&lab.inventory, &playbook, &extra);
        assert_eq!(second.rc, 0, "{}", second.out);
        assert_eq!(
            second.count("changed"),
            0,
            "second run changed something:\n{}",
            second.out
        );
        assert_eq!(second.count("failed"), 0, "{}", second.out);
        assert!(
            second.tasks.iter().any(|(t, s)| t == purge && s == "ok"),
            "{}",
            second.out
        );
    }
}
