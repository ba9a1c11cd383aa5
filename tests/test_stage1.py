"""The stage-1 command: one STAGE1 line, a cache hit on the second run, clear errors."""
import json

import pytest

from conftest import tiny_hymirec_settings
from tiny_llm import make_tiny_llm
from recbole_hymirec.tools import stage1

REPORTED = {"n_items", "embedding_dim", "llm", "codebook_layers", "codebook_size",
            "bytes_per_item_fp32", "bytes_per_item_codes", "compression_ratio", "recon_cos_mean",
            "recon_cos_min", "full_code_collisions", "max_cluster_share", "embed_seconds",
            "codebook_seconds", "cache_hit"}


def _overrides(settings):
    return [f"--{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in settings.items()]


def _stage1_line(capsys, argv):
    assert stage1.main(argv) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("STAGE1 ")]
    assert len(lines) == 1
    return json.loads(lines[0][len("STAGE1 "):])


def test_stage1_reports_then_hits_the_cache(tiny_data_path, tmp_path, capsys):
    make_tiny_llm(str(tmp_path / "llm"))
    argv = ["-d", "tiny", *_overrides(tiny_hymirec_settings(tiny_data_path, str(tmp_path / "llm")))]
    first = _stage1_line(capsys, argv)
    assert REPORTED <= set(first)
    assert first["n_items"] == 30 and first["embedding_dim"] == 32 and first["codebook_size"] == 8
    assert first["bytes_per_item_codes"] == 3 and first["bytes_per_item_fp32"] == 128
    assert first["compression_ratio"] == pytest.approx(128 / 3)
    assert first["cache_hit"] is False
    second = _stage1_line(capsys, argv)
    assert second["cache_hit"] is True
    assert second["recon_cos_mean"] == pytest.approx(first["recon_cos_mean"])


def test_stage1_missing_text_field_is_one_line(tiny_data_path, tmp_path, capsys):
    make_tiny_llm(str(tmp_path / "llm"))
    settings = tiny_hymirec_settings(tiny_data_path, str(tmp_path / "llm"),
                                     item_text_fields=["movie_title", "plot"])
    assert stage1.main(["-d", "tiny", *_overrides(settings)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: Field(s) ['plot'] are not in ")
    assert "available fields: ['item_id', 'movie_title', 'release_year', 'class']" in err
