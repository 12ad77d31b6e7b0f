"""Who is stuck, and a bound on how long a rank may stay stuck.

Every rank publishes what it is doing (`runner.current`: an instruction token, or a phase such as
"between steps", and since when) to the process group's c10d store, from a background thread, so
the runner pays nothing per instruction. When a transfer times out, the rank names its peers that
have been in one place for a while (`stuck_peers`: "rank 3 has been in F3.4 for 20 s"). The same
thread ends its rank when one thing has lasted longer than `limit` seconds (a stage that never
returns), so a rank started without torchrun, whose peers cannot kill it, still exits.
"""

from __future__ import annotations

import os
import sys
import threading
import time

KEY = "schedc/at/{rank}"


def publish(store, rank: int, label: str, since: float) -> None:
    store.set(KEY.format(rank=rank), f"{since!r}|{label}")


def stuck_peers(store, rank: int, world: int, at_least: float = 1.0) -> list[str]:
    """A line for each other rank that has been in one place for `at_least` seconds or more."""
    lines = []
    now = time.time()
    for peer in range(world):
        key = KEY.format(rank=peer)
        if peer == rank or not store.check([key]):
            continue
        since, label = store.get(key).decode().split("|", 1)
        seconds = now - float(since)
        if seconds >= at_least:
            lines.append(f"rank {peer} has been in {label} for {seconds:.0f} s")
    return lines


def wait_for_everyone(store, key: str, rank: int, world: int, patience: float,
                      interval: float = 0.05) -> list[int]:
    """Mark `rank` as arrived at `key` and wait, up to `patience` seconds, until all `world` ranks
    have: the meeting point after work without collectives (the --check reference run), whose
    length a collective's timeout must not bound. Returns the ranks still missing ([]: all came)."""
    store.set(f"{key}/{rank}", "1")
    keys = [f"{key}/{peer}" for peer in range(world)]
    deadline = time.monotonic() + patience
    while not store.check(keys):
        if time.monotonic() > deadline:
            return [peer for peer, k in enumerate(keys) if not store.check([k])]
        time.sleep(interval)
    return []


class Watchdog:
    """Publishes `runner.current` every `interval` seconds when it changed; ends the process
    (exit code 1, saying why) once the same place has lasted `limit` seconds."""

    def __init__(self, store, runner, limit: float, interval: float = 0.5):
        self.store, self.runner, self.limit, self.interval = store, runner, limit, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="schedc-watchdog", daemon=True)

    def start(self) -> "Watchdog":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        published = None
        while not self._stop.wait(self.interval):
            current = self.runner.current
            if current is None:
                continue
            label, since = current
            if current != published:
                try:
                    publish(self.store, self.runner.rank, label, since)
                except Exception:  # noqa: BLE001 - the store's host has gone: nothing to tell
                    pass
                published = current
            if time.time() - since > self.limit:
                print(f"schedc: error: rank {self.runner.rank} has been in {label} for "
                      f"{time.time() - since:.0f} s (over {self.limit:g} s, twice --timeout): giving up",
                      file=sys.stderr, flush=True)
                os._exit(1)
