import numpy as np
import pytest
import torch
from PIL import Image

from helpers.image_data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageFolderDataset,
    image_folder_loader,
    load_image,
    normalize,
    synthetic_images,
)
from helpers.resnet import ResNet


pytestmark = pytest.mark.usefixtures("single_thread")


def save_image(path, color=(255, 0, 0), size=64, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.broadcast_to(np.array(color, dtype=np.uint8), (size, size, len(color)))
    if mode == "L":
        pixels = pixels[:, :, 0]
    Image.fromarray(np.ascontiguousarray(pixels), mode=mode).save(path)
    return path


def expected_pixel(color):
    return torch.tensor([(c / 255 - m) / s for c, m, s in zip(color, IMAGENET_MEAN, IMAGENET_STD)])


def test_normalize_uses_imagenet_statistics():
    images = torch.rand(2, 3, 4, 4)
    out = normalize(images)
    for channel in range(3):
        torch.testing.assert_close(out[:, channel], (images[:, channel] - IMAGENET_MEAN[channel])
                                   / IMAGENET_STD[channel])
    assert normalize(images[0]).shape == (3, 4, 4)


def test_load_image_normalises_and_converts_to_rgb(tmp_path):
    color = (200, 100, 50)
    image = load_image(save_image(tmp_path / "a.png", color))
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32
    torch.testing.assert_close(image[:, 10, 10], expected_pixel(color))
    grey = load_image(save_image(tmp_path / "g.png", (128,), mode="L"))
    torch.testing.assert_close(grey[:, 0, 0], expected_pixel((128, 128, 128)))


def test_wrong_image_size_says_what_to_do(tmp_path):
    path = save_image(tmp_path / "big.jpg", size=80)
    with pytest.raises(ValueError, match=r"80x80 pixels, expected 64x64.*resize=True"):
        load_image(path)
    assert load_image(path, resize=True).shape == (3, 64, 64)
    assert load_image(path, image_size=80).shape == (3, 80, 80)


def test_plain_class_folders(tmp_path):
    root = tmp_path / "flowers"
    save_image(root / "tulip" / "1.png", (255, 0, 0))
    save_image(root / "tulip" / "2.JPG", (250, 0, 0))
    save_image(root / "rose" / "1.jpeg", (0, 0, 255))
    (root / "rose" / "notes.txt").write_text("not an image")
    (root / ".ipynb_checkpoints").mkdir()
    dataset = ImageFolderDataset(root)
    assert dataset.classes == ["rose", "tulip"]
    assert dataset.class_to_idx == {"rose": 0, "tulip": 1}
    assert [label for _, label in dataset.samples] == [0, 1, 1]
    image, label = dataset[0]
    assert image.shape == (3, 64, 64) and label == 0


def test_tiny_imagenet_layout(tmp_path):
    top = tmp_path / "tiny-imagenet-200"
    for wnid, color in [("n01443537", (255, 255, 0)), ("n01629819", (0, 255, 0))]:
        for i in range(3):
            save_image(top / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", color)
        (top / "train" / wnid / f"{wnid}_boxes.txt").write_text("box lines\n")
    (top / "wnids.txt").write_text("n01443537\nn01629819\n")
    with pytest.raises(ValueError, match="top folder: pass .*train"):
        ImageFolderDataset(top)
    loader = image_folder_loader(top / "train", batch_size=4, shuffle=False)
    assert loader.dataset.classes == ["n01443537", "n01629819"]
    images, labels = next(iter(loader))
    assert images.shape == (4, 3, 64, 64) and labels.tolist() == [0, 0, 0, 1]
    # JPEG is lossy: a flat colour comes back close to, not exactly at, its value
    torch.testing.assert_close(images[0, :, 5, 5], expected_pixel((255, 255, 0)), atol=0.05,
                               rtol=0)


def test_tiny_imagenet_val_folder_uses_the_training_classes(tmp_path):
    top = tmp_path / "tiny-imagenet-200"
    colors = {"n01443537": (255, 255, 0), "n01629819": (0, 255, 0), "n01641577": (0, 0, 255)}
    for wnid, color in colors.items():
        save_image(top / "train" / wnid / "images" / f"{wnid}_0.JPEG", color)
    val = top / "val"
    labels = ["n01641577", "n01443537", "n01641577"]
    for i, wnid in enumerate(labels):
        save_image(val / "images" / f"val_{i}.JPEG", colors[wnid])
    (val / "val_annotations.txt").write_text(
        "".join(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63\n" for i, wnid in enumerate(labels)))
    train = ImageFolderDataset(top / "train")
    loader = image_folder_loader(val, batch_size=3, shuffle=False, classes=train.classes)
    assert loader.dataset.classes == train.classes == sorted(colors)
    images, got = next(iter(loader))
    assert got.tolist() == [2, 0, 2]
    torch.testing.assert_close(images[1, :, 5, 5], expected_pixel(colors["n01443537"]),
                               atol=0.05, rtol=0)
    # a validation set seen on its own would number only the classes it has: 0 and 1
    assert [label for _, label in ImageFolderDataset(val)] == [1, 0, 1]
    with pytest.raises(ValueError, match="not in the `classes` given: n01641577"):
        ImageFolderDataset(val, classes=["n01443537"])
    (val / "images" / "val_2.JPEG").unlink()
    with pytest.raises(ValueError, match="3 image.*1 of them missing.*val_2.JPEG"):
        ImageFolderDataset(val, classes=train.classes)


def test_class_folders_follow_the_classes_given(tmp_path):
    for name in ("cat", "dog"):
        save_image(tmp_path / "val" / name / "a.png")
    dataset = ImageFolderDataset(tmp_path / "val", classes=["dog", "bird", "cat"])
    assert sorted(label for _, label in dataset) == [0, 2]
    assert dataset.class_to_idx == {"dog": 0, "bird": 1, "cat": 2}


def test_folder_errors_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="Download and unpack"):
        ImageFolderDataset(tmp_path / "missing")
    flat = tmp_path / "flat"
    save_image(flat / "a.png")
    with pytest.raises(ValueError, match="no class sub-folders.*root/<class>"):
        ImageFolderDataset(flat)
    save_image(flat / "cat" / "a.png")
    (flat / "dog").mkdir()
    with pytest.raises(ValueError, match="1 class folder.*hold no .*image: dog"):
        ImageFolderDataset(flat)


def test_synthetic_images_are_deterministic_balanced_and_class_dependent():
    images, labels = synthetic_images(num_classes=5, per_class=6, seed=3)
    assert images.shape == (30, 3, 64, 64) and images.dtype == torch.float32
    assert labels.tolist() == [c for c in range(5) for _ in range(6)]
    again, _ = synthetic_images(num_classes=5, per_class=6, seed=3)
    torch.testing.assert_close(images, again)
    assert not torch.allclose(images, synthetic_images(num_classes=5, per_class=6, seed=4)[0])
    pixels = images.permute(1, 0, 2, 3).reshape(3, -1)
    assert pixels.min() >= normalize(torch.zeros(3, 1, 1)).min() - 1e-6
    assert pixels.max() <= normalize(torch.ones(3, 1, 1)).max() + 1e-6
    class_colours = images.mean(dim=(2, 3)).view(5, 6, 3).mean(1)  # mean colour per class
    distances = torch.cdist(class_colours, class_colours)
    assert distances[~torch.eye(5, dtype=torch.bool)].min() > 0.2
    assert synthetic_images(num_classes=3, per_class=1, image_size=32)[0].shape == (3, 3, 32, 32)


def test_small_resnet_learns_synthetic_classes_it_has_not_seen():
    train_images, train_labels = synthetic_images(num_classes=10, per_class=4, seed=0)
    test_images, test_labels = synthetic_images(num_classes=10, per_class=4, seed=1)
    torch.manual_seed(0)
    model = ResNet(10, (1, 1, 1), widths=(8, 16, 32))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(30):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(train_images), train_labels).backward()
        optimizer.step()
    with torch.no_grad():
        accuracy = (model.eval()(test_images).argmax(1) == test_labels).float().mean()
    assert accuracy >= 0.8
