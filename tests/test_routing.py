"""Hot swap of routed model sets: the anomaly stage's two sets (anomaly models and detectors)
take a routing change as one, so no frame is scored by half of it."""

import time
from pathlib import Path

import pytest

from lineinspect.shared.line.routing import Routing, StageModels, swap_together, write_routing

INTERVAL_S = 0.1


def package(packages: Path, name: str, load_s: float) -> None:
    folder = packages / name
    folder.mkdir(parents=True)
    (folder / "version.txt").write_text(f"{name} {load_s}")


def load_slowly(source: Path | str) -> str:
    """A stand-in model: its version, after the load time its package names."""
    name, load_s = Path(source, "version.txt").read_text().split()
    time.sleep(float(load_s))
    return name


def model_sets(packages: Path) -> tuple[StageModels[str], StageModels[str]]:
    anomaly = StageModels("anomaly", packages, load_slowly, str, reload_interval_s=INTERVAL_S)
    time.sleep(INTERVAL_S / 2)  # the two sets' checks fall due at different moments
    detectors = StageModels("detector", packages, load_slowly, str, reload_interval_s=INTERVAL_S, required=False)
    return anomaly, detectors


@pytest.fixture
def packages(tmp_path: Path) -> Path:
    package(tmp_path, "anomaly-old", 0.0)
    package(tmp_path, "anomaly-new", 0.6)  # loads much slower than the detector
    package(tmp_path, "detector-steel", 0.0)
    write_routing(tmp_path, Routing(anomaly={"default": "anomaly-old"}))
    return tmp_path


def test_a_routing_change_reaches_both_sets_of_the_anomaly_stage_in_one_swap(packages: Path) -> None:
    anomaly, detectors = model_sets(packages)
    assert (anomaly.find("steel"), detectors.find("steel")) == ("anomaly-old", None)
    # "steel" moves from the default anomaly model to a detector alone; the other types get a new model
    write_routing(packages, Routing(anomaly={"tile": "anomaly-new"}, detector={"steel": "detector-steel"}))
    seen = set()
    deadline = time.monotonic() + 10
    while (anomaly.find("tile"), detectors.find("steel")) != ("anomaly-new", "detector-steel"):
        assert time.monotonic() < deadline, "the new routing was never served"
        swap_together([anomaly, detectors])
        seen.add((anomaly.find("steel"), anomaly.find("tile"), detectors.find("steel")))
        time.sleep(0.01)
    assert seen <= {("anomaly-old", "anomaly-old", None), (None, "anomaly-new", "detector-steel")}


def test_one_set_that_fails_to_load_does_not_hold_back_the_other(packages: Path) -> None:
    anomaly, detectors = model_sets(packages)
    write_routing(packages, Routing(anomaly={"default": "anomaly-gone"}, detector={"steel": "detector-steel"}))
    deadline = time.monotonic() + 10
    while detectors.find("steel") is None:
        assert time.monotonic() < deadline, "the detector route was never served"
        swap_together([anomaly, detectors])
        time.sleep(0.01)
    assert anomaly.find("steel") == "anomaly-old"  # the set that failed keeps serving
