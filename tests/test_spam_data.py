import http.server
import io
import threading
import time
import zipfile

import pandas as pd
import pytest
import torch

from helpers.download import DownloadError
from helpers.spam_data import (
    MEMBER_NAME,
    PAD_TOKEN_ID,
    SMS_FILE_VAR,
    LengthBucketSampler,
    SpamBatch,
    SpamDataset,
    collate_spam,
    create_balanced_dataset,
    download_sms_spam,
    make_loader,
    random_split,
    read_sms_spam,
    sms_folder,
    sms_spam_file,
    spam_loaders,
    spam_splits,
)
from helpers.tokenizer import gpt2_tokenizer

UNREACHABLE = "http://127.0.0.1:9/sms+spam+collection.zip"  # discard port: nothing listens
TINY_COLLECTION = b'ham\t"Quoted start, no end\nspam\tWIN a prize! call now\nham\tok "see" you'


def _zip_bytes(content: bytes, member: str = MEMBER_NAME) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(member, content)
    return buffer.getvalue()


class _Server:
    """A local HTTP server answering every GET with `body`, announcing `length` bytes."""

    def __init__(self, body: bytes, length: int | None = None):
        self.hits = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.hits += 1
                self.send_response(200)
                self.send_header("Content-Length", str(length or len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/sms+spam+collection.zip"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                         daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    servers = []

    def start(body: bytes, length: int | None = None) -> _Server:
        servers.append(_Server(body, length))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


# --- the real file ---------------------------------------------------------------------------

def test_real_file_has_every_message(sms_file):
    df = read_sms_spam(sms_file)
    assert list(df.columns) == ["Label", "Text"]
    assert len(df) == 5574
    assert df["Label"].value_counts().to_dict() == {"ham": 4827, "spam": 747}


def test_pandas_default_quoting_merges_messages(sms_file):
    naive = pd.read_csv(sms_file, sep="\t", header=None)
    assert len(naive) < 5574  # quotes swallow line breaks and merge messages
    assert len(read_sms_spam(sms_file)) == 5574


def test_balanced_split_sizes_and_labels(sms_file):
    balanced = create_balanced_dataset(read_sms_spam(sms_file), seed=123)
    assert balanced["Label"].value_counts().to_dict() == {0: 747, 1: 747}
    splits = spam_splits(seed=123, path=sms_file)
    assert [len(part) for part in splits] == [1045, 149, 300]
    for part in splits:
        assert set(part["Label"]) == {0, 1}


def test_split_is_reproducible_and_depends_on_the_seed(sms_file):
    first, again, other = (spam_splits(seed, path=sms_file) for seed in (123, 123, 7))
    for a, b in zip(first, again):
        pd.testing.assert_frame_equal(a, b)
    assert not first.train["Text"].equals(other.train["Text"])


def test_splits_do_not_overlap_and_cover_the_balanced_set(sms_file):
    df = read_sms_spam(sms_file)
    df["row"] = range(len(df))  # duplicated texts exist: compare original rows
    balanced = create_balanced_dataset(df, seed=123)
    splits = random_split(balanced, seed=123)
    rows = [set(part["row"]) for part in splits]
    assert sum(map(len, rows)) == len(set().union(*rows)) == len(balanced) == 1494
    assert set().union(*rows) == set(balanced["row"])
    pd.testing.assert_frame_equal(splits.train.drop(columns="row"),
                                  spam_splits(seed=123, path=sms_file).train)


# --- malformed files -------------------------------------------------------------------------

@pytest.mark.parametrize("content,message", [
    (b"", "empty"),
    (b"ham\thello\nspom\tWIN\n", "labels"),
    (b"ham\thello\tworld\nspam\tWIN\tnow\n", "3 tab-separated columns"),
    (b"ham\thello\nspam\n", "no message text"),
    (b"ham\thello\nham\tagain\n", "both 'ham' and 'spam'"),
    (b"<html>\n<body>Not found</body>\n</html>\n", "columns"),
])
def test_a_file_that_is_not_the_collection_is_named_in_the_error(tmp_path, content, message):
    path = tmp_path / "SMSSpamCollection"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as error:
        read_sms_spam(path)
    assert str(path) in str(error.value)


def test_quotes_are_plain_text(tmp_path):
    path = tmp_path / "sms.tsv"
    path.write_bytes(TINY_COLLECTION)
    df = read_sms_spam(path)
    assert df["Text"].tolist() == ['"Quoted start, no end', "WIN a prize! call now", 'ok "see" you']


# --- where the file comes from ---------------------------------------------------------------

def test_local_file_from_argument_or_environment(sms_file, monkeypatch, tmp_path):
    assert sms_spam_file(sms_file) == sms_file
    assert sms_spam_file(sms_file.parent) == sms_file
    monkeypatch.setenv(SMS_FILE_VAR, str(sms_file))
    assert sms_spam_file(urls=(UNREACHABLE,)) == sms_file
    with pytest.raises(FileNotFoundError, match="SMSSpamCollection"):
        sms_spam_file(tmp_path / "missing")


def test_local_zip_is_extracted_into_data(tmp_path):
    zip_path = tmp_path / "sms+spam+collection.zip"
    zip_path.write_bytes(_zip_bytes(TINY_COLLECTION))
    extracted = sms_spam_file(zip_path)
    assert extracted == sms_folder() / MEMBER_NAME
    assert extracted.read_bytes() == TINY_COLLECTION
    wrong = tmp_path / "other.zip"
    wrong.write_bytes(_zip_bytes(TINY_COLLECTION, member="README"))
    with pytest.raises(ValueError, match="not the UCI zip"):
        sms_spam_file(wrong)


def test_offline_download_fails_fast_with_instructions():
    start = time.perf_counter()
    with pytest.raises(DownloadError) as error:
        sms_spam_file(urls=(UNREACHABLE, UNREACHABLE.replace(":9/", ":7/")))
    assert time.perf_counter() - start < 5
    message = str(error.value)
    assert UNREACHABLE in message and SMS_FILE_VAR in message and "path=" in message
    assert not any(sms_folder().iterdir())


def test_download_falls_back_to_the_mirror_and_happens_once(serve):
    server = serve(_zip_bytes(TINY_COLLECTION))
    path = sms_spam_file(urls=(UNREACHABLE, server.url))
    assert path == sms_folder() / MEMBER_NAME
    assert path.read_bytes() == TINY_COLLECTION
    assert sorted(p.name for p in sms_folder().iterdir()) == [MEMBER_NAME]  # zip removed
    assert sms_spam_file(urls=(server.url,)) == path
    assert server.hits == 1


@pytest.mark.parametrize("body,length", [
    (_zip_bytes(TINY_COLLECTION)[:50], len(_zip_bytes(TINY_COLLECTION))),  # cut short
    (b"<html>Service unavailable</html>", None),  # not a zip
    (_zip_bytes(b"label\ttext\nfoo\tbar\n"), None),  # a zip of something else
], ids=["cut-short", "not-a-zip", "other-file"])
def test_failed_download_leaves_nothing_that_looks_complete(serve, body, length):
    server = serve(body, length)
    with pytest.raises(DownloadError, match=SMS_FILE_VAR):
        download_sms_spam(urls=(server.url,))
    assert list(sms_folder().iterdir()) == []


# --- dataset, batches, loaders ---------------------------------------------------------------

def _frame(texts, labels=None):
    return pd.DataFrame({"Label": labels or [i % 2 for i in range(len(texts))], "Text": texts})


def test_dataset_tokenises_and_truncates():
    tok = gpt2_tokenizer()
    texts = ["short one", "a much longer message " * 10, "mid length message here"]
    full = SpamDataset(_frame(texts))
    assert full.max_length == len(tok.encode(texts[1]))
    assert full[1] == (tok.encode(texts[1]), 1)
    cut = SpamDataset(_frame(texts), max_length=4)
    assert cut.max_length == 4
    assert cut.lengths() == [2, 4, 4]
    assert cut[1][0] == tok.encode(texts[1])[:4]
    assert SpamDataset(_frame(["hi", "WIN"], ["ham", "spam"])).labels == [0, 1]


def test_batches_are_padded_to_their_longest_message():
    items = [([5, 6, 7], 1), ([8], 0), ([9, 10], 1)]
    batch = collate_spam(items)
    assert isinstance(batch, SpamBatch)
    input_ids, labels, last_idx = batch
    assert input_ids.tolist() == [[5, 6, 7], [8, PAD_TOKEN_ID, PAD_TOKEN_ID],
                                  [9, 10, PAD_TOKEN_ID]]
    assert labels.tolist() == [1, 0, 1] and last_idx.tolist() == [2, 0, 1]
    fixed = collate_spam(items, pad_to=256)
    assert fixed.input_ids.shape == (3, 256)
    assert torch.equal(fixed.last_idx, last_idx)
    with pytest.raises(ValueError, match="max_length=2"):
        collate_spam(items, pad_to=2)


def test_bucketing_yields_every_example_once_per_epoch_reproducibly():
    lengths = [(i * 37) % 50 + 1 for i in range(203)]
    sampler = LengthBucketSampler(lengths, batch_size=8, seed=5)
    epochs = [list(sampler) for _ in range(3)]
    for batches in epochs:
        assert len(batches) == len(sampler) == 26
        assert sorted(i for batch in batches for i in batch) == list(range(203))
        padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
        assert padded < 1.1 * sum(lengths)  # batches of similar lengths: little padding
    assert epochs[0] != epochs[1]
    again = LengthBucketSampler(lengths, batch_size=8, seed=5)
    assert [list(again) for _ in range(3)] == epochs


def test_spam_loaders(sms_file):
    loaders = spam_loaders(batch_size=8, seed=123, path=sms_file)
    assert [len(loader.dataset) for loader in loaders] == [1045, 149, 300]
    assert len(loaders.train) == 131
    input_ids, labels, last_idx = batch = next(iter(loaders.train))
    assert isinstance(batch, SpamBatch) and input_ids.shape[0] == 8
    assert input_ids.shape[1] == int(last_idx.max()) + 1 < 256
    assert (input_ids[torch.arange(8), last_idx] != PAD_TOKEN_ID).all()
    fixed = next(iter(spam_loaders(path=sms_file, pad_to=256).train))
    assert fixed.input_ids.shape == (8, 256) and torch.equal(fixed.labels, labels)
    assert torch.equal(fixed.input_ids[:, :input_ids.shape[1]], input_ids)
    bucketed = spam_loaders(path=sms_file, bucket=True).train
    assert sum(len(b.labels) for b in bucketed) == 1045


def test_training_order_is_reproducible_and_changes_each_epoch(sms_file):
    first, second = (spam_loaders(path=sms_file).train for _ in range(2))
    epochs = [[b.labels.tolist() for b in first] for _ in range(2)]
    assert [b.labels.tolist() for b in second] == epochs[0] != epochs[1]


def test_make_loader_pads_per_batch(sms_file):
    dataset = SpamDataset(spam_splits(path=sms_file).validation)
    widths = [batch.input_ids.shape[1] for batch in make_loader(dataset, batch_size=8)]
    assert len(set(widths)) > 1 and max(widths) <= dataset.max_length
