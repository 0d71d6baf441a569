"""The one split vocabulary: loaders map their on-disk names to it, a bad name is one clear error."""
import pytest

from evalsuite.errors import UserError
from evalsuite.splits import ON_DISK, SPLITS, check_split, train_and_rest


def test_loaders_take_their_on_disk_names_from_the_vocabulary():
    from evalsuite.data.faces import CELEBA_PARTITIONS
    from evalsuite.data.market1501 import SPLIT_DIRS
    from evalsuite.data.synthetic import SPLIT_FOLDERS

    assert {name: folder for name, folder, _ in SPLIT_DIRS} == SPLIT_FOLDERS == ON_DISK["market1501"]
    assert CELEBA_PARTITIONS == {"0": "train", "1": "val", "2": "test"}
    assert all(split in SPLITS for names in ON_DISK.values() for split in names)


def test_a_bad_split_is_one_error_naming_the_valid_ones():
    with pytest.raises(UserError, match=r"^splits.train='bounding_box_train' is not a split: the splits are train, val, test, gallery, query .*has train, query$"):
        check_split("bounding_box_train", ["query", "train"], "dataset x", "splits.train")
    with pytest.raises(UserError, match="dataset x has no val split; it has train"):
        check_split("val", ["train"], "dataset x", "splits.train")
    assert check_split("gallery", ["gallery"], "dataset x", "k") == "gallery"


def test_reid_dataset_split_refuses_an_on_disk_name():
    from evalsuite.data.types import ReidDataset

    with pytest.raises(UserError, match="split='bounding_box_test' is not a split"):
        ReidDataset(name="x", root="/r", train=[], query=[], gallery=[]).split("bounding_box_test")


def test_train_and_rest_uses_partitions_else_halves_identities():
    from types import SimpleNamespace as S

    partitioned = [S(split=p, identity=str(i), relpath=f"{i}.jpg") for i, p in enumerate(["train", "val", "test", "train"])]
    train, rest, _ = train_and_rest(partitioned, ["train"])
    assert [s.identity for s in train] == ["0", "3"] and [s.identity for s in rest] == ["1", "2"]
    plain = [S(split=None, identity=str(i // 2), relpath=f"{i}.jpg") for i in range(40)]
    train, rest, _ = train_and_rest(plain, ["train"])
    assert train and rest and not {s.identity for s in train} & {s.identity for s in rest}  # an identity on one side only
