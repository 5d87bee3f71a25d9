"""Which local process listens on a port, and its CPU time (Linux /proc), for the benchmarks."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

_LISTEN = "0A"  # the TCP state in /proc/net/tcp


def listening_pids(ports: dict[str, int]) -> dict[str, int]:
    """name -> pid of the process listening on that TCP port here; names not found are left
    out (another host, or another user's process)."""
    inodes: dict[str, str] = {}
    wanted = {f"{port:04X}": name for name, port in ports.items()}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            port = fields[1].rsplit(":", 1)[1]
            if fields[3] == _LISTEN and port in wanted:
                inodes[f"socket:[{fields[9]}]"] = wanted[port]
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            links = [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except OSError:
            continue
        for link in links:
            if link in inodes:
                found.setdefault(inodes[link], int(entry.name))
    return found


def port_of(address: str, default: int) -> int:
    """The port of `host:port`, of a URL, or of the first of a comma-separated list."""
    first = address.split(",", maxsplit=1)[0]
    return urlsplit(first if "//" in first else f"//{first}").port or default


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and of all its living descendants (uvicorn or Celery workers).
    A process that ends meanwhile takes its time with it: measure while the tree is stable."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, of in parents.items() if of == parent]
        tree.update(children)
        frontier.extend(children)
    total = 0.0
    for member in tree:
        try:
            total += cpu_seconds(member)
        except OSError:
            continue  # ended since the listing
    return total


def free_port() -> int:
    """A loopback port free now, for a server the benchmark starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
