"""Running one student's grading apart from the rest of the run and from the machine.

`sandboxed_command` wraps the worker's command line in the best sandbox this machine has:

- `bubblewrap` (`bwrap`, the sandbox Flatpak uses; no root needed): the worker and its kernels
  see a minimal root made of read-only binds: the system (`/usr`, a few files of `/etc`), the
  Python installation, the code the worker runs (`autograder/`, `helpers/`, the report
  template), the student's own staged files and the course template; plus its own folder, the
  only writable place. `/tmp` and `$HOME` are private, empty tmpfs; `/proc` belongs to its own
  PID namespace, in which the worker is PID 1 (no parent command line to read); no network
  (unless `--allow-network`); every other namespace is new too (IPC, UTS, cgroup, user).
  Nothing else of the grading run, the submissions or the machine exists in there.
- `namespaces` (fallback, `unshare`): the whole file system stays visible but the `protected`
  folders (the repository, the grading folder, the submissions) are read-only except the
  worker's own folder, and there is no network.
- `none`: the command runs as it is (macOS, Windows, containers without user namespaces).

`best_sandbox()` probes once which one works; `protections()` says what a sandbox enforces,
for the printed summary and `OUT/grading_info.json`.
"""

from __future__ import annotations

import os
import shlex
import shutil
import site
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import autograder
import helpers
from helpers.report_check import TEMPLATE_PATH

BUBBLEWRAP, NAMESPACES, NONE = "bubblewrap", "namespaces", "none"
SANDBOXES = (BUBBLEWRAP, NAMESPACES, NONE)  # best first

SANDBOX_HOME = "/tmp/home"        # $HOME inside bubblewrap, on its private /tmp
SANDBOX_TMP_BYTES = 2 * 2**30     # size of that private /tmp (it lives in memory)
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SYSTEM_FILES = ("/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/hosts",
                "/etc/localtime", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d",
                "/etc/alternatives", "/etc/fonts", "/etc/mime.types")
# variables that would point the worker at folders outside its sandbox
UNSET_VARIABLES = ("XDG_RUNTIME_DIR", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME",
                   "JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR", "JUPYTER_CONFIG_DIR", "IPYTHONDIR",
                   "MPLCONFIGDIR", "OLDPWD")


@dataclass(frozen=True)
class Protections:
    """What a sandbox enforces on student code (written to OUT/grading_info.json)."""

    sandbox: str                # bubblewrap | namespaces | none
    network_off: bool           # no network interface
    writes_only_own_folder: bool  # everything else it sees is read-only
    others_hidden: bool         # other students' files, results, feedback, logs not visible
    private_tmp_and_home: bool  # empty /tmp and $HOME of its own
    pid_namespace: bool         # sees only its own processes

    def describe(self) -> str:
        """One line for the summary, e.g. 'sandbox: bubblewrap (network off, ...)'."""
        parts = [("network off", self.network_off),
                 ("writes only into its own folder", self.writes_only_own_folder),
                 ("other students' files hidden", self.others_hidden),
                 ("private /tmp and $HOME", self.private_tmp_and_home),
                 ("own PID namespace", self.pid_namespace)]
        enforced = [text for text, on in parts if on]
        missing = [text for text, on in parts if not on]
        line = f"sandbox: {self.sandbox} ({', '.join(enforced) or 'nothing enforced'})"
        return line + (f"; NOT enforced: {', '.join(missing)}" if missing else "")


def protections(sandbox: str, no_network: bool = True) -> Protections:
    """What `sandbox` (one of SANDBOXES) enforces on this machine."""
    if sandbox == BUBBLEWRAP:
        return Protections(BUBBLEWRAP, no_network, True, True, True, True)
    if sandbox == NAMESPACES:
        return Protections(NAMESPACES, no_network and _unshare_network(), True, False, False,
                           False)
    return Protections(NONE, False, False, False, False, False)


# --- bubblewrap -------------------------------------------------------------------------------

def _resolved(paths) -> list[Path]:
    """Existing paths, resolved, without the ones inside another of them."""
    existing = sorted({Path(p).resolve() for p in paths if Path(p).exists()})
    return [p for p in existing if not any(q != p and p.is_relative_to(q) for q in existing)]


def python_paths() -> list[Path]:
    """The Python installation and its site-packages (read-only in the sandbox)."""
    candidates = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                  Path(sys.executable).resolve().parent, *site.getsitepackages()]
    if site.ENABLE_USER_SITE and site.getusersitepackages() in sys.path:
        candidates.append(site.getusersitepackages())
    return _resolved(candidates)


def code_paths() -> list[Path]:
    """What the worker and the notebooks import or read from the repository: the autograder
    (hidden checks), the helpers and the report template; not the rest of the repository,
    where a grading folder may be."""
    return _resolved([Path(autograder.__file__).parent, Path(helpers.__file__).parent,
                      TEMPLATE_PATH])


def _system_binds() -> list[str]:
    args = []
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in SYSTEM_FILES:
        args += ["--ro-bind-try", path, path]
    return args


def bubblewrap_command(command: list[str], readable: list[Path], writable: Path,
                       hidden: list[Path] = (), no_network: bool = True) -> list[str]:
    """`command` in a bubblewrap sandbox that sees only the system, Python, the worker's code,
    `readable` (read-only) and `writable`.

    hidden: folders that must not be visible (the grading folder, the submissions); a ValueError
    if the Python or code binds would show one of them.
    """
    writable = Path(writable).resolve()
    own = _resolved(readable)
    system = [Path(p).resolve() for p in SYSTEM_DIRS if os.path.isdir(p)]
    shared = [p for p in _resolved([*python_paths(), *code_paths()])
              if not any(p.is_relative_to(s) for s in system)]  # e.g. a Python in /usr
    for secret in (Path(p).resolve() for p in hidden):
        exposing = [p for p in shared if secret.is_relative_to(p)]
        if exposing:
            raise ValueError(f"the sandbox would show {secret} (inside {exposing[0]}): "
                             "put the grading folder and the submissions elsewhere")
    args = ["bwrap", "--unshare-all", *([] if no_network else ["--share-net"]),
            "--die-with-parent", "--new-session", "--as-pid-1",
            "--proc", "/proc", "--dev", "/dev",
            "--size", str(SANDBOX_TMP_BYTES), "--tmpfs", "/tmp", "--dir", SANDBOX_HOME,
            *_system_binds()]
    for path in shared + own:
        args += ["--ro-bind", str(path), str(path)]
    args += ["--bind", str(writable), str(writable), "--remount-ro", "/", "--chdir", str(writable),
             "--setenv", "HOME", SANDBOX_HOME, "--setenv", "TMPDIR", "/tmp"]
    for name in UNSET_VARIABLES:
        args += ["--unsetenv", name]
    return [*args, "--", *command]


# --- namespaces (fallback) --------------------------------------------------------------------

def _mount_script(protected: list[Path], writable: Path) -> str:
    """Shell lines run inside the new namespaces before the command (`"$@"`)."""
    quote = shlex.quote
    # The writable folder is bound first so that the recursive binds below carry it along,
    # writable, while the protected folder above it becomes read-only.
    lines = ["set -e", f"mount --bind {quote(str(writable))} {quote(str(writable))}"]
    for path in protected:
        lines += [f"mount --rbind {quote(str(path))} {quote(str(path))}",
                  f"mount -o remount,bind,ro {quote(str(path))}"]
    # the working directory still points into the old mounts: enter it again through the new
    lines += ['cd -- "$PWD"', 'exec "$@"']
    return "\n".join(lines)


def namespaces_command(command: list[str], protected: list[Path], writable: Path,
                       no_network: bool = True) -> list[str]:
    """`command` in new user and mount namespaces where `protected` is read-only except
    `writable`, and without network when `no_network` (and the machine allows it)."""
    flags = "m" + ("n" if no_network and _unshare_network() else "")
    existing = [Path(p).resolve() for p in protected if Path(p).exists()]
    script = _mount_script(existing, Path(writable).resolve())
    return ["unshare", f"-r{flags}", "sh", "-c", script, "sh", *command]


# --- which sandbox this machine has -----------------------------------------------------------

def _runs(command: list[str], cwd: Path | None = None) -> bool:
    try:
        return subprocess.run(command, capture_output=True, timeout=60, cwd=cwd).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@lru_cache(maxsize=1)
def _unshare_network() -> bool:
    return shutil.which("unshare") is not None and _runs(["unshare", "-rn", "true"])


# Run inside the probe sandbox: its own folder is writable, the rest read-only or absent.
_PROBE = """
import os, sys
own, readable, hidden = sys.argv[1:4]
open(os.path.join(own, "ok"), "w").write("ok")
for path in (os.path.join(readable, "refused"), os.path.join(hidden, "refused")):
    try:
        open(path, "w").write("tampered")
        sys.exit("written: " + path)
    except OSError:
        pass
if os.environ.get("PROBE_HIDDEN") and os.path.exists(hidden):
    sys.exit("visible: " + hidden)
"""


def _probe(sandbox: str) -> bool:
    """Whether `sandbox` works here: Python runs in it, writes only into its own folder and,
    for bubblewrap, does not see a folder it was not given."""
    with tempfile.TemporaryDirectory(prefix="isolation-probe-") as tmp:
        root = Path(tmp)
        own, readable, hidden = root / "out" / "own", root / "out" / "staged", root / "out" / "other"
        for folder in (own, readable, hidden):
            folder.mkdir(parents=True)
        probe = [sys.executable, "-c", _PROBE, str(own), str(readable), str(hidden)]
        if sandbox == BUBBLEWRAP:
            if shutil.which("bwrap") is None:
                return False
            command = bubblewrap_command(probe, [readable], own, [hidden])
            command[1:1] = ["--setenv", "PROBE_HIDDEN", "1"]
        elif shutil.which("unshare") is None:
            return False
        else:
            command = namespaces_command(probe, [root / "out"], own)
        return _runs(command, cwd=own) and (own / "ok").is_file() \
            and not any(root.rglob("refused"))


@lru_cache(maxsize=None)
def sandbox_works(sandbox: str) -> bool:
    """Whether `sandbox` can be used on this machine (tried once)."""
    return sandbox == NONE or _probe(sandbox)


def best_sandbox() -> str:
    """The strongest sandbox that works here: bubblewrap, then namespaces, else none."""
    return next(s for s in SANDBOXES if sandbox_works(s))


def sandboxed_command(command: list[str], sandbox: str, readable: list[Path], writable: Path,
                      protected: list[Path], no_network: bool = True) -> list[str]:
    """The worker's `command` run in `sandbox` (one of SANDBOXES).

    readable: what the student's grading reads besides the code (its staged files, the course
    template); writable: its own folder; protected: what must stay out of its reach (the
    grading folder, the submissions): hidden by bubblewrap, read-only with namespaces.
    """
    if sandbox == BUBBLEWRAP:
        return bubblewrap_command(command, readable, writable, protected, no_network)
    if sandbox == NAMESPACES:
        code = Path(autograder.__file__).resolve().parents[1]  # the repository (the checks)
        return namespaces_command(command, [code, *protected], writable, no_network)
    return command
