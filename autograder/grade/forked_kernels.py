"""Kernels forked from a process that has already imported torch and the helpers.

Starting a kernel costs an interpreter start, IPython and `import torch` (seconds each on a
small machine), seven times per student, and each notebook then builds the tokenizer and its
model again. Here the grading worker starts one fork server (`multiprocessing`'s
"forkserver") that imports those modules and does that work once (`kernel_warmup`), without
running any student code, and every kernel is a fresh fork of it: a new process per notebook,
as before (a crash, a `sys.modules` edit or a leaked global stays in its notebook), in its own
session, with the environment, working folder and `sys.path` a `python -m ipykernel_launcher`
kernel would get. `ForkedKernelManager` is the jupyter_client kernel manager that starts them; a
kernel command other than ipykernel's is started as usual.

matplotlib reads its backend from `MPLBACKEND` when it is imported, and ipykernel sets that
variable (to its inline backend, unless it is set) when a kernel starts: the fork server sets it
to the same value before it imports matplotlib, so a forked kernel has the backend a plain one
has. `plan_kernels` lets the grader start each kernel before its notebook asks for it, and
`ForkedKernelClient` is ready as soon as a kernel answers (no 0.2 s wait per kernel).
"""

from __future__ import annotations

import atexit
import importlib
import multiprocessing
import multiprocessing.forkserver
import os
import sys
import time
import types
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from queue import Empty
from pathlib import Path
from typing import Any

from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.connect import write_connection_file
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning import LocalProvisioner
from traitlets import DottedObjectName, Type

# Imported by the fork server before it forks any kernel: the modules every notebook imports
# and the work each would repeat (`kernel_warmup`), and the fork target below.
PRELOADED_MODULES = ("autograder.grade.kernel_warmup", __name__)
KERNEL_MODULE = "ipykernel_launcher"
CONNECTION_FILE = "{connection_file}"  # where a kernel's arguments name its connection file
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"  # what ipykernel sets MPLBACKEND to
EXIT_POLL_SECONDS = 0.005  # how often a stopping kernel is checked (jupyter_client: every 0.1 s)

_context: multiprocessing.context.BaseContext | None = None


def fork_server() -> multiprocessing.context.BaseContext:
    """This process's fork server context (started on first use, with the modules preloaded).

    It copies this process's environment when it starts: set the grading environment first.
    """
    global _context
    if _context is None:
        if not os.environ.get("MPLBACKEND"):  # as ipykernel does in every kernel it starts
            os.environ["MPLBACKEND"] = INLINE_BACKEND
        # A plain kernel runs `python -Xfrozen_modules=off` (ipykernel's kernel spec); a forked
        # one cannot, and debugpy would print its "frozen modules" warning into every log.
        os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
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


def _run_kernel(argv: list[str], env: dict[str, str], cwd: str, path: list[str],
                imports: tuple[str, ...] = ()) -> None:
    """In the forked child: become `python -m ipykernel_launcher ARGV`, started in `cwd`, after
    importing the modules `imports` (those its notebook will import: no student code)."""
    os.setsid()  # as jupyter_client does: a signal to the kernel's group reaches only it
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    sys.path[:] = path
    for module in imports:
        importlib.import_module(module)
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


@dataclass(frozen=True)
class _Launch:
    """How a kernel is started, but for its connection file."""

    arguments: tuple[str, ...]  # after `python -m ipykernel_launcher`, CONNECTION_FILE for it
    env: tuple[tuple[str, str], ...]
    cwd: str
    path: tuple[str, ...]

    def start(self, connection_file: str, imports: tuple[str, ...] = ()) -> _ForkedProcess:
        """Fork a kernel that reads `connection_file`, once it has imported `imports`."""
        arguments = [connection_file if a == CONNECTION_FILE else a for a in self.arguments]
        child = fork_server().Process(
            target=_run_kernel, name="kernel",
            args=(arguments, dict(self.env), self.cwd, list(self.path), imports))
        with _main_module_hidden():
            child.start()
        return _ForkedProcess(child)


@dataclass
class _KernelAhead:
    """A kernel started before its notebook asked for one, with its own connection file."""

    launch: _Launch
    process: _ForkedProcess
    connection_file: str
    connection_info: dict[str, Any]

    def discard(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        with suppress(FileNotFoundError):
            os.remove(self.connection_file)
        for name in ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"):
            with suppress(FileNotFoundError):
                os.remove(f"{self.connection_info['ip']}-{self.connection_info[name]}")


_plan: list[tuple[str, ...]] = []      # the planned kernels in launch order: slow imports
_ahead: dict[int, _KernelAhead] = {}   # started ahead, by their index in _plan
_launched = 0                          # launches since the plan was made


def plan_kernels(imports: Sequence[tuple[str, ...]]) -> None:
    """Say which kernels this process will now launch, one after the other: for each one, the
    modules its notebook imports that take long (often none).

    Then every launch of the plan also starts the next kernel while its notebook runs, and the
    first launch starts each later kernel that has modules to import, which it imports while
    the notebooks before it run. Each is a fresh fork like any other, started with no student
    code (nothing of a running notebook reaches it). A launch takes its kernel if it asks for
    the same arguments, environment and folder, else that kernel is killed and one started as
    usual. Only for the `ipc` transport (the grader's); any earlier plan's kernels are killed.
    """
    global _plan, _launched
    _discard_ahead()
    _plan, _launched = list(imports), 0


def _discard_ahead() -> None:
    while _ahead:
        _ahead.popitem()[1].discard()


atexit.register(_discard_ahead)


def _take_ahead(index: int, launch: _Launch) -> _KernelAhead | None:
    """The kernel started ahead for launch number `index`, if there is one and it is alive."""
    ahead = _ahead.pop(index, None)
    if ahead is not None and (ahead.launch != launch or ahead.process.poll() is not None):
        ahead.discard()
        return None
    return ahead


def _start_ahead(index: int, launch: _Launch, manager: AsyncKernelManager) -> None:
    prefix = f"{manager.ip}-{uuid.uuid4().hex[:8]}"
    connection_file = os.path.join(os.path.dirname(manager.connection_file),
                                   f"kernel-ahead-{uuid.uuid4()}.json")
    _, info = write_connection_file(connection_file, transport="ipc", ip=prefix,
                                    key=str(uuid.uuid4()).encode(),
                                    signature_scheme=manager.session.signature_scheme,
                                    kernel_name=manager.kernel_name)
    info = {**info, "key": info["key"].encode()}  # as KernelManager.get_connection_info has it
    process = launch.start(connection_file, _plan[index])
    _ahead[index] = _KernelAhead(launch, process, connection_file, info)


def _to_start_ahead(index: int) -> list[int]:
    """The planned kernels to start when kernel number `index` is launched."""
    later = [index + 1] if index + 1 < len(_plan) else []
    if index == 0:
        later += [i for i in range(2, len(_plan)) if _plan[i]]
    return [i for i in later if i not in _ahead]


class ForkedProvisioner(LocalProvisioner):
    """Launches ipykernel kernels as forks of the fork server (any other kernel as usual)."""

    _own_connection_file: str | None = None

    async def launch_kernel(self, cmd: list[str], **kwargs: Any):
        global _launched
        arguments = _ipykernel_arguments(cmd)
        manager = self.parent
        if arguments is None:
            return await super().launch_kernel(cmd, **kwargs)
        # as jupyter_client's launcher: the kernel exits when its parent does (ipykernel read
        # JPY_PARENT_PID when the fork server imported it, so it is passed as an argument too)
        env = {**(kwargs.get("env") or os.environ), "JPY_PARENT_PID": str(os.getpid())}
        arguments = [CONNECTION_FILE if a == manager.connection_file else a for a in arguments]
        launch = _Launch((*arguments, f"--IPKernelApp.parent_handle={os.getpid()}"),
                         tuple(sorted(env.items())), str(kwargs.get("cwd") or os.getcwd()),
                         tuple(_kernel_sys_path()))
        index, _launched = _launched, _launched + 1
        ahead = _take_ahead(index, launch)
        if ahead is None:
            self.process = launch.start(manager.connection_file)
        else:  # jupyter_client takes the provisioner's connection info as the truth
            self.process, self.connection_info = ahead.process, ahead.connection_info
            self._own_connection_file = ahead.connection_file
        if manager.transport == "ipc":
            for later in _to_start_ahead(index):
                _start_ahead(later, launch, manager)
        self.pid = self.pgid = self.process.pid  # its own group (setsid): never the worker's
        self.cwd = launch.cwd
        return self.connection_info

    async def cleanup(self, restart: bool = False) -> None:
        await super().cleanup(restart)
        if self._own_connection_file is not None:
            with suppress(FileNotFoundError):
                os.remove(self._own_connection_file)
            self._own_connection_file = None


class ForkedKernelClient(AsyncKernelClient):
    """jupyter_client's client, ready as soon as the kernel answers on shell and IOPub.

    jupyter_client's `wait_for_ready` then drains IOPub until it has been quiet for 0.2 s:
    seconds per student in a grader that starts eight kernels, and nothing to drain for
    nbclient, which reads on IOPub only the messages of the request it sent.
    """

    async def wait_for_ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (float("inf") if timeout is None else timeout)
        while True:
            self.kernel_info()
            try:
                reply = await self.shell_channel.get_msg(timeout=1)
            except Empty:
                reply = None
            if reply is not None and reply["msg_type"] == "kernel_info_reply":
                try:  # IOPub is connected once a status message of the request comes through
                    await self.iopub_channel.get_msg(timeout=0.2)
                except Empty:
                    pass
                else:
                    self._handle_kernel_info_reply(reply)
                    return
            if not await self.is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout:.0f} seconds")


class ForkedKernelManager(AsyncKernelManager):
    """An AsyncKernelManager whose kernels are forked (see the module docstring)."""

    client_class = DottedObjectName(f"{__name__}.ForkedKernelClient")
    client_factory = Type(ForkedKernelClient, klass=AsyncKernelClient)

    async def _async_wait(self, pollinterval: float = EXIT_POLL_SECONDS) -> None:
        """Wait for the kernel to exit, checking every few milliseconds, not every 0.1 s."""
        await super()._async_wait(pollinterval=min(pollinterval, EXIT_POLL_SECONDS))

    async def _async_pre_start_kernel(self, **kw: Any):
        self.kernel_id = self.kernel_id or kw.pop("kernel_id", str(uuid.uuid4()))
        if self.provisioner is None:  # set on a restart
            self.provisioner = ForkedProvisioner(kernel_id=self.kernel_id,
                                                 kernel_spec=self.kernel_spec, parent=self)
        return await super()._async_pre_start_kernel(**kw)
