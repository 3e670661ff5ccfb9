"""Forked grading kernels (autograder.grade.forked_kernels) start as `python -m
ipykernel_launcher` kernels would, each in a fresh process, only with torch already imported."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from queue import Empty

import pytest

# Run in a fresh interpreter started like the grading worker, so that the kernels' sys.path is
# not pytest's: starts a plain jupyter_client kernel and two forked ones, prints what each sees.
PROBE = textwrap.dedent('''
    import asyncio, json, os, sys
    from jupyter_client.manager import AsyncKernelManager
    from autograder.grade.forked_kernels import ForkedKernelManager, start_fork_server

    FACTS = """
    import json, os, sys
    facts = {"path": sys.path, "cwd": os.getcwd(), "probe": os.environ.get("LORA_PROBE"),
             "own_session": os.getsid(0) == os.getpid(), "pid": os.getpid(),
             "torch_preloaded": "torch" in sys.modules, "main": type(sys.modules["__main__"]).__name__,
             "matplotlib_preloaded": "matplotlib" in sys.modules, "left_over": "LEFT_OVER" in globals()}
    import matplotlib
    facts["backend"] = matplotlib.get_backend()
    import torch
    from helpers import gpt_weights
    facts["models_prebuilt"] = len(gpt_weights._random_builds)
    model = gpt_weights.load_lab_gpt2("gpt2-small (124M)", grading_n_layers=2)
    facts["model_sum"] = float(sum(p.double().sum() for p in model.parameters()))
    facts["random_after_load"] = torch.rand(3).tolist()
    facts["prepared_left"] = sum(len(b.prepared) for b in gpt_weights._random_builds.values())
    LEFT_OVER = 1
    print(json.dumps(facts))
    """

    async def facts(manager_class, cwd, env):
        manager = manager_class(kernel_name="python3")
        await manager.start_kernel(cwd=cwd, env=env)
        client = manager.client()
        client.start_channels()
        try:
            await client.wait_for_ready(timeout=600)
            reply = await client.execute_interactive(FACTS, timeout=600,
                                                     output_hook=lambda m: printed.append(m))
            assert reply["content"]["status"] == "ok", reply
            text = "".join(m["content"].get("text", "") for m in printed
                           if m["content"].get("name") == "stdout")
            del printed[:]
            return json.loads(text)
        finally:
            client.stop_channels()
            await manager.shutdown_kernel(now=True)

    async def main(cwd):
        os.environ["LORA_LAB_GRADING"] = "1"  # the fork server builds the grading-mode models
        env = {**os.environ, "LORA_PROBE": "seen"}  # as it was before the fork server started
        start_fork_server()
        plain = await facts(AsyncKernelManager, cwd, env)
        first = await facts(ForkedKernelManager, cwd, env)
        second = await facts(ForkedKernelManager, cwd, env)
        print(json.dumps({"plain": plain, "first": first, "second": second}))

    printed = []
    asyncio.run(main(sys.argv[1]))
''')


@pytest.mark.slow
def test_forked_kernels_start_like_plain_kernels_in_fresh_processes(tmp_path):
    run = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path)], capture_output=True,
                         text=True, timeout=1200, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    plain, first, second = seen["plain"], seen["first"], seen["second"]
    assert (plain["torch_preloaded"], first["torch_preloaded"]) == (False, True)
    assert (plain["matplotlib_preloaded"], first["matplotlib_preloaded"]) == (False, True)
    assert (plain["models_prebuilt"], first["models_prebuilt"]) == (0, 2)
    # each kernel took a model prepared in the fork server (full: 1, 2 blocks: 2 -> 1 left)
    assert (plain["prepared_left"], first["prepared_left"], second["prepared_left"]) == (0, 2, 2)
    assert first["pid"] != second["pid"] != plain["pid"]
    assert second["left_over"] is False  # nothing of the first notebook reaches the next
    for forked in (first, second):
        assert forked["own_session"] is True
        differ = ("pid", "torch_preloaded", "matplotlib_preloaded", "models_prebuilt",
                  "prepared_left")
        assert {key: value for key, value in forked.items() if key not in differ} == \
            {key: value for key, value in plain.items() if key not in differ}
    assert plain["cwd"] == str(tmp_path) and plain["probe"] == "seen"
    assert plain["backend"] == "module://matplotlib_inline.backend_inline"


# Kernels started ahead (`plan_kernels`): which process each launch gets, what it imported.
AHEAD_PROBE = textwrap.dedent('''
    import asyncio, json, os, sys
    from autograder.grade import forked_kernels as fk

    async def run(sockets, env):
        ahead = {i: k.process.pid for i, k in fk._ahead.items()}
        manager = fk.ForkedKernelManager(kernel_name="python3", transport="ipc", ip=sockets)
        await manager.start_kernel(env=env)
        client = manager.client()
        client.start_channels()
        printed = []
        try:
            await client.wait_for_ready(timeout=600)
            await client.execute_interactive(
                "import json, os, sys; print(json.dumps([os.getpid(), 'wave' in sys.modules]))",
                timeout=600, output_hook=printed.append)
        finally:
            client.stop_channels()
            await manager.shutdown_kernel(now=True)
        pid, imported = json.loads("".join(m["content"].get("text", "") for m in printed
                                           if m["content"].get("name") == "stdout"))
        return {"pid": pid, "wave": imported, "ahead_before": ahead,
                "ahead_after": sorted(fk._ahead)}

    async def main(folder):
        os.mkdir(folder)
        sockets = os.path.join(folder, "kernel")
        fk.start_fork_server()
        env = dict(os.environ)
        fk.plan_kernels([(), (), ("wave",)])
        planned = [await run(sockets, env) for _ in range(3)]
        fk.plan_kernels([(), ()])
        first = await run(sockets, env)
        ahead = fk._ahead[1].process
        other = await run(sockets, {**env, "LORA_PROBE": "another environment"})
        print(json.dumps({"planned": planned, "first": first, "other": other,
                          "discarded_alive": ahead.poll() is None,
                          "left": sorted(os.listdir(folder)),
                          "runtime_left": os.listdir(os.environ["JUPYTER_RUNTIME_DIR"])}))

    asyncio.run(main(sys.argv[1]))
''')


@pytest.mark.slow
def test_kernels_started_ahead_are_the_ones_launched_with_their_imports(tmp_path):
    """Each planned launch gets the kernel started for it (with the slow imports it was planned
    with, and only it); one asked for with another environment gets a new kernel, the one
    started ahead is killed, and nothing is left behind."""
    runtime = tmp_path / "runtime"  # the kernels' connection files
    runtime.mkdir()
    run = subprocess.run([sys.executable, "-c", AHEAD_PROBE, str(tmp_path / "sockets")],
                         capture_output=True, text=True, timeout=1200, cwd=tmp_path,
                         env={**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime)})
    assert run.returncode == 0, run.stderr[-3000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    zero, one, two = seen["planned"]
    assert zero["ahead_before"] == {} and zero["ahead_after"] == [1, 2]
    assert one["pid"] == one["ahead_before"]["1"] and one["ahead_after"] == [2]
    assert two["pid"] == two["ahead_before"]["2"] and two["ahead_after"] == []
    assert [k["wave"] for k in seen["planned"]] == [False, False, True]
    assert len({k["pid"] for k in seen["planned"]}) == 3
    first, other = seen["first"], seen["other"]
    assert first["ahead_after"] == [1]
    assert other["pid"] != other["ahead_before"]["1"] and other["ahead_after"] == []
    assert seen["discarded_alive"] is False
    assert seen["left"] == [] and seen["runtime_left"] == []  # no socket, no connection file


class _Channel:
    """A kernel channel that hands out the given messages (Empty: nothing came in time)."""

    def __init__(self, messages):
        self.messages, self.sent = list(messages), []

    def send(self, message):
        self.sent.append(message)

    async def get_msg(self, timeout=None):
        message = self.messages.pop(0)
        if message is Empty:
            raise Empty
        return message


def test_forked_client_is_ready_once_iopub_answers_and_drains_nothing():
    """ForkedKernelClient.wait_for_ready asks again while IOPub is not yet connected (its first
    status message lost), returns at the first one that comes through and leaves the rest to
    nbclient (jupyter_client's client waits until IOPub is quiet for 0.2 s)."""
    from autograder.grade.forked_kernels import ForkedKernelClient

    reply = {"msg_type": "kernel_info_reply", "content": {"protocol_version": "5.3"}}
    status = [{"msg_type": "status", "content": {"execution_state": state}}
              for state in ("busy", "idle")]
    client = ForkedKernelClient()
    client._shell_channel = _Channel([reply, reply])
    client._iopub_channel = _Channel([Empty, *status])
    alive = []

    async def is_alive():
        alive.append(True)
        return True

    client.is_alive = is_alive
    asyncio.run(client.wait_for_ready(timeout=10))
    assert len(client._shell_channel.sent) == 2 and alive == [True]
    assert client._iopub_channel.messages == [status[1]]


def test_forked_client_says_when_the_kernel_died():
    from autograder.grade.forked_kernels import ForkedKernelClient

    client = ForkedKernelClient()
    client._shell_channel = _Channel([Empty])
    client._iopub_channel = _Channel([])

    async def is_alive():
        return False

    client.is_alive = is_alive
    with pytest.raises(RuntimeError, match="Kernel died"):
        asyncio.run(client.wait_for_ready(timeout=10))
