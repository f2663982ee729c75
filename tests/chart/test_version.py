"""One version: the repository's VERSION is the package's version, the chart's version and appVersion, and
the Airflow image tag the chart runs unless told otherwise (scripts/lib.sh builds and loads that tag)."""

from __future__ import annotations

import re

import pytest
import yaml

import airflow_ha
from tests.chart.conftest import CHART, REPO_ROOT, VALUES_FILES, VERSION

pytestmark = pytest.mark.chart


def airflow_images(rendered) -> set[str]:
    return {
        c["image"]
        for _, spec in rendered.pod_specs()
        for c in spec.get("initContainers", []) + spec["containers"]
        if c["image"].startswith("airflow-ha/airflow:")
    }


def test_version_is_one_value_everywhere():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert re.fullmatch(r"\d+\.\d+\.\d+", VERSION), VERSION
    assert (chart["version"], str(chart["appVersion"]), airflow_ha.__version__) == (VERSION, VERSION, VERSION)
    assert 'VERSION="$(cat "$ROOT/VERSION")"' in (REPO_ROOT / "scripts" / "lib.sh").read_text()


@pytest.mark.parametrize("values_file", [None, *VALUES_FILES])
def test_every_profile_runs_the_image_of_its_chart_version(render, values_file):
    assert airflow_images(render(values_file)) == {f"airflow-ha/airflow:{VERSION}"}


def test_an_explicit_tag_wins(render):
    assert airflow_images(render(None, "images.airflow.tag=9.9.9-custom")) == {"airflow-ha/airflow:9.9.9-custom"}
