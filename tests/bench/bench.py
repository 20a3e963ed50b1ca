#!/usr/bin/env python3
"""Side-by-side benchmark driver: kiln vs ansible-core on the same lab hosts (see tests/bench/run).

For each playbook (mix20.yml, mix100.yml) and host count, each repetition is
  clean -> kiln cold -> kiln warm -> clean -> ansible cold -> ansible warm
where
  clean  = on every host of the cell: rm -rf /tmp/kbench (what the playbooks make),
           ~/.cache/kiln (kiln's agent cache: the cold kiln run uploads the agent again),
           ~/.ansible (ansible's remote temp); on the controller: every OpenSSH ControlPersist
           master of the ansible runs is told to exit (`ssh -O exit`), and kiln's connection
           daemon (its ControlPersist: SSH connections with their running agents) is stopped
           (`kiln mux stop`), so both cold runs open new SSH connections.
  cold   = the first run after clean;  warm = the same playbook again at once (changed=0 expected;
           ansible reuses its ControlPersist masters, kiln the connections and agents its daemon
           held; both with their default persistence of 60 s).

Measured per run: wall time (monotonic clock around the child), the controller's peak RSS
(ru_maxrss from wait4 of the child: the largest single process in its tree, i.e. the
ansible-playbook main process or kiln; for kiln, plus the connection daemon's resident memory
after the run, VmRSS, as the daemon is not the run's child; its CPU time during the run is added
to kiln's CPU likewise), bytes sent to the hosts (tx_bytes of the root side of each
host's veth on the lab bridge: everything the bridge delivered to the host, TCP/IP headers
included), and for kiln the agent bytes uploaded (kiln's own counter, logged by
kiln::transport::upload). Every run's recap is checked: every host, ok = task count, failed=0,
unreachable=0, and changed=0 on warm runs; a run that fails the check marks its cell INVALID.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

RECAP = re.compile(
    r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
UPLOAD = re.compile(r"uploaded agent \S+ \((\d+) bytes\)")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def sh(argv, **kw):
    return subprocess.run(argv, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, **kw)


class Lab:
    def __init__(self, kiln, name, dir, hosts):
        self.kiln, self.name, self.dir = kiln, name, dir
        t = time.monotonic()
        sh([kiln, "lab", "up", "--name", name, "--dir", dir, "--hosts", str(hosts),
            "--timeout", "120"])
        self.up_secs = time.monotonic() - t
        with open(os.path.join(dir, "state.json")) as f:
            st = json.load(f)
        self.hosts = [h for h in st["hosts"] if h.get("lab_addr")][:hosts]
        self.vars = self._lab_vars()

    def _lab_vars(self):
        text = open(os.path.join(self.dir, "inventory.ini")).read()
        return text.split("[lab:vars]\n", 1)[1].strip()

    def inventory(self, path, n):
        lines = ["[bench]"]
        lines += [f"{h['name']} ansible_host={h['lab_addr']}" for h in self.hosts[:n]]
        lines += ["", "[bench:vars]", self.vars, ""]
        with open(path, "w") as f:
            f.write("\n".join(lines))

    def tx_bytes(self, n):
        out = []
        for h in self.hosts[:n]:
            v = h["veths"][0]
            with open(f"/sys/class/net/{v}/statistics/tx_bytes") as f:
                out.append(int(f.read()))
        return out

    def exec_all(self, n, script):
        def one(h):
            pid = str(h["sshd"]["pid"])
            subprocess.run(["nsenter", "--target", pid, "--all", "--root", "--wd", "--",
                            "/bin/sh", "-c", script], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with ThreadPoolExecutor(max_workers=8) as ex:
            list(ex.map(one, self.hosts[:n]))

    def down(self):
        subprocess.run([self.kiln, "lab", "down", "--name", self.name, "--dir", self.dir],
                       stdout=subprocess.DEVNULL)


def timed(argv, env, log):
    """Runs argv with stdout+stderr to `log`; returns (seconds, peak RSS KiB, exit code, CPU s)."""
    with open(log, "w") as out:
        t = time.monotonic()
        p = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
        _, status, ru = os.wait4(p.pid, 0)
        secs = time.monotonic() - t
        p.returncode = os.waitstatus_to_exitcode(status)
    return secs, ru.ru_maxrss, p.returncode, ru.ru_utime + ru.ru_stime


def mux_daemons():
    """kiln's connection daemons (`kiln mux daemon`): pid -> (CPU seconds so far, VmRSS KiB)."""
    out = {}
    tck = os.sysconf("SC_CLK_TCK")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
            if cmd[1:3] != [b"mux", b"daemon"]:
                continue
            st = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            rss = next(int(l.split()[1]) for l in open(f"/proc/{pid}/status")
                       if l.startswith("VmRSS:"))
            out[int(pid)] = ((int(st[11]) + int(st[12])) / tck, rss)
        except (OSError, StopIteration, IndexError, ValueError):
            pass
    return out


class Bench:
    def __init__(self, a):
        self.a = a
        self.work = os.path.abspath(a.work)
        os.makedirs(self.work, exist_ok=True)
        self.cp = os.path.join(self.work, "cp")
        os.makedirs(self.cp, exist_ok=True)
        self.results = []  # dicts
        self.ansible_pair = {}  # (tasks, hosts) -> seconds of one cold+warm pair
        self.ansible_total = 0.0
        self.skipped = []

    def ansible_cfg(self, n):
        p = os.path.join(self.work, f"ansible-{n}.cfg")
        with open(p, "w") as f:
            f.write(f"""[defaults]
forks = {n}
host_key_checking = True
retry_files_enabled = False
interpreter_python = /usr/bin/python3
local_tmp = {self.work}/ansible-local
[ssh_connection]
pipelining = True
ssh_args = -o ControlMaster=auto -o ControlPersist=60s -o KexAlgorithms=curve25519-sha256
control_path_dir = {self.cp}
""")
        return p

    def close_masters(self):
        for s in os.listdir(self.cp):
            subprocess.run(["ssh", "-o", f"ControlPath={os.path.join(self.cp, s)}", "-O", "exit",
                            "x"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def clean(self, lab, n):
        self.close_masters()
        subprocess.run([self.a.kiln, "mux", "stop"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        lab.exec_all(n, "rm -rf /tmp/kbench /root/.cache/kiln /root/.ansible")

    def run_one(self, lab, tool, book, tasks, n, phase, rep):
        inv = os.path.join(self.work, f"inventory-{n}.ini")
        log = os.path.join(self.work, "logs", f"{tool}-{os.path.basename(book)}-{n}-{phase}-{rep}.log")
        os.makedirs(os.path.dirname(log), exist_ok=True)
        env = dict(os.environ)
        if tool == "kiln":
            env["KILN_AGENT_BINARY"] = self.a.agent
            env["KILN_LOG"] = "warn,kiln::transport::upload=info"
            env["NO_COLOR"] = "1"
            argv = [self.a.kiln, "-i", inv, "playbook", "run", "-f", str(n), book]
        else:
            env["ANSIBLE_CONFIG"] = self.ansible_cfg(n)
            env["ANSIBLE_NOCOLOR"] = "1"
            argv = [os.path.join(self.a.venv, "bin", "ansible-playbook"), "-i", inv, "-f", str(n),
                    book]
        before = lab.tx_bytes(n)
        d0 = mux_daemons()
        secs, rss, rc, cpu = timed(argv, env, log)
        d1 = mux_daemons()
        after = lab.tx_bytes(n)
        if tool == "kiln":
            # the connection daemon works for the run but is not its child: count it too
            for pid, (dcpu, drss) in d1.items():
                cpu += dcpu - d0.get(pid, (0.0, 0))[0]
                rss += drss
        text = ANSI.sub("", open(log, errors="replace").read())
        recap = {m[0]: tuple(int(x) for x in m[1:]) for m in RECAP.findall(text)}
        problems = []
        if rc != 0:
            problems.append(f"exit {rc}")
        names = [h["name"] for h in lab.hosts[:n]]
        for h in names:
            r = recap.get(h)
            if r is None:
                problems.append(f"{h}: no recap")
                continue
            ok, changed, unreach, failed = r
            if failed or unreach or ok != tasks:
                problems.append(f"{h}: ok={ok} changed={changed} unreachable={unreach} failed={failed}")
            if phase == "warm" and changed:
                problems.append(f"{h}: changed={changed} on the warm run")
        upload = sum(int(x) for x in UPLOAD.findall(text)) if tool == "kiln" else None
        r = dict(tool=tool, book=os.path.basename(book), tasks=tasks, hosts=n, phase=phase,
                 rep=rep, secs=secs, rss_kib=rss, cpu=cpu,
                 tx_per_host=statistics.mean(b - a for a, b in zip(before, after)),
                 upload=upload, problems=problems, log=log)
        self.results.append(r)
        flag = "" if not problems else "  INVALID: " + "; ".join(problems[:3])
        print(f"  {tool:7} {r['book']:10} hosts={n:<3} {phase:4} rep {rep}: {secs:8.3f} s  "
              f"cpu {cpu:6.2f} s  rss {rss/1024:6.1f} MiB  {r['tx_per_host']/1024:8.1f} KiB/host"
              + (f"  agent upload {upload} B" if upload is not None else "") + flag, flush=True)
        return r

    def ansible_estimate(self, tasks, n):
        """Seconds one ansible cold+warm pair would take, scaled from the nearest measured cell
        by task count and (sub-linearly, as forks = hosts) by host count."""
        best = None
        for (t, h), secs in self.ansible_pair.items():
            est = secs * tasks / t * (n / h) ** 0.8
            if best is None or abs(h - n) + abs(t - tasks) < best[0]:
                best = (abs(h - n) + abs(t - tasks), est)
        return best[1] if best else 0.0

    def cell(self, lab, book, tasks, n):
        lab.inventory(os.path.join(self.work, f"inventory-{n}.ini"), n)
        ans_spent, ans_reps = 0.0, 0
        est = self.ansible_estimate(tasks, n)
        run_ansible = not self.a.no_ansible
        if run_ansible and self.ansible_total + est > self.a.ansible_budget:
            run_ansible = False
            self.skipped.append(f"ansible-core not run for {os.path.basename(book)} × {n} hosts: "
                                f"estimated {est:.0f} s per cold+warm pair, over the remaining "
                                f"budget ({self.a.ansible_budget - self.ansible_total:.0f} s of "
                                f"{self.a.ansible_budget:.0f} s)")
            print("  " + self.skipped[-1], flush=True)
        for rep in range(1, self.a.reps + 1):
            self.clean(lab, n)
            self.run_one(lab, "kiln", book, tasks, n, "cold", rep)
            self.run_one(lab, "kiln", book, tasks, n, "warm", rep)
            if not run_ansible:
                continue
            # ansible: as many repetitions as fit the cell's budget (at least one)
            if ans_reps and ans_spent / ans_reps * (ans_reps + 1) > self.a.ansible_cell_budget:
                continue
            self.clean(lab, n)
            c = self.run_one(lab, "ansible", book, tasks, n, "cold", rep)
            w = self.run_one(lab, "ansible", book, tasks, n, "warm", rep)
            ans_spent += c["secs"] + w["secs"]
            ans_reps += 1
            self.ansible_pair[(tasks, n)] = (c["secs"] + w["secs"])
        self.ansible_total += ans_spent
        self.clean(lab, n)


def overhead(b, lab, here, hosts, reps):
    """kiln's own cost per task: 100 ping tasks against 1, warm, on 1 host and on the most hosts.
    A ping task is one no-op round trip on the open agent channel (the floor, measured alone by
    tests/transport_bench.rs), so (T100 - T1) / 99 minus that round trip is the engine's cost."""
    out = {}
    for n in sorted({1, max(hosts)}):
        lab.inventory(os.path.join(b.work, f"inventory-{n}.ini"), n)
        for count in (1, 100):
            book = os.path.join(here, f"ping{count}.yml")
            b.run_one(lab, "kiln", book, count, n, "warm", 0)  # agent in the cache
            t = [b.run_one(lab, "kiln", book, count, n, "warm", r)["secs"] for r in range(1, reps + 1)]
            out[(n, count)] = statistics.median(t)
    b.results = [r for r in b.results if not r["book"].startswith("ping")]
    return out


def summarize(results, meta, skipped, ping=None, floor=None):
    def sel(**k):
        return [r for r in results if all(r[x] == v for x, v in k.items())]

    rows = []
    for book in sorted({r["book"] for r in results}, key=lambda b: int(re.sub(r"\D", "", b))):
        for n in sorted({r["hosts"] for r in results}):
            for phase in ("cold", "warm"):
                row = dict(book=book, hosts=n, phase=phase)
                for tool in ("kiln", "ansible"):
                    rs = sel(tool=tool, book=book, hosts=n, phase=phase)
                    if not rs:
                        row[tool] = None
                        continue
                    t = [r["secs"] for r in rs]
                    row[tool] = dict(
                        median=statistics.median(t), min=min(t), max=max(t), reps=len(t),
                        rss=max(r["rss_kib"] for r in rs) / 1024,
                        cpu=statistics.median(r["cpu"] for r in rs),
                        tx=statistics.median(r["tx_per_host"] for r in rs) / 1024,
                        upload=(max(r["upload"] for r in rs) if tool == "kiln" else None),
                        invalid=sum(1 for r in rs if r["problems"]))
                if row["kiln"]:
                    rows.append(row)
    lines = [
        "| playbook | hosts | run | kiln median (min–max) | ansible median (min–max) | kiln/ansible | "
        "kiln faster | controller CPU kiln / ansible | peak RSS kiln / ansible | KiB sent per host kiln / ansible | kiln agent upload | reps k/a |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def fmt(x):
        return f"{x:.3f} s" if x < 10 else f"{x:.1f} s"

    for r in rows:
        k, a = r["kiln"], r["ansible"]
        kt = f"{fmt(k['median'])} ({fmt(k['min'])}–{fmt(k['max'])})"
        at = f"{fmt(a['median'])} ({fmt(a['min'])}–{fmt(a['max'])})" if a else "–"
        ratio = f"{k['median'] / a['median']:.4f}" if a else "–"
        speed = f"{a['median'] / k['median']:.0f}×" if a else "–"
        rss = f"{k['rss']:.1f} / {a['rss']:.1f} MiB" if a else f"{k['rss']:.1f} MiB / –"
        cpu = f"{k['cpu']:.2f} / {a['cpu']:.1f} s" if a else f"{k['cpu']:.2f} s / –"
        tx = f"{k['tx']:.0f} / {a['tx']:.0f}" if a else f"{k['tx']:.0f} / –"
        up = f"{k['upload'] / 1024:.0f} KiB" if k["upload"] else "0"
        bad = ""
        if k["invalid"] or (a and a["invalid"]):
            bad = " **INVALID**"
        lines.append(f"| {r['book']} | {r['hosts']} | {r['phase']}{bad} | {kt} | {at} | {ratio} | {speed} | "
                     f"{cpu} | {rss} | {tx} | {up} | {k['reps']}/{a['reps'] if a else 0} |")
    # derived figures against the targets
    notes = []

    def med(tool, book, n, phase):
        rs = sel(tool=tool, book=book, hosts=n, phase=phase)
        return statistics.median(r["secs"] for r in rs) if rs else None

    def peak(tool, book, n, phase):
        rs = sel(tool=tool, book=book, hosts=n, phase=phase)
        return max(r["rss_kib"] for r in rs) / 1024 if rs else None

    hs = sorted({r["hosts"] for r in results})
    for phase in ("cold", "warm"):
        k, a = med("kiln", "mix20.yml", 3, phase), med("ansible", "mix20.yml", 3, phase)
        if k and a:
            notes.append(f"- 20 tasks × 3 hosts, {phase}: kiln {a / k:.0f}× faster than ansible-core "
                         f"(target ≥100×)")
    for n in hs:
        k20, k100 = med("kiln", "mix20.yml", n, "warm"), med("kiln", "mix100.yml", n, "warm")
        if k20 and k100:
            notes.append(f"- kiln, warm, {n} host(s): {(k100 - k20) / 80 * 1000:.2f} ms per task "
                         f"(mix100 − mix20 over 80 tasks; all hosts run each task together)")
    if 1 in hs and 30 in hs:
        for book in ("mix20.yml", "mix100.yml"):
            for phase in ("cold", "warm"):
                k1, k30 = med("kiln", book, 1, phase), med("kiln", book, 30, phase)
                if k1 and k30:
                    notes.append(f"- kiln {book} {phase}: 30 hosts take {k30 / k1:.2f}× the wall time "
                                 f"of 1 host (target ≤3×)")
        for book in ("mix20.yml", "mix100.yml"):
            p1, p30 = peak("kiln", book, 1, "warm"), peak("kiln", book, 30, "warm")
            if p1 and p30:
                notes.append(f"- kiln {book} peak RSS: {p1:.1f} MiB at 1 host, {p30:.1f} MiB at 30: "
                             f"{(p30 - p1) / 29:.2f} MiB per added host (target ≤5)")
    warm_up = [r["upload"] for r in results if r["tool"] == "kiln" and r["phase"] == "warm"]
    if warm_up:
        notes.append(f"- kiln agent bytes uploaded on warm runs: {max(warm_up)} (target 0)")
    if ping:
        for n in sorted({h for h, _ in ping}):
            per = (ping[(n, 100)] - ping[(n, 1)]) / 99 * 1000
            notes.append(f"- kiln, 100 ping tasks vs 1, warm, {n} host(s): {per:.3f} ms per task "
                         f"(median of {meta['ping_reps']}; every host runs each task)"
                         + (f"; {per / n:.3f} ms per task per host" if n > 1 else ""))
    if floor:
        notes.append(f"- floor (tests/transport_bench.rs, release): {floor}")
    notes += [f"- {x}" for x in skipped]
    inv = [r for r in results if r["problems"]]
    if inv:
        notes.append(f"- {len(inv)} run(s) failed their recap check (see the logs): "
                     + "; ".join(f"{r['tool']} {r['book']} {r['hosts']} {r['phase']}: {r['problems'][0]}"
                                 for r in inv[:5]))
    head = [f"Machine: {meta['machine']}", f"ansible-core {meta['ansible']}, kiln {meta['kiln']}, "
            f"{meta['date']}; {meta['note']}", ""]
    return "\n".join(head + lines + [""] + notes) + "\n"


def machine():
    cpu = "?"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(open("/proc/meminfo").readline().split()[1]) // 1024 // 1024
    return f"{os.cpu_count()} vCPU ({cpu}), {mem} GiB, {os.uname().sysname} {os.uname().release}; " \
           f"load average at start {os.getloadavg()[0]:.2f}"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--kiln", required=True)
    p.add_argument("--agent", required=True)
    p.add_argument("--venv", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--hosts", default="1,3,10,30")
    p.add_argument("--books", default="20,100")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--ansible-cell-budget", type=float, default=60.0,
                   help="seconds of ansible runs per cell; repetitions stop once the next would exceed it")
    p.add_argument("--ansible-budget", type=float, default=600.0,
                   help="seconds of ansible runs in all; a cell whose estimate exceeds what is left is not run")
    p.add_argument("--no-ansible", action="store_true")
    p.add_argument("--no-overhead", action="store_true", help="skip the 1-vs-100 ping runs")
    p.add_argument("--floor", default="", help="the transport floor line to print with the table")
    p.add_argument("--md", required=True)
    p.add_argument("--keep-lab", action="store_true")
    a = p.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    hosts = [int(x) for x in a.hosts.split(",")]
    books = [int(x) for x in a.books.split(",")]
    b = Bench(a)
    started = time.monotonic()
    lab = Lab(a.kiln, "kbench", os.path.join(b.work, "lab"), max(hosts))
    print(f"lab: {len(lab.hosts)} hosts up in {lab.up_secs:.1f} s", flush=True)
    ping = None
    try:
        for nt in books:
            for n in hosts:
                b.cell(lab, os.path.join(here, f"mix{nt}.yml"), nt, n)
        if not a.no_overhead:
            ping = overhead(b, lab, here, hosts, a.reps)
    finally:
        b.close_masters()
        if not a.keep_lab:
            lab.down()
    ans = sh([os.path.join(a.venv, "bin", "ansible"), "--version"]).stdout.split("\n")[0]
    ans = re.sub(r".*\[core ([^\]]+)\].*", r"\1", ans)
    meta = dict(machine=machine(), ansible=ans,
                kiln=sh([a.kiln, "--version"]).stdout.strip(),
                date=time.strftime("%Y-%m-%d"),
                note=(f"{a.reps} repetitions per cell for kiln; ansible as many as fit "
                      f"{a.ansible_cell_budget:.0f} s per cell (column reps) within "
                      f"{a.ansible_budget:.0f} s of ansible runs in all; whole run "
                      f"{(time.monotonic() - started) / 60:.1f} min"))
    meta["ping_reps"] = a.reps
    md = summarize(b.results, meta, b.skipped, ping, a.floor)
    with open(a.md, "w") as f:
        f.write(md)
    with open(os.path.join(b.work, "results.json"), "w") as f:
        json.dump(dict(meta=meta, results=b.results), f, indent=1)
    print()
    print(md)
    return 1 if any(r["problems"] for r in b.results) else 0


if __name__ == "__main__":
    sys.exit(main())
