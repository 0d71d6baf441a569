"""Detection building blocks: instance regions, per-instance anonymization, torchvision
detectors, and the offline detectors on a real face image shipped by scikit-image."""
import dataclasses

import numpy as np
import pytest
import torch

from anonymizers.mask import MaskOut
from anonymizers.pixelate import Pixelate
from evalsuite.data.detection import DetectionSplit
from evalsuite.detection.instances import anonymize_instances, box_mask, instance_regions, resolve_region, segmentation_mask
from evalsuite.detection.offline import OfflineDetector
from evalsuite.detection.trainable import TrainableConfig, build_detector, train_detector
from evalsuite.errors import UserError
from evalsuite.metrics.detection import coco_detection_scores

ASTRONAUT_FACE = [177, 78, 90, 92]  # x, y, w, h of the face in skimage.data.astronaut(), placed by hand


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: tiny models gain nothing from more, and lose much on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _split(categories=("person", "face")):
    cats = [{"id": i + 1, "name": n} for i, n in enumerate(categories)]
    anns = []
    if "person" in categories:
        anns += [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 4, 10, 20], "segmentation": [[2, 4, 12, 4, 12, 24, 2, 24]], "area": 200, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [30, 10, 8, 16], "area": 128, "iscrowd": 1},  # no segmentation: its box
        ]
    if "face" in categories:
        anns.append({"id": 3, "image_id": 1, "category_id": cats[-1]["id"], "bbox": [4.5, 5, 5, 4], "area": 20, "iscrowd": 0})
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 48, "height": 32}], "annotations": anns, "categories": cats}
    return DetectionSplit("val", None, coco, source="fake.json")  # type: ignore[arg-type]


def test_regions_resolve_from_the_categories():
    assert resolve_region("auto", _split()) == "body"
    assert resolve_region("auto", _split(("face",))) == "face"
    assert resolve_region("face", _split()) == "face"
    with pytest.raises(UserError, match="region.name=body needs person annotations"):
        resolve_region("body", _split(("face",)))
    with pytest.raises(UserError, match="not a detection region"):
        resolve_region("head", _split())


def test_instance_regions_are_masks_and_boxes():
    split = _split()
    image = split.images[0]
    body = instance_regions(split, image, "body", dilation=0)
    assert len(body) == 2  # the crowd person is anonymized too
    assert body[0][0].sum() == segmentation_mask(split.annotations(1)[0], 32, 48).sum() > 0
    assert body[1][0].sum() == 8 * 16
    (face_mask, face_ann), = instance_regions(split, image, "face", dilation=1)
    assert face_ann["face_box"] == [4.5, 5.0, 9.5, 9.0]
    np.testing.assert_array_equal(face_mask, box_mask([4.5, 5, 5, 4], 32, 48, 1))
    assert face_mask.sum() == 8 * 6  # whole pixels x 4..9, y 5..8, grown by one on each side
    assert instance_regions(split, image, "image", 0)[0][0].all()


def test_each_instance_is_anonymized_on_its_own():
    torch.manual_seed(0)
    image = torch.randint(0, 256, (3, 32, 48), dtype=torch.uint8)
    left, right = np.zeros((32, 48), bool), np.zeros((32, 48), bool)
    left[4:20, 2:10] = True
    right[8:30, 30:44] = True
    pixelate = Pixelate(grid=2)
    per_instance = anonymize_instances(pixelate, image, [(left, {}), (right, {})])
    union = pixelate.anonymize(image[None], torch.from_numpy(left | right)[None, None])[0]
    outside = torch.from_numpy(~(left | right))
    assert torch.equal(per_instance[:, outside], image[:, outside])
    assert not torch.equal(per_instance, union)  # the union's box would mix both people
    alone = pixelate.anonymize(image[None], torch.from_numpy(left)[None, None])[0]
    assert torch.equal(per_instance[:, torch.from_numpy(left)], alone[:, torch.from_numpy(left)])
    masked = anonymize_instances(MaskOut(), image, [(left, {}), (right, {})])
    assert (masked[:, torch.from_numpy(left | right)] == 127).all()


@pytest.mark.parametrize("arch", ["fcos", "retinanet", "fasterrcnn"])
def test_torchvision_detectors_train_and_predict(arch):
    cfg = TrainableConfig(arch=arch, batch_size=2, epochs=1, warmup_iters=1)
    torch.manual_seed(0)
    model = build_detector(cfg, num_classes=2, image_size=(64, 80))
    images = [torch.randint(0, 256, (3, 64, 80), dtype=torch.uint8) for _ in range(2)]
    targets = [{"boxes": torch.tensor([[10.0, 8.0, 30.0, 50.0]]), "labels": torch.tensor([1])}, {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    stats = train_detector(model, lambda i: (images[i], targets[i]), 2, cfg, seed=0)
    assert stats["iterations"] == 1 and np.isfinite(stats["final_loss"])
    with torch.no_grad():
        out = model([images[0].float() / 255])[0]
    assert set(out) == {"boxes", "scores", "labels"} and out["boxes"].shape[1] == 4


def test_training_is_seeded():
    cfg = TrainableConfig(batch_size=2, epochs=2, warmup_iters=1, head_convs=1)
    images = [torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    target = {"boxes": torch.tensor([[8.0, 8.0, 40.0, 60.0]]), "labels": torch.tensor([1])}

    def trained(seed, workers=0):
        torch.manual_seed(seed)
        model = build_detector(cfg, 1, (64, 64))
        train_detector(model, lambda i: (images[i], target), 3, dataclasses.replace(cfg, workers=workers), seed=seed)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    first = trained(0)
    assert torch.equal(first, trained(0))
    assert torch.equal(first, trained(0, workers=1))  # a DataLoader worker reads the same batches
    assert not torch.equal(first, trained(1))


def test_detector_settings_and_weight_files_are_checked(tmp_path):
    with pytest.raises(UserError, match="detector.arch"):
        TrainableConfig(arch="yolo")
    with pytest.raises(UserError, match="detector.epochs"):
        TrainableConfig(epochs=-1)
    with pytest.raises(UserError, match="multiple of 32 and at least 64"):
        TrainableConfig(fpn_channels=32)
    missing = tmp_path / "resnet18-f37072fd.pth"
    with pytest.raises(UserError, match="resnet18-f37072fd.pth not found .*detector.backbone_weights"):
        build_detector(TrainableConfig(backbone="resnet18", backbone_weights=str(missing)), 1, (64, 64))
    torch.save({"conv1.weight": torch.zeros(1)}, missing)
    with pytest.raises(UserError, match="does not hold resnet18 ImageNet weights"):
        build_detector(TrainableConfig(backbone="resnet18", backbone_weights=str(missing)), 1, (64, 64))
    from torchvision.models import resnet18

    torch.save(resnet18(weights=None).state_dict(), missing)  # the right shape of file
    model = build_detector(TrainableConfig(backbone="resnet18", backbone_weights=str(missing)), 1, (64, 64))
    frozen = [n for n, p in model.backbone.body.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith(("conv1", "bn1", "layer1")) for n in frozen)


@pytest.fixture(scope="module")
def astronaut():
    data = pytest.importorskip("skimage.data")
    return data.astronaut()


def _face_gt(width, height, box):
    return {"images": [{"id": 1, "file_name": "astronaut.png", "width": width, "height": height}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": box, "area": box[2] * box[3], "iscrowd": 0}],
            "categories": [{"id": 1, "name": "face"}]}


def _face_ap(detector, image, box):
    dets = [{"image_id": 1, "category_id": 1, "bbox": list(d[:4]), "score": d[4]} for d in detector.detect(image)]
    return coco_detection_scores(_face_gt(image.shape[1], image.shape[0], box), dets)["ap50"]


def test_dlib_hog_finds_the_real_face_and_not_the_masked_one(astronaut):
    detector = OfflineDetector("dlib-hog", upsample=0, threshold=-0.5).load()
    assert _face_ap(detector, astronaut, ASTRONAUT_FACE) == pytest.approx(1.0)
    x, y, w, h = ASTRONAUT_FACE
    mask = np.zeros(astronaut.shape[:2], bool)
    mask[y:y + h, x:x + w] = True
    masked = anonymize_instances(MaskOut(), torch.from_numpy(astronaut).permute(2, 0, 1).contiguous(), [(mask, {})])
    assert _face_ap(detector, masked.permute(1, 2, 0).numpy(), ASTRONAUT_FACE) == 0.0


@pytest.mark.slow
def test_dlib_cnn_finds_the_real_face(astronaut):
    x, y, w, h = ASTRONAUT_FACE
    crop = np.ascontiguousarray(astronaut[y - 50:y + h + 50, x - 50:x + w + 50])  # MMOD on ~200x200 px: a few seconds
    detector = OfflineDetector("dlib-cnn", upsample=0).load()
    assert _face_ap(detector, crop, [50, 50, w, h]) == pytest.approx(1.0)


def test_opencv_hog_people_detector_or_a_clear_error(astronaut, monkeypatch):
    import cv2

    if hasattr(cv2, "HOGDescriptor"):
        boxes = OfflineDetector("opencv-hog", upsample=0, threshold=0.0).detect(astronaut)
        assert all(len(b) == 5 for b in boxes)
        monkeypatch.delattr(cv2, "HOGDescriptor")
    with pytest.raises(UserError, match="opencv-contrib-python-headless"):
        OfflineDetector("opencv-hog").load()
    with pytest.raises(UserError, match="not an offline detector"):
        OfflineDetector("haar")
