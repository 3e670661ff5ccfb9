"""Shared fixtures. Every test runs with the network cut off (loopback only) and with
`data/` and `img/` redirected to temporary folders."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

import pytest
import torch

from helpers.env_info import DEVICE_VAR
from helpers.gpt_weights import WEIGHTS_VAR
from helpers.paths import DATA_DIR_VAR, IMG_DIR_VAR
from helpers.spam_data import SMS_FILE_VAR

REPO_ROOT = Path(__file__).resolve().parent.parent
# the real SMS Spam Collection: $LORA_LAB_SMS_FILE, else the copy beside the repository
SMS_FILE = Path(os.environ.get(SMS_FILE_VAR)
                or REPO_ROOT.parent / "shared" / "data" / "SMSSpamCollection")

_real_connect = socket.socket.connect


def _loopback_only_connect(sock: socket.socket, address):
    host = address[0] if isinstance(address, tuple) else None
    if host is not None:
        try:
            allowed = ipaddress.ip_address(host).is_loopback
        except ValueError:
            allowed = host == "localhost"
        if not allowed:
            raise OSError(f"tests may not use the network (tried {address})")
    return _real_connect(sock, address)


@pytest.fixture(autouse=True, scope="session")
def no_network():
    socket.socket.connect = _loopback_only_connect
    yield
    socket.socket.connect = _real_connect


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_DIR_VAR, str(tmp_path / "data"))
    monkeypatch.setenv(IMG_DIR_VAR, str(tmp_path / "img"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv(WEIGHTS_VAR, raising=False)
    monkeypatch.delenv(DEVICE_VAR, raising=False)


@pytest.fixture(scope="session")
def sms_file() -> Path:
    if not SMS_FILE.is_file():
        pytest.fail(f"The real SMS Spam Collection is expected at {SMS_FILE}")
    return SMS_FILE


TINY_CFG = {"vocab_size": 50257, "context_length": 64, "emb_dim": 32, "n_heads": 4,
            "n_layers": 2, "drop_rate": 0.0, "qkv_bias": True}


@pytest.fixture
def tiny_cfg() -> dict:
    return dict(TINY_CFG)


@pytest.fixture(scope="module")
def single_thread():
    """Tiny models train faster on one thread, and a second thread spinning on a busy 2-core
    machine makes them many times slower. Use with pytest.mark.usefixtures."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
