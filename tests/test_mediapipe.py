"""The exported file in a real consumer of standard TFLite metadata: MediaPipe Tasks.

Runs only where `mediapipe` imports (its own CI environment, see scripts/test.sh), against the
fixture models (float32 and int8, written by the exporter's metadata writer) and, when the fixture
folder holds `trained/` (`make_fixture_models.py --trained-run`: a real trained run and its real
exports), against its int8 export on the images it was trained on. With the standard score
calibration (`edge-export --score-calibration`), MediaPipe at its one threshold of 0.5 must
decide exactly what edge-infer decides, ties on the threshold included.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

mp = pytest.importorskip("mediapipe", reason="needs the mediapipe package (its own CI environment)")

from edge_runtime import Classifier  # noqa: E402
from edge_runtime.inference.preprocess import load_image  # noqa: E402
from edge_runtime.modelfile import metadata as md  # noqa: E402
from edge_runtime.modelfile import score_calibration as sc  # noqa: E402

INT8_STEP = 1 / 256  # an int8 sigmoid output moves in steps of 1/256


def _classifier(path: Path, score_threshold: float | None = None):
    """Every label (max_results -1); `score_threshold` None leaves the model's own (if any)."""
    from mediapipe.tasks import python as mpt
    from mediapipe.tasks.python import vision

    options = vision.ImageClassifierOptions(
        base_options=mpt.BaseOptions(model_asset_path=str(path)),
        max_results=-1,
        score_threshold=score_threshold,
    )
    return vision.ImageClassifier.create_from_options(options)


def _mp_image(frame: np.ndarray):
    return mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame))


def _categories(clf, frame: np.ndarray) -> dict[str, float]:
    return {
        c.category_name: c.score
        for c in clf.classify(_mp_image(frame)).classifications[0].categories
    }


def _models(fixture_models) -> list[tuple[str, Path, list]]:
    """(name, model, images): images are paths, or uint8 frames at input size."""
    frames = list(np.load(Path(fixture_models["int8"]).parent / "reference_frames.npy"))
    out = [(name, fixture_models[name], frames) for name in ("int8", "float32")]
    trained = Path(fixture_models["int8"]).parent / "trained"
    if (trained / "int8.tflite").is_file():
        images = sorted((trained / "data").glob("*.png"))[:24]
        assert images, f"{trained} holds no data/*.png"
        out.append(("exported", trained / "int8.tflite", images))
    elif os.environ.get(
        "EDGE_FIXTURE_MODELS"
    ):  # scripts/test.sh builds it: missing is a broken run
        pytest.fail(
            f"{trained} holds no int8.tflite: run tests/make_fixture_models.py DIR --trained-run"
        )
    return out


def test_mediapipe_names_and_scores_match_edge_infer(fixture_models):
    for name, path, images in _models(fixture_models):
        ours = Classifier.from_file(path)
        step = INT8_STEP if ours.input_dtype == np.uint8 else 1e-5
        worst = 0.0
        with _classifier(path) as mp_clf:
            for image in images:
                # Both see the same pixels: the frame from the one preprocessing path, already
                # at input size (MediaPipe's own resize is not ours: not what is compared here).
                frame = load_image(image, ours.input_size) if isinstance(image, Path) else image
                expected = ours.predict(frame).scores
                result = mp_clf.classify(
                    mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame))
                )
                categories = result.classifications[0].categories
                got = {c.category_name: c.score for c in categories}
                assert sorted(got) == sorted(ours.labels), (name, got)  # names from labels.txt
                assert all(ours.labels[c.index] == c.category_name for c in categories)
                for label in ours.labels:
                    worst = max(worst, abs(got[label] - expected[label]))
        assert worst <= step + 1e-6, f"{name}: MediaPipe and edge-infer differ by {worst}"
        print(
            f"{name}: {len(images)} images, {len(ours.labels)} labels, max |mediapipe - edge-infer| = {worst:.6f}"
        )


def test_metadata_validates_with_mediapipe_schema(fixture_models):
    """Read back with MediaPipe's own generated accessors for metadata_schema.fbs: every field."""
    from mediapipe.tasks.metadata import metadata_schema_py_generated as fb
    from mediapipe.tasks.metadata import schema_py_generated as tfl

    for name, path, _ in _models(fixture_models):
        data = path.read_bytes()
        model = tfl.Model.GetRootAs(data, 0)
        entries = {
            model.Metadata(i).Name(): model.Metadata(i).Buffer()
            for i in range(model.MetadataLength())
        }
        raw = model.Buffers(entries[b"TFLITE_METADATA"]).DataAsNumpy().tobytes()
        assert fb.ModelMetadata.ModelMetadataBufferHasIdentifier(raw, 0)
        m = fb.ModelMetadata.GetRootAs(raw, 0)
        meta = md.read(data)
        assert m.Name() and m.Description() and m.Version() and m.MinParserVersion() == b"1.0.0"
        if name != "exported":
            assert (m.Author(), m.License()) == (b"edge-multilabel tests", b"Apache-2.0")
        assert (
            m.AssociatedFilesLength() == 1 and m.AssociatedFiles(0).Name() == b"edge_metadata.json"
        )
        assert m.SubgraphMetadataLength() == 1
        sg = m.SubgraphMetadata(0)
        assert sg.InputTensorMetadataLength() == 1 and sg.OutputTensorMetadataLength() == 1
        inp, out = sg.InputTensorMetadata(0), sg.OutputTensorMetadata(0)
        assert (
            inp.Name() == b"image"
            and inp.Content().ContentPropertiesType() == fb.ContentProperties.ImageProperties
        )
        props = fb.ImageProperties()
        props.Init(inp.Content().ContentProperties().Bytes, inp.Content().ContentProperties().Pos)
        assert props.ColorSpace() == fb.ColorSpaceType.RGB
        assert (props.DefaultSize().Width(), props.DefaultSize().Height()) == (
            meta["input"]["width"],
            meta["input"]["height"],
        )
        unit = inp.ProcessUnits(0)
        assert (
            inp.ProcessUnitsLength() == 1
            and unit.OptionsType() == fb.ProcessUnitOptions.NormalizationOptions
        )
        norm = fb.NormalizationOptions()
        norm.Init(unit.Options().Bytes, unit.Options().Pos)
        assert list(norm.MeanAsNumpy()) == [0.0] and list(norm.StdAsNumpy()) == [1.0]
        assert (list(inp.Stats().MaxAsNumpy()), list(inp.Stats().MinAsNumpy())) == ([255.0], [0.0])
        assert out.Name() == b"probability"
        assert out.Content().ContentPropertiesType() == fb.ContentProperties.FeatureProperties
        assert (list(out.Stats().MaxAsNumpy()), list(out.Stats().MinAsNumpy())) == ([1.0], [0.0])
        assert out.AssociatedFilesLength() == 1
        labels_file = out.AssociatedFiles(0)
        assert (
            labels_file.Name() == b"labels.txt"
            and labels_file.Type() == fb.AssociatedFileType.TENSOR_AXIS_LABELS
        )
        assert md.archive(data).read("labels.txt").decode().splitlines() == meta["labels"]


def _calibrated_models(fixture_models) -> list[tuple[str, Path, Path, list]]:
    """(name, calibrated model, the same graph uncalibrated, images)."""
    folder = Path(fixture_models["int8"]).parent
    frames = list(np.load(folder / "reference_frames.npy"))
    out = [
        (name, fixture_models[f"{name}_calibrated"], fixture_models[name], frames)
        for name in ("int8", "float32")
    ]
    trained = folder / "trained"
    if (trained / "int8_calibrated.tflite").is_file():
        images = sorted((trained / "data").glob("*.png"))[:64]
        out.append(
            ("exported", trained / "int8_calibrated.tflite", trained / "int8.tflite", images)
        )
    elif os.environ.get("EDGE_FIXTURE_MODELS"):
        pytest.fail(
            f"{trained} holds no int8_calibrated.tflite: run make_fixture_models.py --trained-run"
        )
    return out


def test_calibrated_mediapipe_at_one_half_decides_exactly_as_edge_infer(fixture_models):
    for name, path, twin, images in _calibrated_models(fixture_models):
        ours = Classifier.from_file(path)
        labels, thresholds = ours.labels, ours.thresholds
        lines = sc.parse(md.archive(path.read_bytes()).read(sc.FILE).decode())
        ties = present = 0
        with (
            _classifier(path) as at_default,  # the threshold the model's metadata gives: 0.5
            _classifier(path, 0.5) as at_half,
            _classifier(path, -1.0) as everything,  # every calibrated score above 0
            _classifier(twin) as raw,
        ):
            for image in images:
                frame = load_image(image, ours.input_size) if isinstance(image, Path) else image
                pred = ours.predict(frame)
                p = np.array([pred.scores[lab] for lab in labels], dtype=np.float32)
                mp_raw = np.array([_categories(raw, frame)[lab] for lab in labels], np.float32)
                # The claim is about decisions on the same probabilities: check they are the same.
                assert np.array_equal(mp_raw, p), (name, mp_raw, p)
                assert set(_categories(at_default, frame)) == set(pred.labels), (name, image)
                assert set(_categories(at_half, frame)) == set(pred.labels), (name, image)
                # MediaPipe's arithmetic is the one replayed in test_score_calibration.py, bit for
                # bit (it leaves out the labels whose calibrated score is 0: under the threshold).
                calibrated = _categories(everything, frame)
                got = np.array([calibrated.get(lab, 0.0) for lab in labels], dtype=np.float32)
                assert np.array_equal(got, sc.consumer_scores(p, lines)), (name, got)
                ties += int(sum(float(v) == t for v, t in zip(p, thresholds)))
                present += len(pred.labels)
        print(
            f"{name}: {len(images)} images, {present} labels present, {ties} scores exactly on "
            "their threshold; MediaPipe at 0.5 decided as edge-infer on every one"
        )
        if name != "exported":  # the fixtures' thresholds sit on scores the frames reach
            assert ties > 0, name
        assert 0 < present < len(images) * len(labels), name
