"""Images for the ResNet: a class-per-folder loader and a synthetic data set for offline work.

Both give float tensors (3, S, S), normalised with the ImageNet mean and std per channel, and
integer labels. Real data sets are downloaded by you, never by this module. Tiny-ImageNet
(http://cs231n.stanford.edu/tiny-imagenet-200.zip, 200 classes of 64x64 images) unpacks its
training set as train/<wnid>/images/*.JPEG: pass that `train` folder. Any folder laid out as
root/<class>/*.png|jpg works too. Its val/ folder is one flat images/ folder with a labels file
(val_annotations.txt); pass it with the training set's classes so the indices agree:

    train = ImageFolderDataset("tiny-imagenet-200/train")
    val = ImageFolderDataset("tiny-imagenet-200/val", classes=train.classes)
"""

from __future__ import annotations

import colorsys
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

IMAGE_SIZE = 64
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")
ANNOTATIONS_FILE = "val_annotations.txt"  # Tiny-ImageNet's val/: file, class, box
BACKGROUND = 0.2  # grey level behind the synthetic images' stripes


def normalize(images: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1], shape (3, H, W) or (N, 3, H, W) -> (pixel - mean) / std per channel."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (images - mean) / std


def load_image(path: str | os.PathLike, image_size: int = IMAGE_SIZE,
               resize: bool = False) -> torch.Tensor:
    """One image file as a normalised float tensor (3, image_size, image_size).

    Greyscale and RGBA images are converted to RGB. An image of another size is an error
    unless `resize=True` (bilinear resize to image_size x image_size).
    """
    with Image.open(path) as image:
        image = image.convert("RGB")
        if image.size != (image_size, image_size):
            if not resize:
                width, height = image.size
                raise ValueError(
                    f"{path} is {width}x{height} pixels, expected {image_size}x{image_size} "
                    f"(Tiny-ImageNet size). Pass resize=True to resize images as they load, "
                    f"or image_size={width} if all your images are {width}x{height}."
                )
            image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
        pixels = np.asarray(image, dtype=np.float32) / 255.0
    return normalize(torch.from_numpy(pixels).permute(2, 0, 1))


def _image_files(class_dir: Path) -> list[Path]:
    """Images of one class: class_dir/images/* (Tiny-ImageNet's train/) or class_dir/*."""
    folder = class_dir / "images" if (class_dir / "images").is_dir() else class_dir
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


class ImageFolderDataset(Dataset):
    """Images laid out one folder per class; items are (image (3, S, S), class index).

    Classes are the sub-folders of `root` in sorted order (`classes`, `class_to_idx`); hidden
    folders (starting with '.') are skipped. A folder holding `val_annotations.txt` and
    `images/` (Tiny-ImageNet's val/) is read from that labels file instead. `classes`: the class
    names in index order, e.g. the training set's, so that a validation set uses the same
    indices (default: the classes found, sorted). Images are read when an item is asked for.
    """

    def __init__(self, root: str | os.PathLike, image_size: int = IMAGE_SIZE,
                 resize: bool = False, classes: Sequence[str] | None = None):
        self.root = Path(root)
        self.image_size = image_size
        self.resize = resize
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"No folder {self.root}. Download and unpack the data set first (e.g. "
                "Tiny-ImageNet), then pass the folder that holds one sub-folder per class."
            )
        if (self.root / "wnids.txt").is_file() and (self.root / "train").is_dir():
            raise ValueError(f"{self.root} is Tiny-ImageNet's top folder: pass "
                             f"{self.root / 'train'}, which has one folder per class.")
        annotations = self.root / ANNOTATIONS_FILE
        if annotations.is_file() and (self.root / "images").is_dir():
            self._read_annotated(annotations, classes)
        else:
            self._read_class_folders(classes)

    def _use_classes(self, found: Sequence[str], classes: Sequence[str] | None) -> None:
        self.classes = list(classes) if classes is not None else sorted(found)
        self.class_to_idx = {name: index for index, name in enumerate(self.classes)}
        unknown = sorted(set(found) - set(self.class_to_idx))
        if unknown:
            shown = ", ".join(unknown[:5]) + (", ..." if len(unknown) > 5 else "")
            raise ValueError(f"{self.root} has {len(unknown)} class(es) not in the `classes` "
                             f"given: {shown}. Pass the classes of the training set it goes "
                             "with (train.classes).")

    def _read_annotated(self, annotations: Path, classes: Sequence[str] | None) -> None:
        labelled = []
        for number, line in enumerate(annotations.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < 2:
                raise ValueError(f"{annotations}, line {number}: expected 'file<TAB>class...', "
                                 f"got {line!r}.")
            labelled.append((self.root / "images" / fields[0], fields[1]))
        missing = [path.name for path, _ in labelled if not path.is_file()]
        if not labelled or missing:
            raise ValueError(f"{annotations} lists {len(labelled)} image(s), {len(missing)} of "
                             f"them missing from {self.root / 'images'} "
                             f"({', '.join(missing[:5])}). Unpack the whole val/ folder again.")
        self._use_classes({name for _, name in labelled}, classes)
        self.samples = [(path, self.class_to_idx[name]) for path, name in labelled]

    def _read_class_folders(self, classes: Sequence[str] | None) -> None:
        class_dirs = sorted(p for p in self.root.iterdir()
                            if p.is_dir() and not p.name.startswith("."))
        if not class_dirs:
            raise ValueError(
                f"{self.root} has no class sub-folders. Lay the images out as "
                "root/<class>/*.jpg|png, or root/<class>/images/*.JPEG like Tiny-ImageNet's train/."
            )
        self._use_classes([p.name for p in class_dirs], classes)
        self.samples = []
        empty = []
        for class_dir in tqdm(class_dirs, desc="Listing images", unit="class", delay=2.0,
                              leave=False):
            files = _image_files(class_dir)
            if not files:
                empty.append(class_dir.name)
            self.samples += [(path, self.class_to_idx[class_dir.name]) for path in files]
        if empty:
            shown = ", ".join(empty[:5]) + (", ..." if len(empty) > 5 else "")
            raise ValueError(
                f"{len(empty)} class folder(s) of {self.root} hold no {'/'.join(IMAGE_EXTENSIONS)} "
                f"image: {shown}. Remove them or add their images (directly in the folder, or "
                "in an images/ sub-folder)."
            )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        return load_image(path, self.image_size, self.resize), label


def image_folder_loader(root: str | os.PathLike, batch_size: int = 64, shuffle: bool = True,
                        image_size: int = IMAGE_SIZE, resize: bool = False,
                        num_workers: int = 0, classes: Sequence[str] | None = None) -> DataLoader:
    """A DataLoader of (images (batch, 3, S, S), labels (batch,)) over an ImageFolderDataset."""
    dataset = ImageFolderDataset(root, image_size=image_size, resize=resize, classes=classes)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers)


def synthetic_images(num_classes: int = 10, per_class: int = 16, image_size: int = IMAGE_SIZE,
                     noise: float = 0.1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Coloured stripe images a small ResNet can learn: (images (N, 3, S, S), labels (N,)).

    Class c has stripes of its own colour (hue c / num_classes), direction and frequency on a
    dark grey background; each image gets a random stripe phase and Gaussian pixel noise of
    std `noise`. Images are normalised like real ones and ordered by class; the same seed
    gives the same images.
    """
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    coords = torch.linspace(0, 1, image_size)
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    images = torch.empty(len(labels), 3, image_size, image_size)
    for c in range(num_classes):
        colour = torch.tensor(colorsys.hsv_to_rgb(c / num_classes, 0.8, 0.9)).view(3, 1, 1)
        angle = math.pi * ((c * 0.618034) % 1.0)  # golden-ratio steps spread the directions
        frequency = 2 + c % 4
        phase = 2 * math.pi * torch.rand(per_class, 1, 1, generator=generator)
        wave = torch.sin(2 * math.pi * frequency * (x * math.cos(angle) + y * math.sin(angle))
                         + phase)
        stripes = (0.5 + 0.5 * wave).unsqueeze(1)  # (per_class, 1, S, S) in [0, 1]
        images[labels == c] = BACKGROUND + stripes * (colour - BACKGROUND)
    images += noise * torch.randn(images.shape, generator=generator)
    return normalize(images.clamp(0, 1)), labels
