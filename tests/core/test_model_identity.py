"""Vectors of two models never mix, even when the models differ only in their weights."""

from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner
from safetensors.numpy import load_file, save_file

from clipsearch import Library, ModelMismatchError, ModelSpec
from clipsearch.cli import main
from clipsearch.model.models import TINY_WEIGHTS


@pytest.fixture
def retuned_checkpoint(tmp_path):
    """The bundled tiny model with one weight nudged: same architecture, same name, other weights."""
    weights = load_file(str(TINY_WEIGHTS))
    name = sorted(weights)[0]
    weights[name] = weights[name] + weights[name].dtype.type(0.01)
    path = tmp_path / "clipsearch-tiny-retuned.safetensors"
    save_file(weights, str(path))
    return path


def test_a_checkpoint_that_differs_only_in_its_weights_is_another_model(retuned_checkpoint, tmp_path, scenes):
    bundled = ModelSpec.parse("clipsearch-tiny")
    retuned = ModelSpec.parse("clipsearch-tiny", checkpoint=str(retuned_checkpoint))
    assert bundled.identity()["name"] == retuned.identity()["name"]
    assert bundled.identity() != retuned.identity()
    copy = ModelSpec.parse("clipsearch-tiny", checkpoint=str(shutil.copy(TINY_WEIGHTS, tmp_path / "copy.st")))
    assert copy.identity()["weights_sha256"] == bundled.identity()["weights_sha256"]  # same bytes: same model

    photos = tmp_path / "photos"
    photos.mkdir()
    folder, records = scenes
    shutil.copy(folder / records[0]["file"], photos / records[0]["file"])
    index = tmp_path / "index"
    first = CliRunner().invoke(main, ["index", str(photos), "--index", str(index), "--model", "clipsearch-tiny"])
    assert first.exit_code == 0, first.output
    again = CliRunner().invoke(main, ["index", str(photos), "--index", str(index), "--model", "clipsearch-tiny",
                                      "--checkpoint", str(retuned_checkpoint)])
    assert again.exit_code == 1 and "cannot be mixed" in again.output
    with pytest.raises(ModelMismatchError):
        Library.open(index, model=retuned)
