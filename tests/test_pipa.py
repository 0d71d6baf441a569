"""The PIPA-style reader on a small fake tree: layout, naeil body crops, splits and bad input."""
import cv2
import numpy as np
import pytest

from evalsuite.data.pipa import (
    PersonCrop,
    body_box,
    crop_head_box,
    crop_person,
    load_person_images,
    load_pipa,
    read_person_image,
)
from evalsuite.errors import UserError
from evalsuite.registry import DATASETS, load_all

RED, GREEN = (255, 0, 0), (0, 255, 0)


def write_photo(path, head, size=(300, 400), head_colour=RED):
    """A grey photo (height, width) with a coloured head box (x, y, w, h) and green below it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    photo = np.full((*size, 3), 90, np.uint8)
    x, y, w, h = head
    photo[y + h : y + 6 * h, x : x + w] = GREEN  # a torso under the head
    photo[y : y + h, x : x + w] = head_colour
    cv2.imwrite(str(path), photo[:, :, ::-1])  # RGB -> BGR
    return path


def make_tree(root, lines, photos):
    """index.txt with ``lines`` (tuples) and the photos ``{(folder, photoset, photo): head}``."""
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "index.txt").write_text("\n".join(" ".join(str(v) for v in line) for line in lines) + "\n")
    for (folder, photoset, photo), head in photos.items():
        write_photo(root / folder / f"{photoset}_{photo}.jpg", head)
    return root


@pytest.fixture
def tree(tmp_path):
    # train: ids 7 and 9 (subset 1); test: id 3 with 4 instances, id 5 with 3, id 8 with 1 (dropped)
    lines, photos = [], {}
    head = (100, 20, 30, 30)
    for photo, identity in enumerate([7, 7, 9, 9, 9]):
        lines.append(("11", f"{photo}", *head, identity, 1))
        photos[("train", "11", f"{photo}")] = head
    for photo, identity in enumerate([3, 3, 3, 3, 5, 5, 5, 8]):
        lines.append(("22", f"{photo}", *head, identity, 3))
        photos[("test", "22", f"{photo}")] = head
    return make_tree(tmp_path / "PIPA", lines, photos)


def test_body_box_is_three_widths_by_six_heights_with_the_head_on_top():
    assert body_box((100, 20, 30, 40)) == (70, 20, 160, 260)


def test_square_head_fills_a_128x64_crop_exactly():
    # a w x w head gives a 3w x 6w body box: the 1:2 crop fits it with no padding
    assert crop_head_box((100, 20, 30, 30), 128, 64) == pytest.approx([64 / 3, 0, 128 / 3, 128 / 6], abs=1e-3)


def test_crop_content_head_on_top_and_black_outside_the_photo():
    photo = np.full((300, 400, 3), 90, np.uint8)
    head = (5, 20, 30, 30)  # near the left edge: the body box starts 25 px left of the photo
    photo[20:50, 5:35] = RED
    crop = crop_person(photo, head, 128, 64)
    x0, y0, x1, y1 = (round(v) for v in crop_head_box(head, 128, 64))
    inner = crop[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2].reshape(-1, 3)
    assert (np.abs(inner.astype(int) - RED).max(axis=1) <= 3).all()
    left = crop[60:, :15]  # the part of the body box left of the photo
    assert left.max() == 0
    assert crop[60:, 40:].min() >= 80  # inside the photo: its grey


def test_non_square_head_is_letterboxed_keeping_the_aspect_ratio():
    head = (100, 20, 60, 30)  # wide head: the 180 x 180 body box is square
    box = crop_head_box(head, 128, 64)
    width, height = box[2] - box[0], box[3] - box[1]
    assert width / height == pytest.approx(2.0, rel=0.02)
    assert box[1] > 0  # padded above: the square box is centred vertically


def test_reader_splits_relabels_and_drops_single_instance_ids(tree):
    dataset = load_pipa(tree, split_seed=0)
    assert len(dataset.train) == 5 and sorted({s.pid for s in dataset.train}) == [0, 1]
    assert sorted({s.pid for s in dataset.gallery}) == [3, 5] and sorted({s.pid for s in dataset.query}) == [3, 5]
    assert len(dataset.gallery) == 2 + 2 and len(dataset.query) == 2 + 1  # ceil(n / 2) enrolled per identity
    keys = [s.relpath for s in dataset.gallery + dataset.query]
    assert len(set(keys)) == len(keys) and all(isinstance(s, PersonCrop) for s in dataset.train)
    assert all(s.annotations["head_box"] == pytest.approx([64 / 3, 0, 128 / 3, 128 / 6], abs=1e-3) for s in dataset.query)
    images = load_person_images(dataset.query)
    assert images.shape == (3, 128, 64, 3)
    np.testing.assert_array_equal(images[0], read_person_image(dataset.query[0]))


def test_split_is_seeded(tree):
    first = [s.relpath for s in load_pipa(tree, split_seed=1).gallery]
    assert first == [s.relpath for s in load_pipa(tree, split_seed=1).gallery]
    others = {tuple(s.relpath for s in load_pipa(tree, split_seed=seed).gallery) for seed in range(2, 12)}
    assert len(others | {tuple(first)}) > 1


def test_registered_as_dataset_with_crop_size(tree):
    load_all()
    dataset = DATASETS.build("pipa", root=str(tree), height=96, width=48)
    assert dataset.name == "pipa" and dataset.train[0].size == (96, 48)
    assert load_person_images(dataset.train[:1]).shape == (1, 96, 48, 3)


def test_photo_found_in_a_single_images_folder(tmp_path):
    head = (50, 10, 20, 20)
    lines = [("1", "1", *head, 4, 1), ("2", "1", *head, 6, 3), ("2", "2", *head, 6, 3), ("2", "3", *head, 7, 3), ("2", "4", *head, 7, 3)]
    root = make_tree(tmp_path / "P", lines, {("all", a, b): head for a, b, *_ in lines})
    dataset = load_pipa(root, images="all")
    assert len(dataset.gallery) == 2 and all("/all/" in s.path for s in dataset.gallery)


@pytest.mark.parametrize(
    "mutate, fragments",
    [
        (lambda root: root / "nope", ["does not exist", "dataset.root="]),
        (lambda root: (root / "annotations" / "index.txt").unlink() or root, ["index.txt", "does not exist", "dataset.index="]),
        (lambda root: _append(root, "33 1 1 2 3 4 5"), ["index.txt:14", "7 fields", "photoset_id photo_id"]),
        (lambda root: _append(root, "33 1 1 2 x 4 5 3"), ["index.txt:14", "not 'photoset_id"]),
        (lambda root: _append(root, "33 1 1 2 0 4 5 3"), ["index.txt:14", "positive"]),
        (lambda root: _append(root, "33 9 1 2 3 4 5 3"), ["33_9.jpg", "line 14", "dataset.images="]),
    ],
)
def test_bad_layouts_are_user_errors(tree, mutate, fragments):
    root = mutate(tree)
    with pytest.raises(UserError) as info:
        load_pipa(root)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_bad_subsets_are_user_errors(tree):
    with pytest.raises(UserError, match="no instances of the test subset 2"):
        load_pipa(tree, test_subset=2)
    with pytest.raises(UserError, match="also in dataset.train_subsets"):
        load_pipa(tree, train_subsets=[1, 3])


def _append(root, line):
    with open(root / "annotations" / "index.txt", "a") as handle:
        handle.write(line + "\n")
    return root
