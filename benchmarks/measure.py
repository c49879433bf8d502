"""Running a command and measuring it: wall time, the child's own CPU time and peak RSS.

CPU and memory come from wait4(), so they are the measured process's alone,
not the benchmark's nor the test server's. Commands run either with stdout
a pipe, or on a pseudo-terminal (answering the cursor-position requests a
terminal answers), optionally stopping the clock when some output appears.
"""

from __future__ import annotations

import fcntl
import os
import select
import struct
import termios
import time
from dataclasses import dataclass
from pathlib import Path

CPR_REQUEST = b"\x1b[6n"


@dataclass(frozen=True)
class Sample:
    wall: float
    cpu: float
    rss_mb: float
    rate: float | None = None  # decode tokens a second, where a case measures it
    lag: float | None = None  # seconds from the server's last byte to the program's last output
    streaming: float | None = None  # CPU seconds after the program's first output (run_on_pty)


def cpu_so_far(pid: int) -> float | None:
    """The CPU seconds a running process has used (user and system, from /proc; None where
    there is no /proc). Clock ticks: 10 ms on most machines."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def run_decoding(command: list[str], env: dict[str, str]) -> Sample:
    """Run with stdout a pipe, and measure decoding as a reader sees it: the tokens after
    the first (the usage line on stderr, `tokens: N prompt + M completion`) over the time
    from the first byte of the answer to the last."""
    null = os.open(os.devnull, os.O_RDWR)
    read_end, write_end = os.pipe()
    err_read, err_write = os.pipe()
    started = time.perf_counter()
    pid = _spawn(command, env, null, write_end, err_write)
    for fd in (write_end, err_write, null):
        os.close(fd)
    first = last = None
    errors = b""
    open_fds = {read_end, err_read}
    while open_fds:
        ready, _, _ = select.select(list(open_fds), [], [])
        for fd in ready:
            data = os.read(fd, 65536)
            if not data:
                open_fds.discard(fd)
                os.close(fd)
            elif fd == read_end:
                first = first or time.perf_counter()
                last = time.perf_counter()
            else:
                errors += data
    sample = _reap(pid, started, None, command)
    words = errors.decode(errors="replace").split("tokens:", 1)[-1].split()
    count = words[3].replace(",", "") if len(words) > 3 else ""
    completion = int(count) if count.isdigit() else 0
    rate = (completion - 1) / (last - first) if first and last and last > first and completion > 1 else None
    return Sample(sample.wall, sample.cpu, sample.rss_mb, rate)


def _spawn(command: list[str], env: dict[str, str], stdin: int, stdout: int, stderr: int) -> int:
    """Start `command` with posix_spawn: unlike fork, the child never holds a copy of this
    process's memory, so its peak RSS is its own."""
    actions = [(os.POSIX_SPAWN_DUP2, stdin, 0), (os.POSIX_SPAWN_DUP2, stdout, 1),
               (os.POSIX_SPAWN_DUP2, stderr, 2)]
    return os.posix_spawnp(command[0], command, env, file_actions=actions, setsid=True)


def _reap(pid: int, started: float, stopped: float | None, command: list[str]) -> Sample:
    _, status, usage = os.wait4(pid, 0)
    ended = time.perf_counter()
    code = os.waitstatus_to_exitcode(status)
    if code != 0 and stopped is None:
        raise RuntimeError(f"{command} exited with {code}")
    return Sample(wall=(stopped or ended) - started, cpu=usage.ru_utime + usage.ru_stime,
                  rss_mb=usage.ru_maxrss / 1024)


def run_piped(command: list[str], env: dict[str, str]) -> Sample:
    """Run with stdout a pipe (as in `chatcli ask ... | less`), reading everything it writes."""
    null = os.open(os.devnull, os.O_RDWR)
    read_end, write_end = os.pipe()
    started = time.perf_counter()
    pid = _spawn(command, env, null, write_end, null)
    os.close(write_end)
    os.close(null)
    with os.fdopen(read_end, "rb") as output:
        while output.read(65536):
            pass
    return _reap(pid, started, None, command)


def run_on_pty(command: list[str], env: dict[str, str], *, until: bytes | None = None,
               then: bytes = b"", timeout: float = 120, mark: Path | None = None) -> Sample:
    """Run on a 120x40 pseudo-terminal; with `until`, the clock stops when that output appears
    and `then` is typed (Ctrl-D, to leave a prompt). With `mark`, the file where the test
    server writes the time.monotonic() of its last byte, the sample's lag is the time from
    then to the last output the program wrote (its final frame): CLOCK_MONOTONIC is one
    clock for every process of the machine. The sample's `streaming` is the CPU the program
    used after its first output: what a longer answer costs, without the start-up's noise."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    started = time.perf_counter()
    pid = _spawn(command, {**env, "TERM": "xterm-256color"}, slave, slave, slave)
    os.close(slave)
    stopped = None
    tail = b""
    last_output = 0.0
    before_output = None
    deadline = started + timeout
    try:
        while True:
            ready, _, _ = select.select([master], [], [], max(deadline - time.perf_counter(), 0))
            if not ready:
                os.kill(pid, 9)
                raise RuntimeError(f"{command} did not finish in {timeout}s")
            try:
                data = os.read(master, 65536)
            except OSError:  # the terminal's other side closed: the program ended
                break
            if not data:
                break
            last_output = time.monotonic()
            if before_output is None and data.replace(CPR_REQUEST, b""):
                before_output = cpu_so_far(pid)
            tail = tail[-32:] + data
            if CPR_REQUEST in tail:
                os.write(master, b"\x1b[1;1R")
                tail = tail.replace(CPR_REQUEST, b"")
            if until and stopped is None and until in tail:
                stopped = time.perf_counter()
                os.write(master, then)
    finally:
        os.close(master)
    sample = _reap(pid, started, stopped, command)
    streaming = None if before_output is None else max(sample.cpu - before_output, 0.0)
    lag = None
    if mark is not None:
        lag = last_output - float(mark.read_text())
        mark.unlink()
    return Sample(sample.wall, sample.cpu, sample.rss_mb, lag=lag, streaming=streaming)
