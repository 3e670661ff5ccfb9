"""Running one student's grading apart from the rest of the run (Linux namespaces, no root).

`isolated_command` prefixes the worker's command line with `unshare`, so that the worker and
the kernels it starts run in a new user namespace (mapped to the current user) and:

- a network namespace with no interface: student code cannot reach the network
  (unless the instructor passes `--allow-network`);
- a mount namespace where the `protected` paths are read-only (the course repository with
  the hidden checks, the grading output folder with the other students' results and
  feedback, the submissions) and only the worker's own folder is writable.

Where `unshare` or these mounts are not allowed (macOS, some containers), the parts that are not
available are left out and `support()` says which; the runner prints it in its summary.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path


@dataclass(frozen=True)
class Support:
    network: bool  # a network namespace can be made (student code offline)
    files: bool    # a mount namespace with read-only binds can be made


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


def _runs(command: list[str], cwd: Path | None = None) -> bool:
    try:
        return subprocess.run(command, capture_output=True, timeout=20, cwd=cwd).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@lru_cache(maxsize=1)
def support() -> Support:
    """What this machine allows, found by trying it once."""
    if not shutil.which("unshare"):
        return Support(network=False, files=False)
    network = _runs(["unshare", "-rn", "true"])
    with tempfile.TemporaryDirectory(prefix="isolation-probe-") as tmp:
        protected, writable = Path(tmp) / "protected", Path(tmp) / "protected" / "own"
        writable.mkdir(parents=True)
        probe = "touch own/ok && ! touch refused 2>/dev/null"
        files = _runs(["unshare", "-rm", "sh", "-c", _mount_script([protected], writable),
                       "sh", "sh", "-c", probe], cwd=protected)
        files = files and (writable / "ok").is_file() and not (protected / "refused").exists()
    return Support(network=network, files=files)


def isolated_command(command: list[str], protected: list[Path], writable: Path,
                     no_network: bool = True) -> list[str]:
    """`command` run without network (when `no_network`) and with `protected` read-only except
    `writable`, as far as `support()` allows."""
    available = support()
    flags = ("n" if no_network and available.network else "") + ("m" if available.files else "")
    if not flags:
        return command
    if not available.files:
        return ["unshare", f"-r{flags}", *command]
    existing = [Path(p).resolve() for p in protected if Path(p).exists()]
    script = _mount_script(existing, Path(writable).resolve())
    return ["unshare", f"-r{flags}", "sh", "-c", script, "sh", *command]
