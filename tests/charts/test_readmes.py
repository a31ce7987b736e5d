"""Each chart has a README whose values table is its values.yaml, key for key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.charts import values_table


@pytest.mark.parametrize("chart", values_table.CHARTS, ids=[c.name for c in values_table.CHARTS])
def test_readme_values_table_equals_values_yaml(chart: Path) -> None:
    readme = chart / "README.md"
    assert readme.is_file(), f"{chart.name} has no README.md"
    assert values_table.generated_section(readme.read_text()) == values_table.table(chart), (
        "run: python -m tests.charts.values_table"
    )


@pytest.mark.parametrize("chart", values_table.CHARTS, ids=[c.name for c in values_table.CHARTS])
def test_every_top_level_value_is_in_the_table(chart: Path) -> None:
    keys = {key.split(".")[0] for key, *_ in values_table.rows(chart)}
    assert keys == set(yaml.safe_load((chart / "values.yaml").read_text()))


def test_descriptions_follow_helm_docs_comments() -> None:
    text = """\
# Not a description.
image:
  # -- Registry host.
  # Continued here, with
  # --api-versions in the middle.
  registry: ""
  tag: v1

# -- Whole object.
resources:
  requests: {cpu: 10m}
tolerations:
  - key: dedicated
    effect: NoSchedule
after:
  # -- Back in a mapping after a list.
  enabled: true
"""
    found = values_table.descriptions(text)
    assert found[("image",)] == ""
    assert found[("image", "registry")] == "Registry host. Continued here, with --api-versions in the middle."
    assert found[("image", "tag")] == ""
    assert found[("resources",)] == "Whole object."
    assert ("tolerations", "key") not in found
    assert ("key",) not in found
    assert found[("after", "enabled")] == "Back in a mapping after a list."
