"""Thread counts from the usable CPUs (affinity, cgroup quota) and the no-spin OpenMP setting of ``dmg``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pipeline.cpu_threads import cgroup_cpu_limit, configure_process_threads, usable_cpus


def test_cgroup_v2_quota_caps_the_affinity(tmp_path: Path):
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    assert cgroup_cpu_limit(tmp_path) == 0.5
    assert usable_cpus(tmp_path) == 1
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(tmp_path) is None
    assert usable_cpus(tmp_path) == len(os.sched_getaffinity(0))


def test_cgroup_v1_quota(tmp_path: Path):
    (tmp_path / "cpu.cfs_quota_us").write_text("150000\n")
    (tmp_path / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(tmp_path) == 1.5
    assert usable_cpus(tmp_path) == min(2, len(os.sched_getaffinity(0)))
    (tmp_path / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_limit(tmp_path) is None


def test_configure_keeps_the_users_settings():
    env = {"OMP_NUM_THREADS": "3", "OMP_WAIT_POLICY": "ACTIVE"}
    assert configure_process_threads(environ=env) == 3
    assert env == {"OMP_NUM_THREADS": "3", "OMP_WAIT_POLICY": "ACTIVE", "MKL_NUM_THREADS": "3"}
    env = {}
    assert configure_process_threads(environ=env) == usable_cpus()
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and env["OMP_NUM_THREADS"] == str(usable_cpus())


def test_dmg_sets_passive_openmp_before_torch_starts():
    """A ``dmg`` command sees OMP_WAIT_POLICY=PASSIVE and torch threads = usable CPUs (it imports torch later)."""
    code = ("import builtins, os, sys\n"
            "seen = {}\n"
            "real_import = builtins.__import__\n"
            "def spy(name, *args, **kwargs):\n"
            "    if name.split('.')[0] == 'torch' and 'torch' not in sys.modules and not seen:\n"
            "        seen['policy'] = os.environ.get('OMP_WAIT_POLICY')\n"
            "    return real_import(name, *args, **kwargs)\n"
            "builtins.__import__ = spy\n"
            "from pipeline.cli import main\n"
            "from pipeline.commands import synth\n"
            "def probe(args):\n"
            "    import torch\n"
            "    print(seen['policy'], os.environ['OMP_WAIT_POLICY'], torch.get_num_threads())\n"
            "synth.run = probe\n"
            "main(['synth', '--out', 'unused', '--patients', '1'])\n")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["PASSIVE", "PASSIVE", str(usable_cpus())], "set after torch started"
