#!/usr/bin/env python3
"""Expected values for kiln's ipaddr filter family, produced by the real ansible.utils.

Run with a Python that has ansible-core and netaddr (e.g. /work/venv-ansible/bin/python):

    python tests/cases/ipaddr_check.py > tests/cases/ipaddr_cases.json

The collection comes from `fetch_oracles.py` (the `ansible` wheel bundles ansible.utils), or from
$KILN_ANSIBLE_COLLECTIONS. Each case calls the collection's own filter function (argument
validation included) and records either the canonical JSON of its answer or the error text.
`agent/template/ipaddr.rs` replays every case through kiln's filters.
"""

import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

V4 = ["192.168.1.5", "192.168.1.5/24", "192.168.1.0/24", "192.168.1.255/24", "10.0.0.0/31",
      "10.0.0.1/31", "10.0.0.1/32", "10.0.0.4/30", "10.0.0.5/30", "10.0.0.7/30", "0.0.0.0",
      "0.0.0.0/0", "255.255.255.255", "8.8.8.8", "127.0.0.1", "169.254.3.4", "224.0.0.1",
      "100.64.0.1", "192.0.0.9", "10.0.0.1/255.255.255.0", "10.0.0.1/0.0.0.255",
      "10.0.0.1/024", "192.168.33.3"]
V6 = ["2001:db8::1", "2001:db8::/64", "2001:db8::1/64", "fe80::1/64", "::1", "::", "::/0",
      "2001:db8:0:1:1:1:1:1", "::ffff:192.168.1.1", "::ffff:192.168.1.0/120", "::1.2.3.4",
      "2002:c000:0204::1", "2002:c000:0204::/48", "ff02::1", "2606:4700::1111",
      "2001:db8::/127", "2001:db8::1/128"]
BAD = ["", "foo", "192.168.1", "010.0.0.1", "10.0.0.1/33", "10.0.0.1/", " 1.2.3.4",
       "192.168.1.0/24/1", "1.2.3.4/255.0.255.0"]
INTS = ["3232235777", "3232235777/24", "5", 3232235777, 0, 1, -1, "340282366920938463463374607431768211455"]

QUERIES = ["", "address", "network", "netmask", "prefix", "broadcast", "host", "net", "size",
           "first_usable", "last_usable", "next_usable", "previous_usable", "host/prefix",
           "network/prefix", "public", "private", "ipv4", "ipv6", "cidr", "subnet", "hostmask",
           "int", "ip/prefix", "ip_netmask", "type", "version", "wrap", "bool", "revdns",
           "size_usable", "range_usable", "network_netmask", "network_wildcard", "peer",
           "link-local", "loopback", "multicast", "unicast", "6to4", "0", "1", "-1", "5", 2,
           "255", "1.5", "192.168.0.0/16", "10.0.0.0/8", "2001:db8::/32", "bogus"]


def cases():
    out = []
    for v in V4 + V6:
        for q in QUERIES:
            out.append(("ipaddr", v, [q], {}))
    for v in BAD + INTS:
        for q in ["", "address", "network", "prefix", "1"]:
            out.append(("ipaddr", v, [q], {}))
    for v in [None, True, False, 1.5, {"a": 1}]:
        out.append(("ipaddr", v, [], {}))
    mixed = ["192.168.1.2", "192.168.500.2", "192.168.100.10/24", "yes", "google.com", True,
             "192.168.1.", 6, "2001:db8::1", "10.0.0.0/8", None, ["10.1.1.1"]]
    for q in ["", "address", "network", "192.168.0.0/16", "ipv6", "public", "private", 1, "1", "int"]:
        out.append(("ipaddr", mixed, [q], {}))
    for v in ["192.168.1.5/24", "2001:db8::1/64", "::ffff:10.1.1.1"]:
        for q in ["", "address", "ipv4", "ipv6", "network"]:
            out.append(("ipaddr", v, [q], {"version": 4}))
            out.append(("ipv4", v, [q], {}))
            out.append(("ipv6", v, [q], {}))
    out.append(("ipaddr", "10.0.0.1", ["address"], {"version": 6}))
    out.append(("ipv4", mixed, [], {}))
    out.append(("ipv6", mixed, [], {}))
    out.append(("ipv4", mixed, ["address"], {}))
    for v in ["192.168.1.1", "2001:db8::1", "2001:db8::/64", "foo", ["2001:db8::1", "foo", "10.0.0.1", "::/0"], True, ""]:
        out.append(("ipwrap", v, [], {}))
        out.append(("ipwrap", v, ["address"], {}))
    for v, a in [("192.168.1.5", 5), ("192.168.1.5", -5), ("192.168.1.5/24", 300), ("2001:db8::1", 16),
                 ("255.255.255.255", 1), ("0.0.0.0", -1), ("foo", 1), ("192.168.1.5", "3")]:
        out.append(("ipmath", v, [a], {}))
    for v, q in [("10.0.0.0/24", 5), ("10.0.0.0/24", "5"), ("10.0.0.0/24", 256), ("10.0.0.0/24", -1),
                 ("10.0.0.7/24", 2), ("10.0.0.1", 0), ("10.0.0.1", 1), ("foo", 1), ("2001:db8::/64", 10),
                 ("10.0.0.0/24", ""), ("10.0.0.0/24", "x")]:
        out.append(("nthhost", v, [q], {}))
    for f in ["network_in_usable", "network_in_network"]:
        for v, t in [("192.168.0.0/24", "192.168.0.1"), ("192.168.0.0/24", "192.168.0.255"),
                     ("192.168.0.0/24", "192.168.0.0"), ("192.168.0.0/16", "192.168.1.0/24"),
                     ("192.168.0.0/24", "192.168.1.0/24"), ("192.168.0.0/31", "192.168.0.1"),
                     ("10.0.0.1/32", "10.0.0.1"), ("2001:db8::/64", "2001:db8::5"),
                     ("192.168.0.0/24", "foo")]:
            out.append((f, v, [t], {}))
    for f in ["next_nth_usable", "previous_nth_usable"]:
        for v, o in [("192.168.122.1/24", 2), ("192.168.122.1/24", 300), ("192.168.122.254/24", 1),
                     ("192.168.122.10/24", 9), ("192.168.122.10/24", 10), ("10.0.0.0/31", 1),
                     ("10.0.0.1/32", 1), ("2001:db8::1/64", 5), ("foo", 1), ("10.0.0.5/24", "3")]:
            out.append((f, v, [o], {}))
    for v, q, i in [("192.168.144.5", "", None), ("192.168.144.5", "20", None), ("192.168.144.0/20", "24", None),
                    ("192.168.144.0/20", "24", 0), ("192.168.144.0/20", "24", 5), ("192.168.144.0/20", "24", -1),
                    ("192.168.144.0/20", "24", 16), ("192.168.144.0/20", "16", None),
                    ("192.168.144.5", "20", 0), ("192.168.144.5", "20", 3), ("192.168.144.5", "33", None),
                    ("192.168.144.16/30", "192.168.144.0/24", None), ("192.168.144.0/24", "192.168.0.0/16", None),
                    ("10.0.0.0/24", "192.168.0.0/16", None), ("2001:db8::/64", "72", 3), ("foo", "24", None)]:
        args = [q] if i is None else [q, i]
        out.append(("ipsubnet", v, args, {}))
    for v, a in [(["192.168.0.0/17", "192.168.128.0/17", "192.168.128.1"], "merge"),
                 (["10.0.0.1/24", "10.0.1.0/24", "2001:db8::/33", "2001:db8:8000::/33", "1.1.1.1"], "merge"),
                 (["192.168.1.1", "192.168.1.2"], "span"), (["192.168.1.1/24"], "span"), ([], "span"),
                 (["10.0.0.0/8", "10.1.0.0/16"], "span"), (["10.0.0.1", "10.0.3.7"], "span"),
                 (["foo"], "merge"), (["10.0.0.0/8"], "bogus")]:
        out.append(("cidr_merge", v, [a], {}))
    return out


def load_filters():
    coll = os.environ.get("KILN_ANSIBLE_COLLECTIONS")
    if not coll:
        res = subprocess.run([sys.executable, os.path.join(HERE, "fetch_oracles.py")],
                             capture_output=True, text=True)
        for line in res.stdout.splitlines():
            if line.startswith("collections="):
                coll = line.split("=", 1)[1]
    if not coll:
        sys.exit("ansible.utils is not available: set KILN_ANSIBLE_COLLECTIONS or let "
                 "fetch_oracles.py download the `ansible` wheel")
    sys.path.insert(0, coll)
    import importlib
    filters = {}
    for mod in ["ipaddr", "ipv4", "ipv6", "ipwrap", "ipmath", "ipsubnet", "nthhost", "network_in_usable",
                "network_in_network", "next_nth_usable", "previous_nth_usable", "cidr_merge"]:
        m = importlib.import_module("ansible_collections.ansible.utils.plugins.filter." + mod)
        filters.update(m.FilterModule().filters())
    return filters


def canon(v):
    return json.dumps(v, sort_keys=True, separators=(",", ":"))


def main():
    filters = load_filters()
    out = []
    for name, value, args, kwargs in cases():
        case = {"filter": name, "input": value, "args": args, "kwargs": kwargs}
        try:
            case["expect"] = canon(filters[name](None, value, *args, **kwargs))
        except Exception as e:  # the filter's error is the expectation
            case["error"] = str(e)
        out.append(case)
    json.dump(out, sys.stdout, indent=0, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    os.environ.setdefault("ANSIBLE_DEPRECATION_WARNINGS", "false")
    main()
