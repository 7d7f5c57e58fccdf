"""experiments.disaggregation_table on the committed results: one row per (load, level), and its paired ratio equals
sum over seeds of colocated SLO scale / sum of Cascadia's, recomputed here from the seed table with numpy."""
from __future__ import annotations

import pandas as pd
import pytest

from experiments.disaggregation_table import KEYS, main, table
from sim.common.errors import DataError
from sim.common.paths import PROJECT_ROOT

RESULTS = PROJECT_ROOT / "results"


def test_one_row_per_case_and_the_ratio_is_the_ratio_of_seed_sums():
    t = table(RESULTS)
    seeds = pd.read_csv(RESULTS / "disaggregation_seeds.csv")
    cases = pd.read_csv(RESULTS / "disaggregation.csv").groupby(KEYS).ngroups
    assert len(t) == cases
    for (load, level), g in seeds.groupby(KEYS):
        want = (g[g.planner == "cascadia_colocated"].slo_scale.sum() / g[g.planner == "cascadia"].slo_scale.sum())
        row = t[(t["level"] == f"{level:g}") & t["rate x"].str.startswith(f"{load:g} (")]
        assert len(row) == 1
        assert float(row["colocated / cascadia"].iloc[0].split()[0]) == pytest.approx(want, abs=0.005)


def test_a_missing_table_names_the_command_that_makes_it(tmp_path):
    with pytest.raises(DataError, match="experiment=disaggregation"):
        table(tmp_path)


def test_main_prints_a_markdown_table(capsys):
    main(["--results-dir", str(RESULTS)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| rate x |") and set(lines[1]) <= {"|", "-"}
    assert len(lines) == 2 + len(table(RESULTS))
