"""The host-side half of scripts/status.sh: the master's processes, then the health probe.

Run by the host's Python (3.6+, standard library only):
``python -c "$STATUS_PY" PID HOST PORT PATH SAMPLE TIMEOUT [HOST_HEADER]``, PID the live master's pid
(empty: none runs; status.sh has decided that with lib.sh's ``alive``). Prints key=value
lines: workers (the master's children), rss_kb (master and workers), uptime (seconds),
cpu (percent over SAMPLE seconds, when SAMPLE > 0), then health_status (the HTTP status of
one GET of PATH on HOST:PORT, with HOST_HEADER as its Host header when given) or
health_error, and health_ms.
"""

import contextlib
import http.client
import os
import sys
import time

pid, host, port, path, sample, timeout = sys.argv[1:7]
host_header = sys.argv[7] if len(sys.argv) > 7 else ""
tick = os.sysconf("SC_CLK_TCK")
page_kib = os.sysconf("SC_PAGE_SIZE") // 1024


def stat(p):
    """Fields of /proc/<p>/stat from the state on (index 0 is field 3)."""
    with open(f"/proc/{p}/stat") as f:
        data = f.read()
    return data[data.rindex(")") + 2 :].split()


def ticks(pids):
    """CPU ticks (user + system) of each of ``pids`` still running."""
    found = {}
    for p in pids:
        try:
            s = stat(p)
            found[p] = int(s[11]) + int(s[12])
        except (OSError, ValueError, IndexError):
            pass
    return found


def children(parent):
    """The pids whose parent is ``parent``."""
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if stat(d)[1] == parent:
                    found.append(d)
            except (OSError, IndexError):
                pass
    return sorted(found, key=int)


def processes(master):
    """Print the master's workers, memory, uptime and (over SAMPLE seconds) CPU use."""
    workers = children(master)
    pids = [master, *workers]
    print(f"workers={len(workers)}")
    rss = 0
    for p in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            rss += int(stat(p)[21]) * page_kib
    print(f"rss_kb={rss}")
    with open("/proc/uptime") as f:
        boot = float(f.read().split()[0])
    print(f"uptime={boot - int(stat(master)[19]) / tick:.0f}")
    if float(sample) > 0:
        before, t0 = ticks(pids), time.monotonic()
        time.sleep(float(sample))
        after, t1 = ticks(pids), time.monotonic()
        used = sum(after[p] - before[p] for p in after if p in before)
        print(f"cpu={used / tick / (t1 - t0) * 100:.1f}")


def probe():
    """Print the health path's HTTP status (or why there is none) and the time it took."""
    start = time.monotonic()
    try:
        conn = http.client.HTTPConnection(host, int(port), timeout=float(timeout))
        headers = {"User-Agent": "fabdeploy-monitor"}
        if host_header:
            headers["Host"] = host_header
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        conn.close()
        print(f"health_status={response.status}")
    except Exception as exc:
        print("health_error=" + " ".join((str(exc) or type(exc).__name__).split()))
    print(f"health_ms={(time.monotonic() - start) * 1000:.1f}")


if pid:
    processes(pid)
probe()
