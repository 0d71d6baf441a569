"""The synthetic faces' identity model: coarse cues shared across people, identity in geometry and fine texture."""
from __future__ import annotations

from collections import Counter

import cv2
import numpy as np
import pytest

import evalsuite.data.synthetic_faces as sf
from evalsuite.data.face_texture import apply_skin_texture, face_to_pixel, skin_texture
from evalsuite.data.synthetic import HAIR_COLOURS, SKIN_TONES, _rng
from evalsuite.data.synthetic_faces import (
    HAIRSTYLES,
    FaceImageSpec,
    FaceSyntheticConfig,
    render_face,
    render_face_spec,
    sample_face_identity,
    sample_shot,
)

PEOPLE = [sample_face_identity(0, n) for n in range(60)]


def _shots(ident: sf.FaceIdentity, count: int, seed: int = 0) -> list[sf.Shot]:
    return [sample_shot(ident, _rng(seed, 99, ident.number, k)) for k in range(count)]


def test_each_image_is_a_pure_function_of_seed_identity_and_index() -> None:
    config = FaceSyntheticConfig(seed=3, num_identities=2, images_per_identity=(2, 2), size=40)
    first, meta = render_face_spec(FaceImageSpec("a.jpg", 17, 2, 0), config)
    again, meta_again = render_face_spec(FaceImageSpec("b.jpg", 17, 2, 1), config)  # file name and partition do not matter
    np.testing.assert_array_equal(first, again)
    assert meta == meta_again
    other_index, _ = render_face_spec(FaceImageSpec("a.jpg", 17, 3, 0), config)
    other_seed, _ = render_face_spec(FaceImageSpec("a.jpg", 17, 2, 0), FaceSyntheticConfig(seed=4, size=40))
    assert np.abs(first.astype(int) - other_index).mean() > 3 and np.abs(first.astype(int) - other_seed).mean() > 3
    a, b = sample_face_identity(3, 17), sample_face_identity(3, 17)
    assert a.geometry == b.geometry and a.style == b.style
    np.testing.assert_array_equal(a.texture, b.texture)


@pytest.mark.parametrize("key, limit", [("skin_tone", len(SKIN_TONES)), ("hair_colour", len(HAIR_COLOURS)),
                                        ("hairstyle", len(HAIRSTYLES)), ("eye_colour", len(sf.EYE_COLOURS))])
def test_coarse_cues_come_from_small_sets_shared_by_many_people(key: str, limit: int) -> None:
    counts = Counter(p.style[key] for p in PEOPLE)
    assert len(counts) <= limit
    shared = sum(n for n in counts.values() if n >= 3) / len(PEOPLE)
    assert shared >= 0.8  # most people share their value with at least two others


@pytest.mark.parametrize("name_key, colour_key", [("skin_tone", "skin"), ("hair_colour", "hair"), ("eye_colour", "eye")])
def test_no_per_person_colour_fingerprint(name_key: str, colour_key: str) -> None:
    """Two people with the same colour name have the same base colour: the shade is no fingerprint."""
    by_name: dict[str, set[tuple[float, ...]]] = {}
    for p in PEOPLE:
        by_name.setdefault(p.style[name_key], set()).add(tuple(np.round(p.colours[colour_key], 3)))
    assert all(len(colours) == 1 for colours in by_name.values()), by_name


def test_glasses_hats_and_jewellery_vary_from_photo_to_photo() -> None:
    wearers = [p for p in PEOPLE if p.style["glasses"] == "eyeglasses"]
    assert wearers and len(wearers) < len(PEOPLE) / 2
    for p in wearers[:3]:
        worn = [s.glasses for s in _shots(p, 30)]
        assert 0 < sum(worn) < len(worn)  # not a constant of the person
    shots = {p.number: _shots(p, 12) for p in PEOPLE}
    hatted = [n for n, ss in shots.items() if any(s.hat for s in ss)]
    assert len(hatted) >= 10  # hats are worn by many people now and then, not by a few always
    assert all(sum(s.hat for s in shots[n]) < 12 for n in hatted)
    frames = {s.frame for ss in shots.values() for s in ss if s.glasses}
    assert len(frames) > 1


def test_hairstyle_changes_between_photos_but_stays_in_the_shared_set() -> None:
    person = next(p for p in PEOPLE if p.style["hair_length"] != "bald")
    looks = [render_face(person, _rng(0, 98, k), 32)[1]["look"].style["hairstyle"] for k in range(30)]
    assert set(looks) <= set(HAIRSTYLES) and 1 < len(set(looks)) and Counter(looks).most_common(1)[0][0] == person.style["hairstyle"]


def _procrustes_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Distance of landmark sets after the best similarity alignment (pose and scale removed)."""
    a = (a - a.mean(axis=0)) / np.linalg.norm(a - a.mean(axis=0))
    b = (b - b.mean(axis=0)) / np.linalg.norm(b - b.mean(axis=0))
    u, s, vt = np.linalg.svd(b.T @ a)
    return float(np.linalg.norm(a - (b @ (u @ vt)) * s.sum()))


def test_landmark_geometry_separates_identities() -> None:
    rigid = list(range(0, 48))  # jaw, brows, nose, eyes: expression moves the mouth most
    marks = {p.number: [np.array(render_face(p, _rng(0, 97, p.number, k), 48)[1]["landmarks68"])[rigid] for k in range(4)] for p in PEOPLE[:12]}
    within = [_procrustes_distance(a, b) for v in marks.values() for i, a in enumerate(v) for b in v[i + 1:]]
    between = [_procrustes_distance(marks[m][0], marks[n][0]) for m in marks for n in marks if m < n]
    assert np.mean(within) < np.mean(between)
    hits = 0
    for n, v in marks.items():  # nearest identity by aligned landmarks, one probe against three references each
        distance = {m: min(_procrustes_distance(r, v[0]) for r in w[1:]) for m, w in marks.items()}
        hits += min(distance, key=distance.get) == n
    assert hits / len(marks) >= 3 / 12  # chance is 1/12


def test_skin_texture_is_personal_and_lives_in_fine_detail() -> None:
    a, b = PEOPLE[0].texture, PEOPLE[1].texture
    assert a.shape == b.shape and abs(float(np.corrcoef(a.ravel(), b.ravel())[0, 1])) < 0.1
    assert abs(float(a.mean())) < 1e-3 and abs(float(a.std()) - 1) < 1e-3
    # warped into an image, 15-px block means keep little of it (fine detail, not a coarse cue)
    rgb = np.full((112, 112, 3), 150, np.uint8)
    mask = np.full((112, 112), 255, np.uint8)
    face = np.array([[-1.0, -1.0], [1.0, -1.0], [0.0, 1.5]])
    affine = face_to_pixel(face, face * 29 + [56, 50])
    apply_skin_texture(rgb, mask, skin_texture(np.random.default_rng(0)), affine, 0.05)
    detail = rgb.astype(np.float32)[:105, :105, 0] - 150
    blocks = cv2.resize(cv2.resize(detail, (7, 7), interpolation=cv2.INTER_AREA), (105, 105), interpolation=cv2.INTER_NEAREST)
    assert detail.std() > 2 and blocks.std() < 0.35 * detail.std()


def test_face_to_pixel_recovers_an_affine_map() -> None:
    face = np.random.default_rng(1).uniform(-1, 1, (10, 2))
    truth = np.array([[25.0, -3.0, 60.0], [2.0, 27.0, 40.0]])
    pixels = face @ truth[:, :2].T + truth[:, 2]
    np.testing.assert_allclose(face_to_pixel(face, pixels), truth, atol=1e-9)


def test_generated_fingerprint_follows_the_generator_version(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cache keys of the face protocols include it, so a new generator version never reuses stale anonymized sets."""
    from evalsuite.data.synthetic import generated_fingerprint
    from evalsuite.data.synthetic_faces import generate_synthetic_faces

    config = FaceSyntheticConfig(num_identities=2, images_per_identity=(1, 1), size=32)
    first = generated_fingerprint(generate_synthetic_faces(tmp_path / "a", config))
    monkeypatch.setattr(sf, "FACE_GENERATOR_VERSION", sf.FACE_GENERATOR_VERSION + 1)
    second = generated_fingerprint(generate_synthetic_faces(tmp_path / "b", config))
    assert set(first) == {"generated"} and first != second
    (tmp_path / "mine").mkdir()
    assert generated_fingerprint(tmp_path / "mine") == {} and generated_fingerprint(None) == {}
