"""The leaderboard runs each model in its own process; one failure does not stop the rest."""
import json

from conftest import TINY_RUN
from recbole_hymirec import leaderboard


def test_side_by_side_table_with_a_failing_row(tiny_data_path, capsys):
    overrides = [f"--{k}={json.dumps(v)}" for k, v in dict(TINY_RUN, topk=[10, 20]).items()]
    code = leaderboard.main(["-d", "tiny", "-m", "NoSuchModel,SASRec",
                             f"--data_path={tiny_data_path}", *overrides])
    out = capsys.readouterr().out
    table = out.split("Test metrics on tiny (full ranking)\n")[1].splitlines()
    assert code == 1
    assert table[0].split()[:3] == ["model", "|", "ndcg@10"]
    failed, ok = table[1], table[2]
    assert failed.strip().startswith("NoSuchModel") and "failed: error: Unknown model" in failed
    assert ok.strip().startswith("SASRec") and "failed" not in ok
    assert all(0.0 <= float(c) <= 1.0 for c in ok.split("|")[1:7])


def test_model_config_spec_parsing():
    assert leaderboard.model_files(["HyMiRec=a.yaml b.yaml", "SASRec=c.yaml"]) == {
        "HyMiRec": ["a.yaml", "b.yaml"], "SASRec": ["c.yaml"]}
