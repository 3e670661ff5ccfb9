import socket

import tiktoken

from helpers.tokenizer import END_OF_TEXT_ID, gpt2_tokenizer


def test_known_token_ids():
    tok = gpt2_tokenizer()
    assert tok.name == "gpt2" and tok.n_vocab == 50257
    assert tok.encode("Hello, world!") == [15496, 11, 995, 0]
    assert tok.encode("<|endoftext|>", allowed_special={"<|endoftext|>"}) == [END_OF_TEXT_ID]
    assert tok.eot_token == 50256
    text = "You are a winner you have been specially selected to receive $1000 cash"
    assert tok.decode(tok.encode(text)) == text


def test_works_without_network(monkeypatch, tmp_path):
    """Fresh cache, every socket refused: the tokenizer still builds."""
    def refuse(*args, **kwargs):
        raise OSError("network disabled")
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    gpt2_tokenizer.cache_clear()
    tok = gpt2_tokenizer()
    assert isinstance(tok, tiktoken.Encoding)
    assert tok.encode(" spam") == [18084]
