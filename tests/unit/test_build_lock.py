"""The cache's build lock: a second build into the same ANVIL_CACHE waits until the first one is done."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from tools import anvil_env

REPO = anvil_env.REPO_ROOT

CHILD = textwrap.dedent(
    """
    import sys
    from tools import anvil_env
    with anvil_env.build_lock("second build"):
        print("built", flush=True)
    """
)


def test_a_second_build_waits_for_the_first_and_then_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(anvil_env, "ANVIL_CACHE", tmp_path)
    env = {**os.environ, "ANVIL_CACHE": str(tmp_path), "PYTHONPATH": str(REPO)}
    with anvil_env.build_lock("first build"):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        # The child says it waits (a blocking read: no timing involved), and has built nothing yet.
        line = child.stderr.readline()
        assert line == f"second build: waiting for another build into {tmp_path} to finish\n"
        assert child.poll() is None
    out = child.communicate(timeout=60)[0]
    assert out == "built\n"
    assert child.returncode == 0


def test_an_uncontended_build_takes_the_lock_silently(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(anvil_env, "ANVIL_CACHE", tmp_path / "new-cache")
    with anvil_env.build_lock("only build"):
        pass
    assert (tmp_path / "new-cache" / ".build.lock").exists()
    assert capsys.readouterr().err == ""
