"""The stage store: key-named work folders, locks, checksummed manifests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from stigbench.pipeline.stages import MANIFEST, StageLock, StageStore, manifest_problem


def _write(text: str):
    def make(folder):
        (folder / "out.txt").write_text(text)
    return make


def test_a_damaged_stage_is_recomputed(tmp_path):
    store = StageStore(tmp_path)
    key = store.key("k", "x", {"a": 1})
    folder = store.get_or_make(key, _write("one"))
    assert manifest_problem(folder) is None and json.loads((folder / MANIFEST).read_text())["out.txt"][0] == 3
    (folder / "out.txt").write_text("two")  # same size, other bytes
    again = StageStore(tmp_path)
    calls = []
    again.get_or_make(key, lambda f: calls.append(1) or _write("one")(f))
    assert calls == [1] and (folder / "out.txt").read_text() == "one"
    (folder / "out.txt").unlink()
    third = StageStore(tmp_path)
    third.get_or_make(key, _write("one"))
    assert third.misses == [key]


def test_work_folder_is_kept_only_for_resumable_stages(tmp_path):
    store = StageStore(tmp_path)
    key = store.key("k", "x", {})
    work = store.work_path(key)
    work.mkdir(parents=True)
    (work / "partial").write_text("from a killed attempt")
    seen = []
    store.get_or_make(key, lambda f: seen.append(sorted(p.name for p in f.iterdir())) or _write("a")(f), resumable=True)
    assert seen == [["partial"]] and store.resumed == [key]
    key2 = store.key("k", "y", {})
    store.work_path(key2).mkdir()
    (store.work_path(key2) / "partial").write_text("x")
    store.get_or_make(key2, lambda f: seen.append(sorted(p.name for p in f.iterdir())) or _write("a")(f))
    assert seen[-1] == []  # a stage that cannot resume starts empty
    assert not [p for p in tmp_path.rglob(".*") if p.name != ".complete"]


def test_a_stale_lock_is_broken_and_a_live_one_waited_for(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock = tmp_path / "x.lock"
    lock.write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(), "started": 0}))
    with StageLock(lock, poll=0.01):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()

    order = []
    with StageLock(lock, poll=0.01):
        t = threading.Thread(target=lambda: StageLock(lock, poll=0.01).__enter__() and order.append("second"))
        t.start()
        time.sleep(0.2)
        order.append("first done")
    t.join(5)
    assert order == ["first done", "second"]


def test_a_lock_of_another_host_is_never_broken(tmp_path):
    lock = tmp_path / "x.lock"
    lock.write_text(json.dumps({"pid": 1, "host": "some-other-host", "started": 0}))
    t = threading.Thread(target=lambda: StageLock(lock, poll=0.01).__enter__(), daemon=True)
    t.start()
    t.join(0.5)
    assert t.is_alive() and json.loads(lock.read_text())["host"] == "some-other-host"
    lock.unlink()  # what the message tells the user to do once that run is known dead
    t.join(5)
    assert not t.is_alive()


def test_legacy_random_temp_folders_are_cleaned(tmp_path):
    store = StageStore(tmp_path)
    key = store.key("k", "x", {})
    legacy = store.path(key).with_name(f".{store.path(key).name}.tmp-abc123")
    legacy.mkdir(parents=True)
    store.get_or_make(key, _write("a"))
    assert not legacy.exists()


@pytest.mark.parametrize("persistent", [False])
def test_a_killed_no_cache_runs_temporary_store_is_removed_by_the_next(tmp_path, persistent, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = tmp_path / "stigbench-stages-orphan"
    orphan.mkdir()
    (orphan / "owner.json").write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    store = StageStore(None)
    assert not orphan.exists() and store.root.parent == tmp_path
    store.close()
    assert not store.root.exists()


def test_a_reused_pid_does_not_keep_a_lock_alive(tmp_path):
    from stigbench.pipeline.stages import owner_is_gone, process_owner

    me = process_owner()
    assert not owner_is_gone(me)
    assert owner_is_gone({**me, "started": 0.0})  # this pid's process started after that lock was taken
    assert not owner_is_gone({**me, "host": "elsewhere", "started": 0.0})
