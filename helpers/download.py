"""Downloads that fail with a message a student can act on, and never leave a partial file."""

from __future__ import annotations

import os
import socket
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from tqdm.auto import tqdm


class DownloadError(RuntimeError):
    """A file could not be downloaded; the message says what to do instead."""


def is_reachable(url: str, timeout: float = 5.0) -> bool:
    """True when a TCP connection to the host of `url` opens within `timeout` seconds."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def download_file(url: str, dest: Path, desc: str | None = None, timeout: float = 30.0) -> Path:
    """Download `url` to `dest` with a progress bar.

    The bytes go to a temporary file in the same folder, renamed to `dest` only once complete,
    so an interrupted download never looks like a finished one.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=desc or dest.name) as bar:
                while chunk := resp.read(1 << 16):
                    out.write(chunk)
                    bar.update(len(chunk))
            if total is not None and out.tell() != total:
                raise DownloadError(f"{url}: got {out.tell()} of {total} bytes.")
        os.replace(tmp_name, dest)
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(f"Could not download {url}: {exc}") from None
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return dest
