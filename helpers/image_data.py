"""Images for the ResNet: a class-per-folder loader and a synthetic data set for offline work.

Both give float tensors (3, S, S), normalised with the ImageNet mean and std per channel, and
integer labels. Real data sets are downloaded by you, never by this module. Tiny-ImageNet
(http://cs231n.stanford.edu/tiny-imagenet-200.zip, 200 classes of 64x64 images) unpacks its
training set as train/<wnid>/images/*.JPEG: pass that `train` folder. Any folder laid out as
root/<class>/*.png|jpg works too. (Tiny-ImageNet's val/ is one flat folder with a labels
file, not one folder per class: sort it into class folders before loading it.)
"""

from __future__ import annotations

import colorsys
import math
import os
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
    folders (starting with '.') are skipped. Images are read when an item is asked for.
    """

    def __init__(self, root: str | os.PathLike, image_size: int = IMAGE_SIZE,
                 resize: bool = False):
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
        class_dirs = sorted(p for p in self.root.iterdir()
                            if p.is_dir() and not p.name.startswith("."))
        if not class_dirs:
            raise ValueError(
                f"{self.root} has no class sub-folders. Lay the images out as "
                "root/<class>/*.jpg|png, or root/<class>/images/*.JPEG like Tiny-ImageNet's train/."
            )
        self.classes = [p.name for p in class_dirs]
        self.class_to_idx = {name: index for index, name in enumerate(self.classes)}
        self.samples: list[tuple[Path, int]] = []
        empty = []
        for index, class_dir in enumerate(tqdm(class_dirs, desc="Listing images", unit="class",
                                               delay=2.0, leave=False)):
            files = _image_files(class_dir)
            if not files:
                empty.append(class_dir.name)
            self.samples += [(path, index) for path in files]
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
                        num_workers: int = 0) -> DataLoader:
    """A DataLoader of (images (batch, 3, S, S), labels (batch,)) over an ImageFolderDataset."""
    dataset = ImageFolderDataset(root, image_size=image_size, resize=resize)
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
