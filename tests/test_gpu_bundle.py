"""The GPU bundle: the LLM file in checked parts, joined back; a damaged part is named."""
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT
from recbole_hymirec.tools import gpu_bundle

MIB = 2**20


@pytest.fixture
def bundle(tmp_path):
    """A bundle of a 2.5 MiB stand-in LLM file in 1 MiB parts and one stand-in wheel."""
    llm_file = tmp_path / "model.gguf"
    llm_file.write_bytes(os.urandom(2 * MIB + MIB // 2))
    out = tmp_path / "bundle"
    (out / "wheels").mkdir(parents=True)
    (out / "wheels" / "thing-1.0-py3-none-any.whl").write_bytes(b"not really a wheel")
    manifest = gpu_bundle.make_bundle(str(out), "3.12", gpu_bundle.PLATFORMS, part_mib=1,
                                      llm_file=str(llm_file), fetch_wheels=False)
    return out, llm_file, manifest


def test_parts_fit_the_limit_and_join_back_to_the_same_file(bundle):
    out, llm_file, manifest = bundle
    parts = manifest["llm"]["parts"]
    assert [p["name"] for p in parts] == [f"llm/model.gguf.part{i:02d}" for i in range(3)]
    assert [p["size"] for p in parts] == [MIB, MIB, MIB // 2]
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert manifest["wheels"][0]["name"] == "wheels/thing-1.0-py3-none-any.whl"
    joined = gpu_bundle.join_parts(str(out), gpu_bundle.read_manifest(str(out))["llm"])
    assert joined == str(out / "llm" / "model.gguf")
    assert open(joined, "rb").read() == llm_file.read_bytes()


def test_a_damaged_part_is_named_with_the_fix(bundle):
    out, _, manifest = bundle
    part = out / "llm" / "model.gguf.part01"
    data = bytearray(part.read_bytes())
    data[100] ^= 0xFF
    part.write_bytes(bytes(data))
    with pytest.raises(gpu_bundle.BundleError) as err:
        gpu_bundle.join_parts(str(out), manifest["llm"])
    assert str(err.value) == (
        "bundle file llm/model.gguf.part01 is damaged (its sha256 differs from manifest.json). "
        "Fix: copy that file from the bundle again (or make a new bundle with --out).")
    assert not (out / "llm" / "model.gguf").exists()


def test_a_missing_part_and_a_folder_without_manifest_are_one_line_errors(bundle, tmp_path):
    out, _, manifest = bundle
    (out / "llm" / "model.gguf.part02").unlink()
    with pytest.raises(gpu_bundle.BundleError, match=r"^bundle file llm/model.gguf.part02 is "
                                                     r"missing from .*\. Fix: copy that file"):
        gpu_bundle.join_parts(str(out), manifest["llm"])
    with pytest.raises(gpu_bundle.BundleError, match=r"holds no manifest.json: it is not a "
                                                     r"bundle\. Fix: make one with"):
        gpu_bundle.read_manifest(str(tmp_path))


def test_the_installer_runs_by_its_path_without_the_package(tmp_path):
    # on the GPU machine RecBole is not installed yet: the file must need only the stdlib
    script = os.path.join(REPO_ROOT, "recbole_hymirec", "tools", "gpu_bundle.py")
    blocked = tmp_path / "blocked"
    (blocked / "recbole").mkdir(parents=True)
    (blocked / "recbole" / "__init__.py").write_text("raise ImportError('no RecBole here')\n")
    done = subprocess.run([sys.executable, script, "--install", str(tmp_path / "nothing")],
                          env=dict(os.environ, PYTHONPATH=str(blocked)), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and "holds no manifest.json" in done.stderr
