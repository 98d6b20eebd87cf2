"""Near-duplicate detection: MinHash over token shingles, and embeddings from a real server."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import numpy as np
import pytest

from cambrian.agent._novelty import (
    EmbeddingNovelty,
    MinHashNovelty,
    cosine,
    estimated_similarity,
    get_novelty,
    is_near_duplicate,
    minhash_signature,
    shingles,
)
from cambrian.config import NoveltyConfig
from cambrian.errors import LLMError
from cambrian.llm import ScriptedLLMServer, replay

SOLVE = (Path(__file__).resolve().parents[2] / "tasks" / "circle_packing" / "solve.py").read_text()


def _random_code(rng: random.Random, lines: int = 60) -> str:
    names = ["x", "y", "radius", "best", "total", "step", "i", "j", "k", "value"]
    return "\n".join(
        f"{rng.choice(names)} = {rng.choice(names)} * {rng.randint(0, 99)} + {rng.choice(names)}"
        for _ in range(lines)
    )


def test_shingles_ignore_whitespace_and_cover_short_texts():
    assert set(shingles("a = b + 1", 3)) == set(shingles("a=b+1", 3))
    assert shingles("x", 5).size == 1  # shorter than one shingle: one shingle of all
    assert shingles("   \n", 5).size == 0
    with pytest.raises(ValueError, match="k must be > 0"):
        shingles("x", 0)


def test_minhash_estimates_jaccard_without_bias():
    rng = np.random.default_rng(5)
    errors = []
    for trial in range(100):
        base = rng.integers(0, 2**32, size=200, dtype=np.uint64)
        other = np.concatenate([base[:180], rng.integers(0, 2**32, size=20, dtype=np.uint64)])
        exact = len(set(base) & set(other)) / len(set(base) | set(other))
        estimate = estimated_similarity(
            minhash_signature(base, 128, seed=trial), minhash_signature(other, 128, seed=trial)
        )
        errors.append(estimate - exact)
    assert abs(np.mean(errors)) < 0.01  # unbiased
    assert 0.01 < np.std(errors) < 0.04  # about sqrt(J (1 - J) / 128) = 0.027


def test_signatures_are_deterministic_and_need_the_same_length():
    hashes = shingles(SOLVE, 5)
    assert np.array_equal(minhash_signature(hashes, 64), minhash_signature(hashes, 64))
    with pytest.raises(ValueError, match="differ in length"):
        estimated_similarity(minhash_signature(hashes, 64), minhash_signature(hashes, 32))


def test_reformatted_copy_is_a_near_duplicate_and_unrelated_code_is_not():
    rng = random.Random(0)
    reformatted = SOLVE.replace("    ", "\t").replace(" = ", "=")
    others = [_random_code(rng) for _ in range(5)]
    assert is_near_duplicate(reformatted, [*others, SOLVE], 0.95) == (True, 1.0)
    duplicate, best = is_near_duplicate(_random_code(rng), [SOLVE], 0.95)
    assert not duplicate and best < 0.3
    assert is_near_duplicate(SOLVE, [], 0.5) == (False, 0.0)


def test_similarity_falls_as_edits_grow():
    lines = SOLVE.splitlines()
    one_line = "\n".join([*lines[:10], "changed = 1", *lines[11:]])
    half = "\n".join(lines[: len(lines) // 2])
    _, close = is_near_duplicate(one_line, [SOLVE], 1.0)
    _, far = is_near_duplicate(half, [SOLVE], 1.0)
    assert 0.8 < close < 1.0
    assert far < close - 0.2


def test_minhash_novelty_uses_the_config_and_caches_signatures():
    config = NoveltyConfig(threshold=0.9, shingle=3, permutations=64)
    novelty = get_novelty(config)
    assert isinstance(novelty, MinHashNovelty)
    assert asyncio.run(novelty.is_near_duplicate(SOLVE + "\n", [SOLVE])) == (True, 1.0)
    assert len(novelty._signatures) == 2
    asyncio.run(novelty.is_near_duplicate(SOLVE, [SOLVE + "\n"]))
    assert len(novelty._signatures) == 2  # both signatures came from the cache
    duplicate, _ = asyncio.run(novelty.is_near_duplicate(_random_code(random.Random(1)), [SOLVE]))
    assert not duplicate
    assert get_novelty(NoveltyConfig()) is None  # default: off


def test_cosine():
    assert cosine([1.0, 0.0], [2.0, 0.0]) == pytest.approx(1.0)
    assert cosine([1.0, 0.0], [0.0, 3.0]) == 0.0
    assert cosine([0.0, 0.0], [1.0, 1.0]) == 0.0


def test_embedding_novelty_against_a_real_embedding_endpoint():
    with ScriptedLLMServer(replay(["unused"])) as server:
        config = NoveltyConfig(
            threshold=0.95,
            method="embedding",
            embedding_model="openai/scripted-embed",
            embedding_api_base=server.url,
        )
        novelty = get_novelty(config)
        assert isinstance(novelty, EmbeddingNovelty)
        rng = random.Random(2)
        reformatted = SOLVE.replace("    ", "  ")
        same, best_same = asyncio.run(novelty.is_near_duplicate(reformatted, [SOLVE]))
        other, best_other = asyncio.run(novelty.is_near_duplicate(_random_code(rng), [SOLVE]))
        assert same and best_same == pytest.approx(1.0)
        assert not other and best_other < 0.9
        assert len(novelty._vectors) == 3  # three texts; SOLVE was embedded once


def test_embedding_endpoint_failure_is_an_llm_error():
    config = NoveltyConfig(
        threshold=0.9,
        method="embedding",
        embedding_model="openai/x",
        embedding_api_base="http://127.0.0.1:9/v1",
        timeout_s=5,
    )
    with pytest.raises(LLMError, match="embedding call failed"):
        asyncio.run(EmbeddingNovelty(config).is_near_duplicate("a", ["b"]))
