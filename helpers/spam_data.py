"""The SMS Spam Collection: download, parsing, balanced split, dataset and loaders.

Where the file is taken from, first match wins:

1. the `path` argument: the `SMSSpamCollection` file or the UCI zip that holds it;
2. the environment variable `LORA_LAB_SMS_FILE` (same meaning), for labs without internet;
3. a copy extracted earlier into `data/sms_spam_collection/`;
4. a download of the UCI zip (or of its mirror), once, written atomically.

Loaders yield `SpamBatch(input_ids, labels, last_idx)`: every batch is right-padded with
`<|endoftext|>` (id 50256) only up to its own longest message, and `last_idx` holds the
position of each message's last real token, where the classifier reads its logits.
"""

from __future__ import annotations

import csv
import os
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler

from helpers.download import DownloadError, download_file, is_reachable
from helpers.modes import grading_mode
from helpers.paths import data_dir, local_file
from helpers.sample_sms import sample_sms_collection
from helpers.tokenizer import END_OF_TEXT_ID, gpt2_tokenizer

SMS_FILE_VAR = "LORA_LAB_SMS_FILE"
SMS_URLS = (
    "https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip",
    # The LLMs-from-scratch book's copy of the same zip.
    "https://f001.backblazeb2.com/file/LLMs-from-scratch/sms%2Bspam%2Bcollection.zip",
)
MEMBER_NAME = "SMSSpamCollection"
LABEL_IDS = {"ham": 0, "spam": 1}
PAD_TOKEN_ID = END_OF_TEXT_ID
COLUMNS = ["Label", "Text"]


# --- finding the file ------------------------------------------------------------------------

def sms_folder() -> Path:
    """`data/sms_spam_collection/`, where the downloaded collection is kept (created if needed)."""
    path = data_dir() / "sms_spam_collection"
    path.mkdir(exist_ok=True)
    return path


def _extract_member(zip_path: Path, dest: Path) -> Path:
    """Extract `SMSSpamCollection` from `zip_path` to `dest` atomically (temporary + rename)."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            data = archive.read(MEMBER_NAME)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise ValueError(f"{zip_path} is not the UCI zip holding {MEMBER_NAME} ({exc}).") from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        read_sms_spam(tmp_name, source=zip_path)  # never leave a file that is not the collection
        os.replace(tmp_name, dest)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return dest


def _resolve_local(path: str | os.PathLike) -> Path:
    path = local_file(path, MEMBER_NAME, "SMS Spam Collection",
                      f"Give the path of the `{MEMBER_NAME}` file (or of the UCI zip "
                      "`sms+spam+collection.zip`, or of a folder holding the file).")
    if zipfile.is_zipfile(path):
        return _extract_member(path, sms_folder() / MEMBER_NAME)
    return path


def download_sms_spam(urls: Sequence[str] = SMS_URLS, timeout: float = 30.0) -> Path:
    """Download the UCI zip (trying each URL in turn) and extract the collection into data/."""
    dest = sms_folder() / MEMBER_NAME
    zip_path = sms_folder() / "sms+spam+collection.zip"
    failures = []
    for url in urls:
        if not is_reachable(url, timeout=min(timeout, 5.0)):
            failures.append(f"{url}: host not reachable")
            continue
        try:
            download_file(url, zip_path, desc="SMS Spam Collection", timeout=timeout)
            return _extract_member(zip_path, dest)
        except (DownloadError, ValueError) as exc:
            failures.append(str(exc))
        finally:
            zip_path.unlink(missing_ok=True)
    raise DownloadError(
        "Could not download the SMS Spam Collection:\n  - " + "\n  - ".join(failures) + "\n"
        f"To continue without internet, download {SMS_URLS[0]} on a "
        "machine that has it, copy the zip (or the `SMSSpamCollection` file inside it) here "
        f"and either pass `path=\"path/to/it\"` or set the environment variable {SMS_FILE_VAR} "
        "to that path."
    )


def sms_spam_file(path: str | os.PathLike | None = None,
                  urls: Sequence[str] = SMS_URLS) -> Path:
    """The local path of the `SMSSpamCollection` file, downloading it on first use."""
    if path is not None:
        return _resolve_local(path)
    if os.environ.get(SMS_FILE_VAR):
        return _resolve_local(os.environ[SMS_FILE_VAR])
    cached = sms_folder() / MEMBER_NAME
    if cached.is_file():
        return cached
    return download_sms_spam(urls)


# --- parsing, balancing, splitting -----------------------------------------------------------

def read_sms_spam(path: str | os.PathLike, source: str | os.PathLike | None = None) -> pd.DataFrame:
    """All messages as a DataFrame with columns Label ('ham'/'spam') and Text.

    Lines are `label<TAB>text` with no header. Quotes are ordinary characters in SMS text:
    reading them as CSV quoting (pandas' default) merges messages, so quoting is turned off.
    `source` names the file in error messages when `path` is a temporary copy of it.
    """
    name = source or path
    what_to_do = (f"Delete it (or fix the path) so that the original `{MEMBER_NAME}` "
                  "file of the UCI SMS Spam Collection is used.")
    try:
        df = pd.read_csv(path, sep="\t", header=None, quoting=csv.QUOTE_NONE, dtype=str,
                         keep_default_na=False, encoding="utf-8")
    except pd.errors.EmptyDataError:
        raise ValueError(f"{name} is empty, not the SMS Spam Collection. {what_to_do}") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"{name} is not the SMS Spam Collection ({str(exc).strip()}). "
                         f"{what_to_do}") from None
    if df.shape[1] != 2:
        raise ValueError(f"{name} has {df.shape[1]} tab-separated columns, the SMS Spam "
                         f"Collection has 2 (label, text). {what_to_do}")
    df.columns = COLUMNS
    bad = sorted(set(df["Label"]) - set(LABEL_IDS))
    if bad:
        raise ValueError(f"{name} has labels {bad[:5]}; the SMS Spam Collection has only "
                         f"'ham' and 'spam'. {what_to_do}")
    empty = (df.index[df["Text"].str.strip() == ""] + 1).tolist()
    if empty:
        raise ValueError(f"{name} has lines with no message text (lines {empty[:5]}). "
                         f"{what_to_do}")
    if set(df["Label"]) != set(LABEL_IDS):
        raise ValueError(f"{name} does not have both 'ham' and 'spam' messages. {what_to_do}")
    return df


def load_sms_spam(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """Find (or download) the collection and parse it: 5,574 rows, 4,827 ham, 747 spam.

    In grading mode, with no `path` and no $LORA_LAB_SMS_FILE, the small made-up collection
    of `helpers.sample_sms` is used instead, so grading never needs a download.
    """
    if path is None and grading_mode() and not os.environ.get(SMS_FILE_VAR):
        return sample_sms_collection()
    return read_sms_spam(sms_spam_file(path))


def create_balanced_dataset(df: pd.DataFrame, seed: int = 123) -> pd.DataFrame:
    """As many ham messages (sampled with `seed`) as there are spam, labels as 0/1 ints."""
    spam = df[df["Label"] == "spam"]
    ham = df[df["Label"] == "ham"].sample(len(spam), random_state=seed)
    balanced = pd.concat([ham, spam], ignore_index=True)
    balanced["Label"] = balanced["Label"].map(LABEL_IDS).astype("int64")
    return balanced


class SpamSplits(NamedTuple):
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame


def random_split(df: pd.DataFrame, train_frac: float = 0.7, validation_frac: float = 0.1,
                 seed: int = 123) -> SpamSplits:
    """Shuffle with `seed`, then cut into train / validation / test (the rest)."""
    if not (0 < train_frac and 0 <= validation_frac and train_frac + validation_frac < 1):
        raise ValueError(f"Fractions {train_frac} + {validation_frac} must be positive and "
                         "leave a non-empty test set (sum below 1).")
    shuffled = df.sample(frac=1, random_state=seed).reset_index(drop=True)
    train_end = int(len(shuffled) * train_frac)
    validation_end = train_end + int(len(shuffled) * validation_frac)
    return SpamSplits(
        shuffled[:train_end].reset_index(drop=True),
        shuffled[train_end:validation_end].reset_index(drop=True),
        shuffled[validation_end:].reset_index(drop=True),
    )


def spam_splits(seed: int = 123, path: str | os.PathLike | None = None,
                train_frac: float = 0.7, validation_frac: float = 0.1) -> SpamSplits:
    """The balanced collection split 70/10/20 (1,045 / 149 / 300), reproducible from `seed`."""
    balanced = create_balanced_dataset(load_sms_spam(path), seed=seed)
    return random_split(balanced, train_frac, validation_frac, seed=seed)


# --- dataset, batches, loaders ---------------------------------------------------------------

class SpamDataset(Dataset):
    """Tokenised messages and their labels; each item is (token ids, 0 or 1), unpadded.

    `data` has columns Text and Label (0/1, or 'ham'/'spam').

    Messages longer than `max_length` tokens are truncated to their first `max_length`
    tokens; with `max_length=None` nothing is cut and `max_length` becomes the longest length.
    """

    def __init__(self, data: pd.DataFrame, tokenizer=None, max_length: int | None = None):
        tokenizer = tokenizer or gpt2_tokenizer()
        encoded = [tokenizer.encode(text) for text in data["Text"]]
        if max_length is not None:
            if max_length < 1:
                raise ValueError(f"max_length must be at least 1, got {max_length}.")
            encoded = [ids[:max_length] for ids in encoded]
        empty = [i for i, ids in enumerate(encoded) if not ids]
        if empty:
            raise ValueError(f"Messages at rows {empty[:5]} have no tokens: remove them.")
        self.encoded_texts = encoded
        self.labels = [int(LABEL_IDS.get(label, label)) for label in data["Label"]]
        self.max_length = max_length if max_length is not None else max(map(len, encoded))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[list[int], int]:
        return self.encoded_texts[index], self.labels[index]

    def lengths(self) -> list[int]:
        """Number of tokens of every message, in dataset order."""
        return [len(ids) for ids in self.encoded_texts]


class SpamBatch(NamedTuple):
    """A padded batch: `input_ids, labels, last_idx = batch` works too."""

    input_ids: torch.Tensor  # (batch, seq) token ids, right-padded with 50256
    labels: torch.Tensor     # (batch,) 0 = ham, 1 = spam
    last_idx: torch.Tensor   # (batch,) position of each message's last real token

    def to(self, device: torch.device | str) -> SpamBatch:
        """The same batch with every tensor on `device`."""
        return SpamBatch(*(tensor.to(device) for tensor in self))


def collate_spam(items: Sequence[tuple[Sequence[int], int]], pad_to: int | None = None,
                 pad_id: int = PAD_TOKEN_ID) -> SpamBatch:
    """Pad a list of (token ids, label) to the longest one (or to `pad_to`) on the right."""
    lengths = [len(ids) for ids, _ in items]
    width = max(lengths) if pad_to is None else pad_to
    if width < max(lengths):
        raise ValueError(f"A message has {max(lengths)} tokens, more than pad_to={pad_to}: "
                         f"build the dataset with max_length={pad_to} to truncate it.")
    input_ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    for row, (ids, _) in enumerate(items):
        input_ids[row, :len(ids)] = torch.as_tensor(ids, dtype=torch.long)
    labels = torch.tensor([label for _, label in items], dtype=torch.long)
    last_idx = torch.tensor(lengths, dtype=torch.long) - 1
    return SpamBatch(input_ids, labels, last_idx)


class _Collator:
    """`collate_spam` with a fixed `pad_to` (a class, so worker processes can pickle it)."""

    def __init__(self, pad_to: int | None):
        self.pad_to = pad_to

    def __call__(self, items) -> SpamBatch:
        return collate_spam(items, pad_to=self.pad_to)


class LengthBucketSampler(Sampler[list[int]]):
    """Batches of messages of similar length, so little padding is needed.

    Indices are sorted by length (ties in random order) and cut into batches; with `shuffle`
    the order of the batches is random. Every index appears exactly once per epoch, and the
    sequence of epochs is the same for the same `seed`.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, shuffle: bool = True,
                 seed: int = 123):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        self.lengths = torch.as_tensor(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self):
        order = torch.randperm(len(self.lengths), generator=self.generator)
        yield from self._cut(order[torch.argsort(self.lengths[order], stable=True)])

    def _cut(self, order: torch.Tensor):
        """Batches of consecutive indices of `order`, in random order with `shuffle`."""
        batches = list(order.split(self.batch_size))
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=self.generator)]
        for batch in batches:
            yield batch.tolist()


class ClassMixedLengthSampler(LengthBucketSampler):
    """Batches as short as they can be while every batch holds each class in its share.

    Each class's messages are ranked by length (ties in random order, drawn again every
    epoch); the message at rank r of a class of n gets the key (r + u) / n, u uniform in
    [0, 1): its length quantile within its class. All messages are sorted by that key and cut
    into batches, so a batch takes messages of the same quantile from every class (4 ham and
    4 spam of 8 in the balanced split): about as short as mixed batches can be. Spam is
    longer than ham, so these batches pad more than `LengthBucketSampler`'s (which are mostly
    of one class) and much less than random ones. With `shuffle` the order of the batches is
    random. Every index appears exactly once per epoch; the same `seed` gives the same epochs.
    """

    def __init__(self, lengths: Sequence[int], labels: Sequence[int], batch_size: int,
                 shuffle: bool = True, seed: int = 123):
        if len(lengths) != len(labels):
            raise ValueError(f"{len(lengths)} lengths for {len(labels)} labels.")
        super().__init__(lengths, batch_size, shuffle=shuffle, seed=seed)
        self.labels = torch.as_tensor(labels)

    def __iter__(self):
        keys = torch.empty(len(self.lengths))
        for label in self.labels.unique():
            members = torch.nonzero(self.labels == label).flatten()
            members = members[torch.randperm(len(members), generator=self.generator)]
            members = members[torch.argsort(self.lengths[members], stable=True)]
            jitter = torch.rand(len(members), generator=self.generator)
            keys[members] = (torch.arange(len(members)) + jitter) / len(members)
        yield from self._cut(torch.argsort(keys))


BUCKETS = (False, True, "length", "mixed")


def make_loader(dataset: SpamDataset, batch_size: int = 8, shuffle: bool = False,
                bucket: bool | str = False, pad_to: int | None = None, seed: int = 123,
                num_workers: int = 0) -> DataLoader:
    """A DataLoader of `SpamBatch`es padded per batch (or to `pad_to`).

    bucket: False, random batches (or in order without `shuffle`); True or "length",
    `LengthBucketSampler` (least padding, batches mostly of one class); "mixed",
    `ClassMixedLengthSampler` (short batches with both classes in each).
    """
    if bucket not in BUCKETS:
        raise ValueError(f"bucket={bucket!r}: use False, True (or 'length') or 'mixed'.")
    collate = _Collator(pad_to)
    if bucket:
        if bucket == "mixed":
            sampler = ClassMixedLengthSampler(dataset.lengths(), dataset.labels, batch_size,
                                              shuffle=shuffle, seed=seed)
        else:
            sampler = LengthBucketSampler(dataset.lengths(), batch_size, shuffle=shuffle,
                                          seed=seed)
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate,
                          num_workers=num_workers)
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
                      collate_fn=collate, num_workers=num_workers)


class SpamLoaders(NamedTuple):
    train: DataLoader
    validation: DataLoader
    test: DataLoader


def spam_loaders(batch_size: int = 8, seed: int = 123, max_length: int | None = None,
                 bucket: bool | str = "mixed", pad_to: int | None = None,
                 path: str | os.PathLike | None = None, tokenizer=None) -> SpamLoaders:
    """Train (shuffled), validation and test loaders of the balanced split, in one call.

    bucket (see `make_loader`): "mixed" (default) batches messages of similar length quantile
    with both classes in every batch; True groups by length alone (fastest, mostly
    single-class batches); False gives the original lab's random batches.

    Validation and test messages are truncated to the training set's `max_length` (by default
    its longest message), as in the original lab. `pad_to=256` pads every batch to 256
    tokens like the original lab (slower, same logits).
    """
    splits = spam_splits(seed=seed, path=path)
    max_length = max_length or pad_to
    train = SpamDataset(splits.train, tokenizer, max_length)
    validation = SpamDataset(splits.validation, tokenizer, train.max_length)
    test = SpamDataset(splits.test, tokenizer, train.max_length)
    options = dict(batch_size=batch_size, bucket=bucket, pad_to=pad_to, seed=seed)
    return SpamLoaders(make_loader(train, shuffle=True, **options),
                       make_loader(validation, **options),
                       make_loader(test, **options))


def describe_batching(loader) -> dict:
    """How a loader batches: {'batch_size', 'order', 'padding', 'text'}.

    order: 'length-bucketed' (LengthBucketSampler; batches of similar lengths, shuffled
    order of batches when the loader shuffles), 'length-grouped with both classes in each
    batch' (ClassMixedLengthSampler), 'shuffled' or 'in order'; padding: 'per batch'
    or 'to N' tokens. Loaders that are not this module's DataLoaders give 'unknown' fields.
    """
    info = {"batch_size": None, "order": "unknown", "padding": "unknown"}
    if isinstance(loader, DataLoader):
        sampler = loader.batch_sampler
        if isinstance(sampler, LengthBucketSampler):  # ClassMixedLengthSampler included
            info["batch_size"] = sampler.batch_size
            mixed = isinstance(sampler, ClassMixedLengthSampler)
            info["order"] = ("length-grouped with both classes in each batch" if mixed
                             else "length-bucketed") + (", shuffled" if sampler.shuffle else "")
        else:
            info["batch_size"] = loader.batch_size
            info["order"] = "shuffled" if isinstance(loader.sampler, RandomSampler) else "in order"
        collate = loader.collate_fn
        if isinstance(collate, _Collator):
            info["padding"] = "per batch" if collate.pad_to is None else f"to {collate.pad_to}"
    size = f"batches of {info['batch_size']}" if info["batch_size"] else "batches"
    info["text"] = f"{size}, {info['order']}, padded {info['padding']}"
    if info["order"] == "unknown":
        info["text"] = f"{type(loader).__name__} (batching unknown)"
    return info
