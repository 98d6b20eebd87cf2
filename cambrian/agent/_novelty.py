"""Near-duplicate detection before evaluation: MinHash over token shingles, or embeddings.

Exact duplicates (same tree) are caught by the archive's tree hash; this module catches
candidates that differ only trivially from a program already in the parent's island.
The default needs no model: texts are cut into tokens (identifiers, numbers, single
punctuation marks; whitespace is ignored), overlapping runs of ``shingle`` tokens are
hashed, and a MinHash signature estimates the Jaccard similarity of two shingle sets.
With ``novelty.method = "embedding"`` the similarity is the cosine of two embeddings.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from cambrian.agent._edit_parts import EditResult
from cambrian.config import NoveltyConfig
from cambrian.llm import embed_texts

NEAR_DUPLICATE = "near-duplicate"

_TOKEN = re.compile(r"\w+|[^\w\s]")
_EMPTY = np.uint64((1 << 32) - 1)
_CACHE_LIMIT = 4096


def shingles(text: str, k: int) -> np.ndarray:
    """The distinct 32-bit hashes of the text's runs of ``k`` tokens.

    Args:
        text: Any text (source code).
        k: Tokens per shingle (> 0). A text shorter than ``k`` tokens is one shingle.
    """
    if k <= 0:
        raise ValueError(f"k must be > 0, got {k}")
    tokens = _TOKEN.findall(text)
    if not tokens:
        return np.zeros(0, dtype=np.uint64)
    runs = (" ".join(tokens[i : i + k]) for i in range(max(1, len(tokens) - k + 1)))
    hashes = {int.from_bytes(hashlib.blake2b(r.encode(), digest_size=4).digest()) for r in runs}
    return np.fromiter(hashes, dtype=np.uint64, count=len(hashes))


def minhash_signature(hashes: np.ndarray, permutations: int, seed: int = 0) -> np.ndarray:
    """The MinHash signature of a set of shingle hashes.

    Each of the ``permutations`` hash functions is multiply-add-shift hashing,
    ``((a * x + b) mod 2^64) >> 32`` with ``a`` odd and ``a``, ``b`` 64-bit numbers drawn
    from ``seed`` (a 2-universal family for 32-bit keys); the signature holds each
    function's minimum.

    Args:
        hashes: 32-bit shingle hashes (``shingles()``).
        permutations: Signature length (> 0); the estimate's error is about
            ``1 / sqrt(permutations)``.
        seed: Seed of the hash functions; signatures compare only under the same seed.
    """
    if permutations <= 0:
        raise ValueError(f"permutations must be > 0, got {permutations}")
    rng = np.random.default_rng(seed)
    top = np.iinfo(np.uint64).max
    a = rng.integers(0, top, size=permutations, dtype=np.uint64, endpoint=True) | np.uint64(1)
    b = rng.integers(0, top, size=permutations, dtype=np.uint64, endpoint=True)
    if hashes.size == 0:
        return np.full(permutations, _EMPTY, dtype=np.uint64)
    # uint64 arithmetic wraps, which is exactly the mod 2^64 the hash family needs.
    values = (np.outer(hashes, a) + b) >> np.uint64(32)
    return values.min(axis=0)


def estimated_similarity(first: np.ndarray, second: np.ndarray) -> float:
    """Estimated Jaccard similarity: the share of equal signature positions."""
    if first.shape != second.shape:
        raise ValueError(f"signatures differ in length: {first.shape} and {second.shape}")
    return float(np.mean(first == second))


def is_near_duplicate(
    candidate_text: str,
    others: Sequence[str],
    threshold: float,
    *,
    shingle: int = 5,
    permutations: int = 128,
) -> tuple[bool, float]:
    """Whether ``candidate_text`` is at least ``threshold`` similar to one of ``others``.

    Args:
        candidate_text: The candidate's text (e.g. its editable files, concatenated).
        others: Texts of the programs to compare with (e.g. the parent's island).
        threshold: Similarity in (0, 1] from which a candidate is a near-duplicate.
        shingle: Tokens per shingle.
        permutations: MinHash signature length.

    Returns:
        The verdict and the highest similarity found (0.0 when ``others`` is empty).
    """
    candidate = minhash_signature(shingles(candidate_text, shingle), permutations)
    best = max(
        (
            estimated_similarity(candidate, minhash_signature(shingles(t, shingle), permutations))
            for t in others
        ),
        default=0.0,
    )
    return best >= threshold, best


def cosine(first: Sequence[float], second: Sequence[float]) -> float:
    """Cosine similarity of two vectors (0.0 when either is zero)."""
    dot = sum(x * y for x, y in zip(first, second, strict=True))
    norms = math.sqrt(sum(x * x for x in first)) * math.sqrt(sum(y * y for y in second))
    return dot / norms if norms else 0.0


class MinHashNovelty:
    """The model-free check, caching the signatures of texts already seen.

    Args:
        config: The ``[novelty]`` section; ``threshold`` must be set.
    """

    def __init__(self, config: NoveltyConfig) -> None:
        if config.threshold is None:
            raise ValueError("novelty.threshold is unset: the check is off")
        self._config = config
        self._signatures: dict[bytes, np.ndarray] = {}

    async def is_near_duplicate(
        self, candidate_text: str, others: Sequence[str]
    ) -> tuple[bool, float]:
        """Whether the candidate nearly duplicates one of ``others``, and the best similarity."""
        candidate = self._signature(candidate_text)
        best = max(
            (estimated_similarity(candidate, self._signature(t)) for t in others), default=0.0
        )
        return best >= self._config.threshold, best

    def _signature(self, text: str) -> np.ndarray:
        """The text's signature, from the cache when it was seen before."""
        key = hashlib.blake2b(text.encode(), digest_size=16).digest()
        if key not in self._signatures:
            if len(self._signatures) >= _CACHE_LIMIT:
                self._signatures.clear()
            config = self._config
            hashes = shingles(text, config.shingle)
            self._signatures[key] = minhash_signature(hashes, config.permutations)
        return self._signatures[key]


class EmbeddingNovelty:
    """The check by cosine similarity of embeddings from any litellm embedding endpoint.

    Args:
        config: The ``[novelty]`` section; ``threshold`` and ``embedding_model`` must be set.
    """

    def __init__(self, config: NoveltyConfig) -> None:
        if config.threshold is None or config.embedding_model is None:
            raise ValueError("novelty.threshold and novelty.embedding_model must be set")
        self._config = config
        self._vectors: dict[bytes, list[float]] = {}

    async def is_near_duplicate(
        self, candidate_text: str, others: Sequence[str]
    ) -> tuple[bool, float]:
        """Whether the candidate nearly duplicates one of ``others``, and the best similarity.

        Raises:
            LLMError: When the embedding endpoint fails.
        """
        vectors = await self._embed([candidate_text, *others])
        best = max((cosine(vectors[0], v) for v in vectors[1:]), default=0.0)
        return best >= self._config.threshold, best

    async def _embed(self, texts: list[str]) -> list[list[float]]:
        """Embeddings of ``texts``, requesting only those not cached yet (in one call)."""
        keys = [hashlib.blake2b(t.encode(), digest_size=16).digest() for t in texts]
        known = {k: self._vectors[k] for k in keys if k in self._vectors}
        missing = {k: t for k, t in zip(keys, texts, strict=True) if k not in known}
        if missing:
            config = self._config
            fresh = await embed_texts(
                list(missing.values()),
                model=config.embedding_model or "",
                api_base=config.embedding_api_base,
                api_key_env=config.embedding_api_key_env,
                timeout_s=config.timeout_s,
            )
            known.update(zip(missing, fresh, strict=True))
            if len(self._vectors) + len(missing) > _CACHE_LIMIT:
                self._vectors.clear()
            self._vectors.update(known)
        return [known[k] for k in keys]


def get_novelty(config: NoveltyConfig) -> MinHashNovelty | EmbeddingNovelty | None:
    """The configured near-duplicate check, or None when ``novelty.threshold`` is unset."""
    if config.threshold is None:
        return None
    return EmbeddingNovelty(config) if config.method == "embedding" else MinHashNovelty(config)


async def novelty_check(
    novelty: Any,
    threshold: float,
    edit: EditResult,
    variables: dict,
    files: dict[str, str],
    elites: Sequence[dict[str, str]] = (),
) -> EditResult:
    """``edit``, refused when it nearly duplicates the parent, a shown program or an elite.

    ``elites`` are the island's elites (path -> content each), so a change that only
    rediscovers an existing elite is refused too.
    """
    text = _joined({**files, **edit.changes})
    others = [_joined(files)] + [
        _joined({f["path"]: f["content"] for f in other["files"]})
        for other in variables["inspirations"]
    ]
    others += [_joined(elite) for elite in elites]
    near, similarity = await novelty.is_near_duplicate(text, others)
    if not near:
        return edit
    error = f"{NEAR_DUPLICATE} (similarity {similarity:.3f} >= {threshold})"
    return EditResult(changes=edit.changes, error=error, kind=edit.kind)


def _joined(files: dict[str, str]) -> str:
    """A program's editable files as one text, in path order (what novelty compares)."""
    return "\n".join(files[path] for path in sorted(files))
