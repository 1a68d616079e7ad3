"""The event contracts: committed JSON Schemas match the models, every event survives a JSON
round trip byte for byte, and malformed events are refused with a ValidationError."""

import base64
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from lineinspect.schemas import (
    EVENTS,
    Alert,
    AnomalyResult,
    DeadLetter,
    Frame,
    ImageStats,
    Label,
    MaskResult,
    Region,
    ReviewResult,
    Telemetry,
    Verdict,
)
from lineinspect.schemas import export

T0 = datetime(2024, 5, 1, 8, 30, 15, 123456, tzinfo=timezone.utc)
# Every byte value, so the base64 text contains "+" and "/" and is long enough that
# base64.encodebytes would wrap it (the line breaks the contract forbids).
IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
MASK = b"\x89PNG\r\n\x1a\nmask" + bytes(range(255, -1, -1))
HEATMAP = b"\x89PNG\r\n\x1a\nheat" + bytes(range(0, 256, 3))
REGIONS = [
    Region(x1=10, y1=20, x2=40, y2=35, score=1.75, area_px=300, defect_type="scratch", type_confidence=0.8),
    Region(x1=0, y1=0, x2=3, y2=3, score=1.1, area_px=9),
]
MODEL_VERSIONS = {"mask": "mask-2024.05.01", "anomaly": "anomaly-3", "reviewer": "reviewer-1"}
STAGE_LATENCY = {"mask": 12.5, "anomaly": 41.0, "reviewer": 3.25}


def full_frame() -> Frame:
    return Frame(
        frame_id="cam1-000042",
        line_id="line-1",
        camera_id="cam1",
        image_type="bottle",
        part_id="SN-77",
        captured_at=T0,
        published_at=T0 + timedelta(milliseconds=5),
        image=IMAGE,
        metadata={"exposure_us": 1200, "recipe": {"name": "A", "gain": 1.5}, "flags": [True, None]},
        mask=MaskResult(
            mask=MASK, mode="model", area_fraction=0.42, area_px=27525, confidence=0.97,
            model_version="mask-2024.05.01", latency_ms=12.5,
        ),
        anomaly=AnomalyResult(
            score=3.5, threshold=2.0, normalised_score=1.75, decision="anomalous", heatmap=HEATMAP,
            regions=REGIONS, model_version="anomaly-3", latency_ms=41.0,
        ),
        review=ReviewResult(grade=2, probabilities=[0.2, 0.7, 0.1], model_version="reviewer-1", latency_ms=3.25),
    )


SAMPLES: dict[str, BaseModel] = {
    "frame": full_frame(),
    "verdict": Verdict(
        frame_id="cam1-000042", line_id="line-1", camera_id="cam1", image_type="bottle", part_id="SN-77",
        captured_at=T0, decided_at=T0 + timedelta(milliseconds=70), decision="fail",
        reasons=["anomaly score 1.75x the threshold", "2 defect regions (scratch)"],
        score=3.5, threshold=2.0, normalised_score=1.75, regions=REGIONS, mask_grade=2,
        model_versions=MODEL_VERSIONS, latency_ms=65.0, stage_latency_ms=STAGE_LATENCY,
    ),
    "telemetry": Telemetry(
        frame_id="cam1-000042", line_id="line-1", camera_id="cam1", image_type="bottle", captured_at=T0,
        image_stats=ImageStats(
            width=256, height=256, mean=118.4, std=40.2, p05=31.0, p95=201.0, contrast=170 / 255,
            sharpness=523.7, channel_means=[120.1, 118.0, 117.2], saturation_mean=12.5,
        ),
        embedding=[i / 7 - 2.0 for i in range(32)],
        anomaly_score=3.5, normalised_score=1.75, mask_area_fraction=0.42, mask_confidence=0.97,
        mask_grade=2, decision="fail", latency_ms=65.0, stage_latency_ms=STAGE_LATENCY,
        model_versions=MODEL_VERSIONS,
    ),
    "label": Label(
        frame_id="cam1-000042", labelled_at=T0 + timedelta(hours=3), labelled_by="j.doe",
        decision="fail", defect_type="scratch", product_mask=MASK, note="scratch near the neck",
    ),
    "deadletter": DeadLetter(
        dead_at=T0, stage="mask_finder", source_topic="lineinspect.frames", source_partition=3,
        source_offset=123456789, key=b"cam1", original=b"\x00\xff{not json" + IMAGE,
        reason="frame cam1-000042: PNG decode failed (truncated file); fix the camera's encoder and republish",
        error_type="decode", frame_id="cam1-000042", headers={"content-type": "application/json"},
    ),
    "alert": Alert(
        alert_id="drift-bottle-20240501T0830", raised_at=T0, kind="drift", severity="warning",
        line_id="line-1", image_type="bottle", figure="drift_share", value=0.45, threshold=0.3,
        window_start=T0 - timedelta(hours=1), window_end=T0, message="45% of image features drifted; check lighting",
        report_url="http://monitor.local/reports/bottle/2024-05-01.html",
    ),
}


def test_every_registered_event_has_a_sample():
    assert set(SAMPLES) == set(EVENTS)
    for stem, event in SAMPLES.items():
        assert type(event) is EVENTS[stem]


def test_committed_json_schemas_equal_the_generated_ones():
    differing = export.differing_files()
    assert differing == [], (
        f"JSON Schemas in {export.SCHEMA_DIR} differ from the models: {differing}; "
        f"run `{export.REGENERATE}` and commit the result"
    )


def test_export_check_names_changed_missing_and_stale_files(tmp_path: Path, capsys):
    assert export.main(["--dir", str(tmp_path)]) == 0
    assert export.main(["--check", "--dir", str(tmp_path)]) == 0
    (tmp_path / "verdict.schema.json").write_text("{}\n")
    (tmp_path / "alert.schema.json").unlink()
    (tmp_path / "retired.schema.json").write_text("{}\n")
    capsys.readouterr()
    assert export.main(["--check", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    for name in ("verdict.schema.json", "alert.schema.json", "retired.schema.json"):
        assert name in err
    assert export.REGENERATE in err
    assert export.main(["--dir", str(tmp_path)]) == 0
    assert export.differing_files(tmp_path) == []
    assert not (tmp_path / "retired.schema.json").exists()


def test_generated_schema_text_is_deterministic_and_sorted():
    text = export.schema_text(Frame)
    assert text == export.schema_text(Frame)
    assert text.endswith("}\n")
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


@pytest.mark.parametrize("stem", list(EVENTS))
def test_event_round_trips_through_json_exactly(stem: str):
    event = SAMPLES[stem]
    model = EVENTS[stem]
    text = event.model_dump_json()
    parsed = model.model_validate_json(text)
    assert parsed == event
    assert parsed.model_dump() == event.model_dump()
    assert parsed.model_dump_json() == text


def test_round_trip_keeps_image_bytes_and_timestamps():
    frame = full_frame()
    parsed = Frame.model_validate_json(frame.model_dump_json())
    assert parsed.image == IMAGE
    assert parsed.mask is not None and parsed.mask.mask == MASK
    assert parsed.anomaly is not None and parsed.anomaly.heatmap == HEATMAP
    assert parsed.anomaly.regions == REGIONS
    assert parsed.captured_at == T0 and parsed.captured_at.utcoffset() == timedelta(0)
    assert parsed.metadata == {"exposure_us": 1200, "recipe": {"name": "A", "gain": 1.5}, "flags": [True, None]}
    dead = DeadLetter.model_validate_json(SAMPLES["deadletter"].model_dump_json())
    assert dead.key == b"cam1"
    assert dead.original == b"\x00\xff{not json" + IMAGE


def test_frame_json_carries_image_as_plain_base64_without_newlines():
    text = full_frame().model_dump_json()
    data = json.loads(text)
    assert data["image"] == base64.b64encode(IMAGE).decode("ascii")
    assert "\n" not in data["image"]
    assert "\\n" not in text
    assert data["mask"]["mask"] == base64.b64encode(MASK).decode("ascii")
    assert base64.b64decode(data["anomaly"]["heatmap"], validate=True) == HEATMAP
    # In Python the image stays bytes; base64 is only the JSON form.
    assert full_frame().model_dump()["image"] == IMAGE


def test_image_accepts_raw_bytes_or_base64_text():
    base = full_frame().model_dump(exclude={"mask", "anomaly", "review"})
    from_bytes = Frame.model_validate({**base, "image": IMAGE})
    from_text = Frame.model_validate({**base, "image": base64.b64encode(IMAGE).decode()})
    assert from_bytes.image == from_text.image == IMAGE


def _json_of(stem: str) -> dict:
    return json.loads(SAMPLES[stem].model_dump_json())


def _error_types(exc: pytest.ExceptionInfo[ValidationError]) -> dict[tuple, str]:
    return {tuple(e["loc"]): e["type"] for e in exc.value.errors()}


@pytest.mark.parametrize("stem", list(EVENTS))
def test_wrong_schema_version_is_rejected(stem: str):
    data = _json_of(stem)
    assert data["schema_version"] == 1
    data["schema_version"] = 2
    with pytest.raises(ValidationError) as exc:
        EVENTS[stem].model_validate_json(json.dumps(data))
    assert _error_types(exc) == {("schema_version",): "literal_error"}


@pytest.mark.parametrize("stem", list(EVENTS))
def test_missing_required_field_is_rejected(stem: str):
    model = EVENTS[stem]
    required = [name for name, field in model.model_fields.items() if field.is_required()]
    assert required
    for name in required:
        data = _json_of(stem)
        del data[name]
        with pytest.raises(ValidationError) as exc:
            model.model_validate_json(json.dumps(data))
        assert _error_types(exc) == {(name,): "missing"}


@pytest.mark.parametrize("stem", list(EVENTS))
def test_unknown_extra_field_is_rejected(stem: str):
    data = _json_of(stem)
    data["colour"] = "red"
    with pytest.raises(ValidationError) as exc:
        EVENTS[stem].model_validate_json(json.dumps(data))
    assert _error_types(exc) == {("colour",): "extra_forbidden"}


def test_unknown_field_inside_a_result_block_is_rejected():
    data = _json_of("frame")
    data["anomaly"]["heat_map"] = data["anomaly"]["heatmap"]
    with pytest.raises(ValidationError) as exc:
        Frame.model_validate_json(json.dumps(data))
    assert _error_types(exc) == {("anomaly", "heat_map"): "extra_forbidden"}


def test_metadata_is_free():
    frame = Frame.model_validate({**_json_of("frame"), "metadata": {"anything": {"nested": [1, "two"]}}})
    assert frame.metadata == {"anything": {"nested": [1, "two"]}}


@pytest.mark.parametrize(
    "bad",
    [
        "not base64!",  # characters outside the alphabet
        base64.b64encode(IMAGE).decode()[:-1],  # truncated: length not a multiple of 4
        "A" + base64.b64encode(IMAGE).decode(),  # stray character
        base64.encodebytes(IMAGE).decode(),  # line breaks (what pydantic's Base64Bytes writes)
        base64.urlsafe_b64encode(IMAGE).decode(),  # URL-safe alphabet
        "",  # an empty image
    ],
)
def test_bad_base64_image_is_rejected(bad: str):
    data = _json_of("frame")
    data["image"] = bad
    with pytest.raises(ValidationError) as exc:
        Frame.model_validate_json(json.dumps(data))
    errors = exc.value.errors()
    assert [e["loc"] for e in errors] == [("image",)]
    assert errors[0]["type"] in {"base64_decode", "bytes_empty"}
    assert "image" in errors[0]["msg"]


def test_bad_base64_in_deadletter_original_is_rejected():
    data = _json_of("deadletter")
    data["original"] = "%%%"
    with pytest.raises(ValidationError) as exc:
        DeadLetter.model_validate_json(json.dumps(data))
    assert _error_types(exc) == {("original",): "base64_decode"}


def test_empty_deadletter_original_is_allowed():
    dead = DeadLetter.model_validate({**_json_of("deadletter"), "original": "", "key": None})
    assert dead.original == b"" and dead.key is None


def test_four_probabilities_are_rejected():
    data = _json_of("frame")
    data["review"]["probabilities"] = [0.25, 0.25, 0.25, 0.25]
    with pytest.raises(ValidationError) as exc:
        Frame.model_validate_json(json.dumps(data))
    assert _error_types(exc) == {("review", "probabilities"): "too_long"}


def test_probabilities_must_sum_to_one():
    with pytest.raises(ValidationError, match="sum to 1.100000"):
        ReviewResult(grade=1, probabilities=[0.5, 0.4, 0.2], model_version="r", latency_ms=1.0)


def test_naive_timestamp_is_rejected_and_offsets_become_utc():
    data = _json_of("verdict")
    data["decided_at"] = "2024-05-01T08:30:15"
    with pytest.raises(ValidationError) as exc:
        Verdict.model_validate_json(json.dumps(data))
    assert _error_types(exc) == {("decided_at",): "timezone_aware"}
    data["decided_at"] = "2024-05-01T10:30:15+02:00"
    verdict = Verdict.model_validate_json(json.dumps(data))
    assert verdict.decided_at == datetime(2024, 5, 1, 8, 30, 15, tzinfo=timezone.utc)
    assert verdict.decided_at.tzinfo == timezone.utc


def test_normalised_score_must_be_score_over_threshold():
    data = _json_of("verdict")
    data["normalised_score"] = 1.5  # 3.5 / 2.0 is 1.75
    with pytest.raises(ValidationError, match="not score / threshold"):
        Verdict.model_validate_json(json.dumps(data))


@pytest.mark.parametrize(
    ("frame_id", "ok"),
    [("cam1-000042", True), ("3f2c.a_b", True), ("", False), ("../etc", False), ("a b", False), ("x" * 129, False)],
)
def test_frame_id_is_short_and_safe(frame_id: str, ok: bool):
    data = {**_json_of("frame"), "frame_id": frame_id}
    if ok:
        assert Frame.model_validate(data).frame_id == frame_id
    else:
        with pytest.raises(ValidationError):
            Frame.model_validate(data)


def test_stage_blocks_must_come_in_order():
    data = _json_of("frame")
    data["mask"] = None
    with pytest.raises(ValidationError, match="mask_finder must run first"):
        Frame.model_validate(data)


def test_region_box_must_be_non_empty_and_hold_its_area():
    with pytest.raises(ValidationError, match="empty box"):
        Region(x1=5, y1=0, x2=5, y2=4, score=1.0, area_px=1)
    with pytest.raises(ValidationError, match="exceeds the box area 12"):
        Region(x1=0, y1=0, x2=3, y2=4, score=1.0, area_px=13)


def test_unknown_stage_key_in_model_versions_is_rejected():
    data = _json_of("verdict")
    data["model_versions"]["mask_finder"] = "x"
    with pytest.raises(ValidationError) as exc:
        Verdict.model_validate_json(json.dumps(data))
    assert _error_types(exc) == {("model_versions", "mask_finder", "[key]"): "literal_error"}


def test_nan_cannot_enter_an_event():
    with pytest.raises(ValidationError) as exc:
        Verdict.model_validate({**_json_of("verdict"), "latency_ms": float("nan")})
    assert _error_types(exc) == {("latency_ms",): "finite_number"}


@pytest.mark.parametrize("stem", ["verdict", "alert"])
def test_mes_and_alert_events_carry_no_images(stem: str):
    schema_text = export.schema_text(EVENTS[stem])
    assert "contentEncoding" not in schema_text


def test_telemetry_carries_no_image_but_the_product_mask_the_line_used():
    properties = Telemetry.model_json_schema()["properties"]
    encoded = [name for name, spec in properties.items() if "contentEncoding" in json.dumps(spec)]
    assert encoded == ["product_mask"], "the monitor needs the mask for IoU; frames and heatmaps stay off telemetry"


def test_image_fields_are_documented_as_base64_images_in_json_schema():
    schema = Frame.model_json_schema()
    image = schema["properties"]["image"]
    assert image["type"] == "string"
    assert image["contentEncoding"] == "base64"
    assert image["contentMediaType"] == "image/*"
    assert image["description"]


@pytest.mark.parametrize("stem", list(EVENTS))
def test_every_model_and_field_is_described_for_mes_developers(stem: str):
    schema = json.loads(export.schema_text(EVENTS[stem]))
    models = [schema, *schema.get("$defs", {}).values()]
    undocumented = [
        f"{model.get('title')}.{name}"
        for model in models
        if "properties" in model
        for name, prop in model["properties"].items()
        if not prop.get("description")
    ]
    assert undocumented == []
    assert all(model.get("description") for model in models if "properties" in model)
