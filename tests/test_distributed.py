"""Data-parallel training with torchrun: 2 CPU processes (gloo) inside a private network
namespace (loopback only), replicas in sync, one checkpoint written by rank 0."""
import os
import shutil
import subprocess
import sys

import pytest
import torch

from dyna_stream.model.checkpoint import load_checkpoint

from conftest import REPO


def _private_network() -> list[str] | None:
    """The command prefix that runs a command in a private network namespace: as root, or as any
    user through an unprivileged user namespace (root in it); None where neither works."""
    if shutil.which("unshare") is None:
        return None
    for prefix in (["unshare", "--net"], ["unshare", "--net", "--map-root-user"]):
        if subprocess.run([*prefix, "true"], capture_output=True).returncode == 0:
            return prefix
    return None


NETNS = _private_network()
needs_namespace = pytest.mark.skipif(NETNS is None, reason="no private network namespace (unshare) here")


@needs_namespace
@pytest.mark.parametrize("mode", ["steps", "st-prune"])
def test_two_processes_train_in_sync_and_rank0_writes_the_checkpoint(tmp_path, mode):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                str(REPO / "tests" / "ddp_train.py"), str(tmp_path), mode]
    script = "ip link set lo up && export GLOO_SOCKET_IFNAME=lo && exec \"$@\""
    run = subprocess.run([*NETNS, "--", "bash", "-c", script, "bash", *torchrun], capture_output=True,
                         text=True, timeout=300, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    for name, value in ranks[0]["parameters"].items():
        assert torch.equal(value, ranks[1]["parameters"][name]), name     # replicas stayed identical
    checkpoint = load_checkpoint(tmp_path / "run" / "model.pt")
    history = checkpoint.metrics["history"]
    assert checkpoint.metrics["world_size"] == 2
    if mode == "steps":
        assert [h["step"] for h in history] == [3, 6]
    else:   # the last epoch is full data: 9 windows dealt to 2 ranks (padded to 10), all observed
        assert [h["epoch"] for h in history] == [2, 4] and history[-1]["kept"] == 9
        assert checkpoint.metrics["samples"] > 10 and checkpoint.metrics["samples"] % 2 == 0
    for name, value in checkpoint.model.named_parameters():
        assert torch.equal(value, ranks[0]["parameters"][name]), name
    assert (tmp_path / "run" / "last.pt").is_file() and (tmp_path / "run" / "best.pt").is_file()
