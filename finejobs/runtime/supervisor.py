"""Supervisor: ``finejobs worker --processes N`` runs N worker processes and keeps them running.

Each child is a process of its own (``python -m finejobs worker ...`` with the same options, minus
``--processes``): no pickle, no shared state, a crash in one cannot corrupt another. The supervisor

- tags every line a child writes: ``[worker 1/2] ...`` on stdout for its stdout, on stderr for its stderr
  (one reader thread per stream, whole lines, never interleaved);
- forwards SIGTERM/SIGINT to every child (a graceful stop: each finishes its running jobs within its
  ``--shutdown-grace``) and waits for them; a second signal is forwarded too, and each child then exits at
  once as a lone worker does (their leases bring the running jobs back);
- restarts a child that exits on its own with a non-zero status or is killed by a signal, after a
  jittered exponential backoff (``backoff_seconds``, the services' own: about 0.2 s, 0.4 s, 0.8 s, ... at
  most 10 s); the count of failures in a row resets once a child has run ``stable_after`` seconds;
- gives up when a child exits with status 2 (a usage error: a restart cannot help) or fails
  ``max_failures`` times in a row: it then stops the other children gracefully and exits 1;
- a child that exits 0 on its own (someone sent it a SIGTERM) is not restarted.

Exit status: 0 after a clean stop (every child exited 0), 1 if it gave up on a child or a child did not
stop cleanly. Children run in a session of their own, so a terminal's Ctrl-C reaches them once, through
the supervisor. Their stdin is a pipe from the supervisor: when the supervisor dies, even by SIGKILL, the
pipe closes and each child stops gracefully (``watch_supervisor``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import IO

from finejobs.runtime.services import backoff_seconds

log = logging.getLogger("finejobs.supervisor")

SUPERVISED_ENV = "FINEJOBS_SUPERVISED"  # set in every child: watch stdin, stop when the supervisor is gone
USAGE_ERROR = 2  # the CLI's status for a usage error
GAVE_UP = 1


@dataclass(frozen=True)
class ChildSpec:
    """One child process: its command line, the environment variables added to ours, and its log tag."""

    argv: Sequence[str]
    env: dict[str, str] = field(default_factory=dict)
    tag: str = "worker"


@dataclass
class _Slot:
    spec: ChildSpec
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    failures: int = 0  # in a row
    restart_at: float | None = None
    done: bool = False  # exited and will not be started again
    code: int | None = None
    readers: list[threading.Thread] = field(default_factory=list)


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


class Supervisor:
    """Run the children, restart the ones that crash, stop them all on SIGTERM/SIGINT."""

    def __init__(self, children: Sequence[ChildSpec], *, cwd: str | None = None, stop_timeout: float = 60.0,
                 stable_after: float = 30.0, max_failures: int = 5, poll: float = 0.1,
                 out: IO[str] | None = None, err: IO[str] | None = None) -> None:
        self.slots = [_Slot(spec) for spec in children]
        self.cwd = cwd
        self.stop_timeout = stop_timeout  # after a forwarded SIGTERM, how long until children are killed
        self.stable_after = stable_after
        self.max_failures = max_failures
        self.poll = poll
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self._write_lock = threading.Lock()
        self._stopping = threading.Event()
        self._stop_signal = signal.SIGTERM
        self._stop_deadline: float | None = None
        self._gave_up = False
        self.restarts = 0

    # ------------------------------------------------------------ children

    def _start(self, slot: _Slot) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1", **slot.spec.env)
        env[SUPERVISED_ENV] = "1"
        proc = subprocess.Popen(list(slot.spec.argv), cwd=self.cwd, env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        slot.proc, slot.started, slot.restart_at, slot.code = proc, time.monotonic(), None, None
        assert proc.stdout is not None and proc.stderr is not None
        slot.readers = [threading.Thread(target=self._pump, args=(stream, target, slot.spec.tag),
                                         name=f"supervisor-{slot.spec.tag}-{name}", daemon=True)
                        for stream, target, name in ((proc.stdout, self.out, "out"), (proc.stderr, self.err, "err"))]
        for reader in slot.readers:
            reader.start()
        log.info("%s started: pid %d", slot.spec.tag, proc.pid)
        if self._stopping.is_set():  # a signal came while it was being started
            proc.send_signal(self._stop_signal)

    def _pump(self, stream: IO[bytes], target: IO[str], tag: str) -> None:
        """Copy a child's stream line by line, each line prefixed with its tag."""
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            self._write(target, f"[{tag}] {line}\n")
        stream.close()

    def _write(self, target: IO[str], text: str) -> None:
        with self._write_lock:
            try:
                target.write(text)
                target.flush()
            except (OSError, ValueError):  # our own output is gone: keep draining the child's pipe
                pass

    def _reap(self, slot: _Slot, code: int) -> None:
        """A child ended: wait for its last lines, then decide whether it is started again."""
        assert slot.proc is not None
        for reader in slot.readers:
            reader.join(2.0)
        if slot.proc.stdin is not None:
            slot.proc.stdin.close()
        ran = time.monotonic() - slot.started
        pid, slot.proc, slot.code = slot.proc.pid, None, code
        if self._stopping.is_set():
            slot.done = True
            if code == -self._stop_signal:  # ended by the signal passed on before it could handle it: it had
                code = slot.code = 0  # not started claiming (a worker handles signals before its first claim)
            level = logging.INFO if code == 0 else logging.WARNING
            log.log(level, "%s (pid %d) %s", slot.spec.tag, pid, "stopped" if code == 0 else describe_exit(code))
            return
        if code == 0:
            slot.done = True
            log.warning("%s (pid %d) exited with status 0 on its own (it was stopped): not restarted",
                        slot.spec.tag, pid)
            return
        if code == USAGE_ERROR:
            log.error("%s (pid %d) exited with status 2 (a usage error): giving up", slot.spec.tag, pid)
            self._give_up()
            return
        slot.failures = 1 if ran >= self.stable_after else slot.failures + 1
        if slot.failures >= self.max_failures:
            log.error("%s (pid %d) %s, %d times in a row within %gs of starting: giving up", slot.spec.tag, pid,
                      describe_exit(code), slot.failures, self.stable_after)
            self._give_up()
            return
        wait = backoff_seconds(slot.failures)
        slot.restart_at = time.monotonic() + wait
        log.warning("%s (pid %d) %s after %.1fs: restarting in %.1fs (failure %d in a row)", slot.spec.tag, pid,
                    describe_exit(code), ran, wait, slot.failures)

    def _give_up(self) -> None:
        self._gave_up = True
        self._begin_stop(signal.SIGTERM)

    # ------------------------------------------------------------ stopping

    def _begin_stop(self, signum: int) -> None:
        self._stopping.set()
        self._stop_signal = signal.Signals(signum)
        self._stop_deadline = time.monotonic() + self.stop_timeout
        for slot in self.slots:
            if slot.proc is None:
                slot.done = True  # waiting to be restarted: not any more
        self._signal_children(signum)

    def _signal_children(self, signum: int) -> None:
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    slot.proc.send_signal(signum)

    def _handle_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self._stopping.is_set():
            log.warning("second %s: passing it on, the workers exit at once (leases bring running jobs back)", name)
            self._signal_children(signum)
            soon = time.monotonic() + 5.0
            self._stop_deadline = soon if self._stop_deadline is None else min(self._stop_deadline, soon)
            return
        log.info("%s: stopping %d worker process(es) (send it again to make them exit at once)", name,
                 sum(1 for s in self.slots if s.proc is not None))
        self._begin_stop(signum)

    # ------------------------------------------------------------ the loop

    def run(self, *, install_signal_handlers: bool = True) -> int:
        """Run until every child has stopped; returns the exit status (0 clean stop, 1 otherwise)."""
        if install_signal_handlers:
            signal.signal(signal.SIGTERM, self._handle_signal)
            signal.signal(signal.SIGINT, self._handle_signal)
        log.info("supervisor (pid %d): starting %d worker processes", os.getpid(), len(self.slots))
        try:
            for slot in self.slots:
                if not self._stopping.is_set():
                    self._start(slot)
            while not all(slot.done for slot in self.slots):
                self._tick()
                time.sleep(self.poll)
        finally:
            self._kill_all()
        clean = not self._gave_up and all(slot.code in (0, None) for slot in self.slots)
        log.info("supervisor: %s", "all worker processes stopped" if clean else "stopped, not cleanly (exit 1)")
        return 0 if clean else GAVE_UP

    def _tick(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            if slot.proc is not None:
                code = slot.proc.poll()
                if code is not None:
                    self._reap(slot, code)
            elif not slot.done and slot.restart_at is not None and now >= slot.restart_at \
                    and not self._stopping.is_set():
                self.restarts += 1
                self._start(slot)
        if self._stop_deadline is not None and now > self._stop_deadline:
            left = [s for s in self.slots if s.proc is not None and s.proc.poll() is None]
            if left:
                log.error("%d worker process(es) still running after the stop timeout: killing them", len(left))
                self._kill_all()
            self._stop_deadline = None

    def _kill_all(self) -> None:
        self._stopping.set()
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is None:
                slot.proc.kill()
        for slot in self.slots:
            if slot.proc is not None:
                self._reap(slot, slot.proc.wait())
                slot.done = True


def watch_supervisor(fd: int = 0) -> threading.Thread:
    """In a child: when the supervisor's pipe on ``fd`` (stdin) closes (it died), stop this process gracefully.

    Reads the raw descriptor (no buffered stream: a daemon thread blocked in one would hold its lock when
    the interpreter exits)."""

    def watch() -> None:
        try:
            while os.read(fd, 4096):
                pass
        except OSError:
            pass
        log.warning("the supervisor is gone: stopping")
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="supervisor-watch", daemon=True)
    thread.start()
    return thread
