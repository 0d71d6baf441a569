"""The reconstruction attack's de-anonymizer (attacks/reconstruction.py)."""
import torch

import anonymizers  # noqa: F401  (registers the built-ins)
from attacks.reconstruction import Deanonymizer, ReconstructionConfig, reconstruction_quality
from evalsuite.registry import ANONYMIZERS

TINY = ReconstructionConfig(epochs=30, batch_size=8, lr=5e-3, width=8, depth=2, perceptual_weight=0.0)


def _pairs(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(0, 256, (n, 3, 4, 2), generator=g, dtype=torch.uint8)
    original = torch.nn.functional.interpolate(base.float(), size=(32, 16), mode="bilinear", align_corners=False).round().to(torch.uint8)
    masks = torch.ones(n, 1, 32, 16, dtype=torch.bool)
    return ANONYMIZERS.build("blur", sigma=2.0).anonymize(original, masks), original


def test_an_untrained_deanonymizer_is_the_identity():
    anonymized, _ = _pairs()
    assert torch.equal(Deanonymizer(TINY).reconstruct(anonymized), anonymized)


def test_training_undoes_part_of_a_blur_and_is_deterministic_per_seed(tmp_path):
    anonymized, original = _pairs()
    first = Deanonymizer(TINY, seed=1).fit(anonymized, original)
    assert sum(first.losses[-4:]) / 4 < sum(first.losses[:4]) / 4  # the loss decreases
    before = reconstruction_quality(anonymized, original)
    after = reconstruction_quality(first.reconstruct(anonymized), original)
    assert after["attacked_psnr"] > before["attacked_psnr"]
    second = Deanonymizer(TINY, seed=1).fit(anonymized, original)
    assert torch.equal(first.reconstruct(anonymized), second.reconstruct(anonymized))
    first.save(tmp_path / "d.safetensors")
    loaded = Deanonymizer(TINY, seed=9).load(tmp_path / "d.safetensors")
    assert torch.equal(loaded.reconstruct(anonymized), first.reconstruct(anonymized))


def test_perceptual_term_uses_the_given_feature_network():
    anonymized, original = _pairs(8)
    calls = []

    def features(x):
        calls.append(x.shape)
        return x.mean(dim=(2, 3))

    Deanonymizer(ReconstructionConfig(epochs=1, batch_size=8, width=8, depth=2, perceptual_weight=1.0)).fit(anonymized, original, feature_fn=features)
    assert calls and all(shape[1:] == (3, 32, 16) for shape in calls)


def test_identical_images_have_capped_psnr():
    _, original = _pairs(4)
    scores = reconstruction_quality(original, original)
    assert scores["attacked_psnr"] == 100.0 and scores["attacked_ssim"] == 1.0


def test_reconstruction_attacks_end_to_end_in_market1501_reid(tmp_path):
    import json

    from evalsuite.cli import main

    args = ["protocol=market1501-reid", "dataset=synthetic", "dataset.num_train_ids=6", "dataset.num_test_ids=5", "dataset.num_distractors=3",
            "dataset.num_junk=1", "attacker.epochs=1", "attacker.batch_size=8", "reconstruction.epochs=2", "reconstruction.batch_size=8",
            "reconstruction.width=8", "reconstruction.depth=2", "anonymizers=[none,blur]", "attacks=[naive,reconstruction,reconstruction-adaptive]",
            f"cache_dir={tmp_path / 'cache'}"]
    assert main(["run", *args, f"out={tmp_path / 'a'}"]) == 0
    rows = {(r["anonymizer"], r["attack"]): r for r in map(json.loads, (tmp_path / "a" / "results.jsonl").read_text().splitlines())}
    assert len(rows) == 6
    for attack in ("reconstruction", "reconstruction-adaptive"):  # the identity anonymizer is not reconstructed
        assert rows[("none", attack)]["metrics"] == rows[("none", "naive")]["metrics"]
        assert rows[("none", attack)]["metrics"]["attacked_psnr"] == 100.0
    naive, recon = rows[("blur", "naive")]["metrics"], rows[("blur", "reconstruction")]["metrics"]
    assert recon["attacked_psnr"] != naive["attacked_psnr"]  # the attacker matched reconstructions, not the blurred queries
    assert rows[("blur", "reconstruction")]["attacker_key"] == rows[("blur", "naive")]["attacker_key"]  # the clean attacker
    assert rows[("blur", "reconstruction-adaptive")]["attacker_key"] not in {rows[("blur", a)]["attacker_key"] for a in ("naive", "reconstruction")}
    assert len(list((tmp_path / "cache").rglob("*.safetensors"))) >= 1  # the de-anonymizer is cached


def test_reconstruction_attacks_end_to_end_in_person_recognition(tmp_path):
    import json

    from evalsuite.cli import main

    args = ["protocol=person-recognition", "dataset=synthetic", "dataset.num_train_ids=6", "dataset.num_test_ids=5", "dataset.num_distractors=2",
            "dataset.num_junk=1", "attacker.epochs=1", "attacker.channels=4", "attacker.embedding_dim=16", "reconstruction.epochs=2",
            "reconstruction.batch_size=8", "reconstruction.width=8", "reconstruction.depth=2", "anonymizers=[none,blurhead]",
            "attacks=[naive,reconstruction,reconstruction-adaptive]", f"cache_dir={tmp_path / 'cache'}", f"out={tmp_path / 'a'}"]
    assert main(["run", *args]) == 0
    rows = {(r["anonymizer"], r["attack"]): r for r in map(json.loads, (tmp_path / "a" / "results.jsonl").read_text().splitlines())}
    assert len(rows) == 6
    for attack in ("reconstruction", "reconstruction-adaptive"):
        assert rows[("none", attack)]["metrics"] == rows[("none", "naive")]["metrics"]
    naive, recon = rows[("blurhead", "naive")], rows[("blurhead", "reconstruction")]
    assert recon["metrics"]["attacked_psnr"] != naive["metrics"]["attacked_psnr"]  # the recognizers saw reconstructions
    assert recon["metrics"]["ssim"] == naive["metrics"]["ssim"]  # the anonymizer's own quality is of the anonymized queries
    assert recon["recognizer_keys"] == naive["recognizer_keys"]  # clean recognizers
    adaptive = rows[("blurhead", "reconstruction-adaptive")]["recognizer_keys"]
    assert set(adaptive.values()).isdisjoint(naive["recognizer_keys"].values())
    assert len(list((tmp_path / "cache").rglob("*.safetensors"))) >= 1  # the de-anonymizer is cached
