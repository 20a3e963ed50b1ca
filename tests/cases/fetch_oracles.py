#!/usr/bin/env python3
"""Fetch the Python reference implementations kiln's filters are compared with.

- ansible.utils (the ipaddr filter family): taken from the `ansible` community package wheel,
  which bundles the collection (Galaxy itself may be unreachable; PyPI usually is not).
- Kayobe's `networks` filter plugin: taken from the `kayobe` wheel.

Both are fetched with `pip download --no-deps` (no install, no dependency tree) into
`<dest>/wheels` and unpacked into `<dest>/collections` and `<dest>/kayobe`.

Usage: fetch_oracles.py [DEST]   (default: target/oracles next to this repository's Cargo.toml)
Prints `collections=<path>` and `kayobe=<path>` for what is available; exits 1 when nothing is.
"""

import os
import subprocess
import sys
import zipfile

ANSIBLE_REQ = "ansible==10.7.0"  # bundles ansible.utils 4.1.0; the line that pairs with ansible-core 2.17
KAYOBE_REQ = "kayobe==18.6.0"  # the version the recorded unit-test answers come from


def repo_root():
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pip_download(req, wheels):
    os.makedirs(wheels, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--quiet", "-d", wheels, req]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        sys.stderr.write("pip download %s failed: %s\n" % (req, res.stderr.strip()[-400:]))
        return None
    name, _, version = req.partition("==")
    whl = os.path.join(wheels, "%s-%s-py3-none-any.whl" % (name.strip().lower(), version.strip()))
    return whl if os.path.exists(whl) else None


def ensure_collections(dest):
    target = os.path.join(dest, "collections")
    marker = os.path.join(target, "ansible_collections", "ansible", "utils", "MANIFEST.json")
    if os.path.exists(marker):
        return target
    whl = pip_download(ANSIBLE_REQ, os.path.join(dest, "wheels"))
    if not whl:
        return None
    with zipfile.ZipFile(whl) as z:
        names = [n for n in z.namelist()
                 if n.startswith("ansible_collections/ansible/utils/")
                 or n.startswith("ansible_collections/ansible/netcommon/")]
        z.extractall(target, names)
    return target if os.path.exists(marker) else None


def ensure_kayobe(dest):
    target = os.path.join(dest, "kayobe")
    marker = os.path.join(target, "kayobe", "plugins", "filter", "networks.py")
    if os.path.exists(marker):
        return target
    whl = pip_download(KAYOBE_REQ, os.path.join(dest, "wheels"))
    if not whl:
        return None
    with zipfile.ZipFile(whl) as z:
        names = [n for n in z.namelist()
                 if n.startswith("kayobe/") and (n.endswith("__init__.py") or "/plugins/filter/" in n)]
        z.extractall(target, names)
        meta = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        if meta:
            z.extract(meta[0], target)
    return target if os.path.exists(marker) else None


def main():
    dest = sys.argv[1] if len(sys.argv) > 1 else os.path.join(repo_root(), "target", "oracles")
    got = False
    c = ensure_collections(dest)
    if c:
        print("collections=%s" % c)
        got = True
    k = ensure_kayobe(dest)
    if k:
        print("kayobe=%s" % k)
        got = True
    return 0 if got else 1


if __name__ == "__main__":
    sys.exit(main())
