"""Ctrl-C during `search` and `optimal`: the best plan so far, marked interrupted, exit 130 and no
traceback; progress is reported only to a reporter that asked, on a terminal (search/progress.py)."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest

import schedc
from schedc.search import local_search, progress
from schedc.search.exact import solver_installed
from schedc.search.local_search import search_order

BIG = ("pipeline big { ranks = 8  microbatches = 32  placement = v  schedule = %s  search_time = 60 "
       "cost { F = 1  B = 2.3  W = 0.7  comm = 0.13  stage 3 { F = 1.7 } } "
       "memory { activation = 1  limit = 12 } }")


def _spec(schedule: str = "search"):
    [spec] = schedc.parse(BIG % schedule, "big.sched")
    return spec


def interrupt_after_five_schedules(monkeypatch) -> None:
    """Ctrl-C as the search's sixth list schedule starts."""
    calls = {"n": 0}
    real = local_search.list_schedule

    def stopping(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(local_search, "list_schedule", stopping)


def test_search_interrupted_returns_the_best_so_far(monkeypatch):
    interrupt_after_five_schedules(monkeypatch)
    found = search_order(replace(_spec(), search_time=0.5))
    assert found.interrupted and "interrupted, not proven" in found.found_by
    assert found.makespan < float("inf") and found.rows


def test_search_interrupted_before_any_plan_raises(monkeypatch):
    def nothing_yet(spec, prob):
        raise KeyboardInterrupt
        yield  # a generator, as family_seeds is

    monkeypatch.setattr(local_search, "family_seeds", nothing_yet)
    with pytest.raises(KeyboardInterrupt):
        search_order(replace(_spec(), search_time=0.5))


def test_search_not_interrupted_says_nothing_of_it():
    found = search_order(replace(_spec(), search_time=0.1))
    assert not found.interrupted and "interrupted" not in found.found_by


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_goes_only_to_a_terminal_and_not_when_quiet():
    report = progress.Progress("search", 103.4, 100.2, 4.1)
    for stream, quiet, shown in ((io.StringIO(), False, False), (_Terminal(), True, False), (_Terminal(), False, True)):
        reporter = progress.TerminalReporter(stream, quiet=quiet)
        reporter(report)
        reporter.close()
        assert ("best 103.4, bound 100.2 (gap 3.19%), 4.1 s" in stream.getvalue()) == shown


def test_search_reports_progress_past_the_quiet_time(monkeypatch):
    monkeypatch.setattr(progress, "QUIET_FOR", 0.0)
    monkeypatch.setattr(progress, "EVERY", 0.0)
    seen = []
    with progress.reporting(seen.append):
        search_order(replace(_spec(), search_time=0.1))
    assert seen and all(p.stage == "search" and p.bound > 0 for p in seen)
    assert all(p.best is None or p.best >= p.bound - 1e-9 for p in seen)


def _interrupt(schedule: str, tmp_path, after: float) -> subprocess.CompletedProcess:
    path = tmp_path / "big.sched"
    path.write_text(BIG % schedule)
    child = subprocess.Popen([sys.executable, "-m", "schedc", "simulate", str(path)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(after)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    return subprocess.CompletedProcess(child.args, child.returncode, out, err)


def test_ctrl_c_during_search_prints_the_best_plan_and_exits_130(tmp_path):
    done = _interrupt("search", tmp_path, after=6.0)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr
    assert "interrupted" in done.stderr
    assert "interrupted, not proven" in done.stdout and "makespan" in done.stdout


@pytest.mark.skipif(not solver_installed(), reason="needs OR-Tools (schedc[optimal])")
def test_ctrl_c_during_optimal_never_claims_the_solver_ran_out_of_time(tmp_path):
    done = _interrupt("optimal", tmp_path, after=8.0)  # a loaded machine: let CP-SAT find a first plan
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr
    assert "found nothing better in time" not in done.stdout
    assert "interrupted" in done.stdout and "gap" in done.stdout


def test_a_picture_of_an_interrupted_search_is_not_drawn(monkeypatch, tmp_path, capsys):
    """viz (and viz --compare, partition --viz) draws nothing from a plan Ctrl-C cut short: it says
    it was interrupted and exits 130, and the output file is not written."""
    from schedc.cli import main

    interrupt_after_five_schedules(monkeypatch)
    path = tmp_path / "big.sched"
    path.write_text((BIG % "search").replace("search_time = 60", "search_time = 1"))
    out = tmp_path / "big.svg"
    assert main(["viz", str(path), "-o", str(out)]) == 130
    assert not out.exists() and "interrupted" in capsys.readouterr().err


LAYERED = ("pipeline layered { ranks = 4  microbatches = 8  placement = v  schedule = search  search_time = 1 "
           "stages = auto  layers { embed { F = 2  activation = 1  params = 2 } "
           "block * 10 { F = 1  activation = 1  params = 1 }  head { F = 3  params = 2 } } }")


def test_partition_stops_when_its_schedule_search_is_interrupted(monkeypatch, tmp_path, capsys):
    """Ctrl-C in the `schedule = search` that `schedc partition` compiles: the split loop does not
    go on; the best split scored so far is printed, marked interrupted, and the exit is 130."""
    from schedc.cli import main
    from schedc.partition import best_split

    def no_family(spec, prob):  # the search must list-schedule (a family's plan is at the bound)
        return iter(())

    monkeypatch.setattr(local_search, "family_seeds", no_family)
    interrupt_after_five_schedules(monkeypatch)
    climbs = []
    monkeypatch.setattr(best_split.SplitSearch, "_climb", lambda self, *a: climbs.append(a))
    path = tmp_path / "layered.sched"
    path.write_text(LAYERED)
    assert main(["partition", str(path), "--json"]) == 130
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["interrupted"] is True and not report["exact"] and report["makespan"] > 0
    assert report["evaluated"] < 10 and not climbs  # the anchors and the min-max split only
    assert "interrupted" in captured.err and "Traceback" not in captured.err


def test_partition_interrupted_in_its_split_loop_prints_the_best_so_far(monkeypatch, tmp_path, capsys):
    from schedc.cli import main
    from schedc.partition.evaluate import Evaluator

    real, calls = Evaluator.evaluate, {"n": 0}

    def stopping(self, bounds):  # one Ctrl-C, at the fourth split
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(self, bounds)

    monkeypatch.setattr(Evaluator, "evaluate", stopping)
    path = tmp_path / "layered.sched"
    path.write_text(LAYERED.replace("schedule = search  search_time = 1", "schedule = zbv"))
    assert main(["partition", str(path)]) == 130
    captured = capsys.readouterr()
    assert "interrupted, not proven" in captured.out and "makespan" in captured.out
    assert "interrupted" in captured.err and calls["n"] < 20
