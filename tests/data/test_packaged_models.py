"""`from = "package:<name>"`: a released model extracted once from an installed PyPI package."""

from __future__ import annotations

import importlib.util
import json
import zipfile
from pathlib import Path

import pytest

from bertabl.data import packaged_models
from bertabl.data.packaged_models import PackagedModel, packaged_model
from bertabl.errors import DataError, MatrixError
from bertabl.matrix.models import resolve_checkpoint


@pytest.fixture()
def fake_package(tmp_path, monkeypatch) -> Path:
    """An installed package `fake_model_pkg` 0.3 whose model.zip holds a config.json."""
    site = tmp_path / "site"
    module = site / "fake_model_pkg"
    module.mkdir(parents=True)
    (module / "__init__.py").write_text("")
    with zipfile.ZipFile(module / "model.zip", "w") as zipped:
        zipped.writestr("config.json", json.dumps({"model_type": "bert", "num_hidden_layers": 2}))
        zipped.writestr("vocab.txt", "[PAD]\n[UNK]\n")
    dist = site / "fake_model_pkg-0.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-model-pkg\nVersion: 0.3\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv(packaged_models.CACHE_ENV, str(tmp_path / "cache"))
    fake = PackagedModel("a test model", "fake-model-pkg", "fake_model_pkg", "model.zip", "fake")
    monkeypatch.setitem(packaged_models.PACKAGED, "fake", fake)
    return tmp_path


def test_extracted_once_into_the_cache(fake_package: Path):
    folder = packaged_model("fake")
    assert folder == fake_package / "cache" / "models" / "fake-0.3"
    assert json.loads((folder / "config.json").read_text())["num_hidden_layers"] == 2
    stamp = (folder / "config.json").stat().st_mtime_ns
    assert packaged_model("fake") == folder  # no second extraction
    assert (folder / "config.json").stat().st_mtime_ns == stamp
    assert [p.name for p in folder.parent.iterdir()] == ["fake-0.3"]  # no partial folder left


def test_package_and_folder_name_the_same_model(fake_package: Path):
    by_package = resolve_checkpoint("package:fake", "matrix.toml: pretrain.variants[0].from")
    by_folder = resolve_checkpoint(str(packaged_model("fake")), "matrix.toml")
    assert by_package.id == by_folder.id and by_package.layers == 2
    assert by_package.checkpoint.location == str(packaged_model("fake"))


def test_missing_package_says_which_extra_installs_it(monkeypatch):
    absent = PackagedModel("absent", "no-such-dist-xyz", "no_such_module_xyz", "m.zip", "minilm")
    monkeypatch.setitem(packaged_models.PACKAGED, "absent", absent)
    with pytest.raises(MatrixError) as err:
        resolve_checkpoint("package:absent", "m.toml: pretrain.variants[1].from")
    message = str(err.value)
    assert message.startswith("m.toml: pretrain.variants[1].from: package:absent needs")
    assert "no-such-dist-xyz" in message and "'.[minilm]'" in message


def test_a_package_without_its_archive_says_to_reinstall(fake_package: Path):
    (fake_package / "site" / "fake_model_pkg" / "model.zip").unlink()
    with pytest.raises(DataError, match="model.zip is missing from the installed fake-model-pkg"):
        packaged_model("fake")


def test_unknown_name_lists_the_packaged_models():
    with pytest.raises(DataError, match="package:all-MiniLM-L6-v2"):
        packaged_model("bert-large-9000")


@pytest.mark.skipif(
    importlib.util.find_spec("all_minilm_l6_v2") is None, reason="the minilm extra is absent"
)
def test_the_released_minilm(tmp_path, monkeypatch):
    monkeypatch.setenv(packaged_models.CACHE_ENV, str(tmp_path))
    model = resolve_checkpoint("package:all-MiniLM-L6-v2", "m.toml")
    # all-MiniLM-L6-v2's published shape: 6 layers x 384, 22.7M parameters, uncased vocabulary
    assert model.layers == 6 and model.model_type == "bert" and not model.causal
    assert round(model.parameters / 1e6, 1) == 22.7
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model.checkpoint.location)
    assert len(tokenizer) == 30522 and tokenizer.tokenize("Emma") == ["emma"]
