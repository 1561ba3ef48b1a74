"""A Ray actor SIGKILLed mid-shard during `distill label --ray` (long: `make faults`).

A local 2-CPU cluster is held by a helper process; `distill label --ray ADDRESS --actors 1`
runs against it; once the first shard is in the manifest, the labeling actor's process
is killed. Its PID comes from the GCS actor table (`ray._private.state.actors()`, through
the helper, which is connected): Ray's public state API (`ray.util.state.list_actors`)
is served by the dashboard, whose dependencies (aiohttp_cors, ...) the `scale` extra
does not install. The job either finishes (Ray Data restarted the actor and ran its shard
again: the driver commits each shard once, by index) or fails in one line; either way a
`--resume` completes with every image exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from engine.label.manifest import RunManifest, manifest_path
from tests.conftest import REPO_ROOT
from tests.faults.conftest import check_finished, row, run_distill

KIND = "Ray actor SIGKILLed mid-shard"
# A cluster that ray.init starts asks every other process for its token (Ray 2.60); the
# labeling job is another process, so this test's cluster runs without.
NO_TOKEN = {**os.environ, "RAY_AUTH_MODE": "disabled"}

HOLD_CLUSTER = """
import sys, ray
ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 1024**2, log_to_driver=False,
         configure_logging=False)
print(ray.get_runtime_context().gcs_address, flush=True)
for _ in sys.stdin:  # each line asks for the PIDs of the live labeling actors
    actors = ray._private.state.actors().values()
    print(" ".join(str(a["Pid"]) for a in actors if a["State"] == "ALIVE" and "ShardLabeler" in a["ActorClassName"]),
          flush=True)
ray.shutdown()
"""


@pytest.fixture()
def cluster():
    """(GCS address, a function giving the PID of the live labeling actor or None)."""
    pytest.importorskip("ray.data", reason="Ray Data is the optional `scale` extra (make setup installs it)")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_CLUSTER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env=NO_TOKEN)

    def actor_pid() -> int | None:
        holder.stdin.write("\n")
        holder.stdin.flush()
        pids = holder.stdout.readline().split()
        return int(pids[0]) if pids else None

    try:
        address = holder.stdout.readline().strip()
        assert address, "the cluster did not start"
        yield address, actor_pid
    finally:
        holder.stdin.close()
        holder.wait(timeout=120)


@pytest.mark.faults_long
def test_a_ray_actor_killed_mid_shard(exported, reference, cluster, tmp_path):
    address, actor_pid = cluster
    out = tmp_path / "run"
    command = reference.command(exported, out, "--ray", address, "--actors", "1")
    workers = command.index("--workers")
    del command[workers:workers + 2]  # the one-box pipeline's threads: refused with --ray
    job = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=NO_TOKEN)
    deadline, pid = time.monotonic() + 600, None
    while job.poll() is None and time.monotonic() < deadline:
        pid = pid or actor_pid()
        if pid and manifest_path(out).exists() and RunManifest.load(out).shards:
            break
        time.sleep(0.2)
    assert job.poll() is None and pid, "the job ended before its actor could be killed"
    os.kill(pid, signal.SIGKILL)
    row(KIND).injected += 1
    stdout, stderr = job.communicate(timeout=600)
    if job.returncode != 0:
        lines = stderr.strip().splitlines()
        assert job.returncode == 2 and len(lines) == 1 and lines[0].startswith("distill label: error: "), stderr
    start = time.perf_counter()
    done = run_distill(command + ["--resume"], env=NO_TOKEN)
    row(KIND).recover.append(time.perf_counter() - start)
    assert done.returncode == 0, done.stderr
    check_finished(out, reference, KIND)
    print(f"the job {'finished' if job.returncode == 0 else 'failed in one line'} after the kill: "
          f"{(stdout + stderr).strip().splitlines()[-1:]}")
