"""sim.common.paths: a user's config folder shadows conf/ for a named file, as Hydra's search path does."""
from __future__ import annotations

from sim.common.paths import CONF_DIR, PROJECT_ROOT, catalog_dirs, catalog_names, find_config


def test_the_users_file_shadows_the_shipped_one_and_names_are_joined(tmp_path):
    shipped = find_config("cluster", "paper_4x8_h100")
    assert shipped == CONF_DIR / "cluster" / "paper_4x8_h100.yaml" and shipped.is_file()
    (tmp_path / "cluster").mkdir()
    mine = tmp_path / "cluster" / "paper_4x8_h100.yaml"
    mine.write_text("name: mine\n")
    (tmp_path / "cluster" / "lab.yaml").write_text("name: lab\n")
    assert find_config("cluster", "paper_4x8_h100", [tmp_path]) == mine
    assert find_config("cluster", "nope", [tmp_path]) is None
    names = catalog_names("cluster", [tmp_path])
    assert "lab" in names and names.count("paper_4x8_h100") == 1 and names == sorted(names)
    assert catalog_dirs([tmp_path]) == (tmp_path, CONF_DIR)
    assert CONF_DIR.parent == PROJECT_ROOT
