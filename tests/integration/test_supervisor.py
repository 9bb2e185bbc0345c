"""finejobs.runtime.supervisor.Supervisor with real child processes (small Python one-liners, no database)."""

from __future__ import annotations

import io
import sys
import tempfile

from finejobs.runtime.supervisor import ChildSpec, Supervisor


def _child(code: str, tag: str = "worker 1/1") -> ChildSpec:
    return ChildSpec([sys.executable, "-c", code], tag=tag)


def test_children_that_end_cleanly_end_the_supervisor_with_0_and_their_lines_are_tagged() -> None:
    out, err = io.StringIO(), io.StringIO()
    children = [_child(f"import sys; print('hello {i}'); print('oops {i}', file=sys.stderr)", f"worker {i}/2")
                for i in (1, 2)]
    assert Supervisor(children, out=out, err=err, poll=0.02).run(install_signal_handlers=False) == 0
    assert sorted(out.getvalue().splitlines()) == ["[worker 1/2] hello 1", "[worker 2/2] hello 2"]
    assert sorted(err.getvalue().splitlines()) == ["[worker 1/2] oops 1", "[worker 2/2] oops 2"]


def test_a_child_failing_again_and_again_is_restarted_then_given_up_on() -> None:
    out = io.StringIO()
    supervisor = Supervisor([_child("print('try'); raise SystemExit(3)")], max_failures=3, out=out, poll=0.02)
    assert supervisor.run(install_signal_handlers=False) == 1
    assert supervisor.restarts == 2  # started 3 times: the third failure in a row gives up
    assert out.getvalue().splitlines() == ["[worker 1/1] try"] * 3


def test_a_usage_error_is_not_restarted() -> None:
    supervisor = Supervisor([_child("raise SystemExit(2)")], out=io.StringIO(), poll=0.02)
    assert supervisor.run(install_signal_handlers=False) == 1
    assert supervisor.restarts == 0


def test_a_child_stable_long_enough_starts_its_failure_count_again() -> None:
    # every run counts as stable (stable_after=0): failures never pile up to max_failures=2 ... until the
    # child stops failing: it exits 0 on its third start (a file counts the starts)
    code = ("import pathlib, sys; p = pathlib.Path(sys.argv[1]); n = int(p.read_text() or 0) + 1; "
            "p.write_text(str(n)); raise SystemExit(0 if n >= 3 else 1)")
    with tempfile.NamedTemporaryFile("w+", suffix=".count") as counter:
        spec = ChildSpec([sys.executable, "-c", code, counter.name])
        supervisor = Supervisor([spec], max_failures=2, stable_after=0.0, out=io.StringIO(), poll=0.02)
        assert supervisor.run(install_signal_handlers=False) == 0
        assert supervisor.restarts == 2
