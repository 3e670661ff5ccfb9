"""Kernels forked from a process that has already imported torch and the helpers.

Starting a kernel costs an interpreter start, IPython and `import torch` (seconds each on a
small machine), six times per student, and each notebook then builds the tokenizer again
(`kernel_warmup` does that work once). Here the grading worker starts one fork server
(`multiprocessing`'s "forkserver") that imports those modules once, without running any
student code, and every kernel is a fresh fork of it: a new process per notebook, as before
(a crash, a `sys.modules` edit or a leaked global stays in its notebook), in its own session,
with the environment, working folder and `sys.path` a `python -m ipykernel_launcher` kernel
would get. `ForkedKernelManager` is the jupyter_client kernel manager that starts them; a
kernel command other than ipykernel's is started as usual.

matplotlib is not preloaded: ipykernel picks its inline backend through `MPLBACKEND`, which
matplotlib reads when it is imported.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import os
import signal
import sys
import types
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning import LocalProvisioner

PRELOADED_MODULES = (
    "torch", "torch.nn.functional", "numpy", "pandas", "tiktoken", "ipykernel.kernelapp",
    "helpers.carry", "helpers.gpt", "helpers.gpt_weights", "helpers.tokenizer",
    "helpers.spam_data", "helpers.training", "helpers.inference", "helpers.image_data",
    "helpers.resnet", "helpers.params", "helpers.lora_merge",
    "autograder.grade.kernel_warmup",
    __name__,  # the fork target below, unpickled in each child
)
KERNEL_MODULE = "ipykernel_launcher"

_context: multiprocessing.context.BaseContext | None = None


def fork_server() -> multiprocessing.context.BaseContext:
    """This process's fork server context (started on first use, with the modules preloaded).

    It copies this process's environment when it starts: set the grading environment first.
    """
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(list(PRELOADED_MODULES))
    return _context


def start_fork_server() -> None:
    """Start the fork server now: it imports the modules while this process goes on."""
    fork_server()
    multiprocessing.forkserver.ensure_running()


def _kernel_sys_path() -> list[str]:
    """The `sys.path` of `python -m ipykernel_launcher` run with this process's interpreter and
    environment: this process's, less the folder `python -m` or `-c` put first (the launcher
    removes it)."""
    if sys.path and (sys.path[0] == "" or Path(sys.path[0]) == Path.cwd()):
        return sys.path[1:]
    return list(sys.path)


def _run_kernel(argv: list[str], env: dict[str, str], cwd: str, path: list[str]) -> None:
    """In the forked child: become `python -m ipykernel_launcher ARGV`, started in `cwd`."""
    os.setsid()  # as jupyter_client does: a signal to the kernel's group reaches only it
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    sys.path[:] = path
    import ipykernel_launcher
    from ipykernel.kernelapp import launch_new_instance

    sys.argv = [ipykernel_launcher.__file__, *argv]
    launch_new_instance(argv=argv)


@contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Keep multiprocessing from re-running this process's `__main__` (the grading worker)
    in the child: it would import nbgrader into every kernel."""
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


class _ForkedProcess:
    """The Popen-like handle jupyter_client's provisioner expects, for a forked kernel."""

    stdin = stdout = stderr = None

    def __init__(self, process: multiprocessing.process.BaseProcess):
        self._process = process
        self.pid = process.pid

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int | None:
        self._process.join(timeout)
        return self._process.exitcode

    def send_signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def kill(self) -> None:
        self._process.kill()

    def terminate(self) -> None:
        self._process.terminate()


def _ipykernel_arguments(cmd: list[str]) -> list[str] | None:
    """The arguments after `python -m ipykernel_launcher` in `cmd`, or None for another kernel."""
    same_python = bool(cmd) and os.path.realpath(cmd[0]) == os.path.realpath(sys.executable)
    if same_python and cmd[1:3] == ["-m", KERNEL_MODULE]:
        return cmd[3:]
    return None


class ForkedProvisioner(LocalProvisioner):
    """Launches ipykernel kernels as forks of the fork server (any other kernel as usual)."""

    async def launch_kernel(self, cmd: list[str], **kwargs: Any):
        arguments = _ipykernel_arguments(cmd)
        if arguments is None:
            return await super().launch_kernel(cmd, **kwargs)
        cwd = str(kwargs.get("cwd") or os.getcwd())
        # as jupyter_client's launcher: the kernel exits when its parent does (ipykernel read
        # JPY_PARENT_PID when the fork server imported it, so it is passed as an argument too)
        env = {**(kwargs.get("env") or os.environ), "JPY_PARENT_PID": str(os.getpid())}
        arguments = [*arguments, f"--IPKernelApp.parent_handle={os.getpid()}"]
        child = fork_server().Process(target=_run_kernel, name="kernel",
                                      args=(arguments, env, cwd, _kernel_sys_path()))
        with _main_module_hidden():
            child.start()
        self.process = _ForkedProcess(child)
        self.pid = self.pgid = child.pid  # its own group (setsid): never the worker's
        self.cwd = cwd
        return self.connection_info


class ForkedKernelManager(AsyncKernelManager):
    """An AsyncKernelManager whose kernels are forked (see the module docstring)."""

    async def _async_pre_start_kernel(self, **kw: Any):
        self.kernel_id = self.kernel_id or kw.pop("kernel_id", str(uuid.uuid4()))
        if self.provisioner is None:  # set on a restart
            self.provisioner = ForkedProvisioner(kernel_id=self.kernel_id,
                                                 kernel_spec=self.kernel_spec, parent=self)
        return await super()._async_pre_start_kernel(**kw)
