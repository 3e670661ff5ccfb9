"""Forked grading kernels (autograder.grade.forked_kernels) start as `python -m
ipykernel_launcher` kernels would, each in a fresh process, only with torch already imported."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

# Run in a fresh interpreter started like the grading worker, so that the kernels' sys.path is
# not pytest's: starts a plain jupyter_client kernel and two forked ones, prints what each sees.
PROBE = textwrap.dedent('''
    import asyncio, json, sys
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
            text = "".join(m["content"].get("text", "") for m in printed)
            del printed[:]
            return json.loads(text)
        finally:
            client.stop_channels()
            await manager.shutdown_kernel(now=True)

    async def main(cwd):
        start_fork_server()
        env = {**__import__("os").environ, "LORA_PROBE": "seen"}
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
    assert first["pid"] != second["pid"] != plain["pid"]
    assert second["left_over"] is False  # nothing of the first notebook reaches the next
    for forked in (first, second):
        assert forked["matplotlib_preloaded"] is False
        assert forked["own_session"] is True
        differ = ("pid", "torch_preloaded")
        assert {key: value for key, value in forked.items() if key not in differ} == \
            {key: value for key, value in plain.items() if key not in differ}
    assert plain["cwd"] == str(tmp_path) and plain["probe"] == "seen"
    assert plain["backend"] == "module://matplotlib_inline.backend_inline"
