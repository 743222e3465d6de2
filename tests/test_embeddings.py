import numpy as np
import pytest

from vital.embeddings import EmbeddingCache, TextEncoder, content_key, embed_texts, encode_cached


class CountingEncoder:
    """Deterministic 4-d vectors from text length; counts what it is asked to encode."""

    name = "counting"
    dim = 4

    def __init__(self):
        self.calls = 0
        self.encoded: list[str] = []

    def encode(self, texts):
        self.calls += 1
        self.encoded.extend(texts)
        return np.array([[len(t), t.count("a"), 1.0, 0.0] for t in texts], dtype=np.float32)


def test_each_distinct_text_is_encoded_once_and_cached(tmp_path):
    encoder = CountingEncoder()
    texts = ["alpha", "beta", "alpha", "gamma"]
    first = embed_texts(texts, encoder, tmp_path)
    assert sorted(encoder.encoded) == ["alpha", "beta", "gamma"]
    assert np.array_equal(first[0], first[2])
    second = embed_texts(texts + ["delta"], encoder, tmp_path)
    assert encoder.encoded[3:] == ["delta"]  # only the new text is encoded on the second run
    assert np.array_equal(first, second[:4])


def test_cache_survives_a_torn_key_and_extra_rows(tmp_path):
    cache = EmbeddingCache(tmp_path, "enc", 2)
    cache.add([content_key("a"), content_key("b")], np.array([[1, 2], [3, 4]], np.float32))
    with (cache.directory / "vectors.f32").open("ab") as handle:
        handle.write(np.zeros(2, np.float32).tobytes())  # a row written whose key never was
    with (cache.directory / "keys.txt").open("a") as handle:
        handle.write("abc")  # torn key
    reopened = EmbeddingCache(tmp_path, "enc", 2)
    assert len(reopened) == 2
    assert reopened.get([content_key("b")]).tolist() == [[3, 4]]


def test_cache_rejects_wrong_shape(tmp_path):
    cache = EmbeddingCache(tmp_path, "enc", 3)
    with pytest.raises(ValueError):
        cache.add(["k" * 32], np.zeros((1, 2), np.float32))


def test_encode_cached_without_a_cache_still_deduplicates():
    encoder = CountingEncoder()
    vectors = encode_cached(["k1", "k2", "k1"], ["aa", "b", "aa"], encoder.encode, 4, None)
    assert encoder.encoded == ["aa", "b"] and vectors.shape == (3, 4)


def test_packaged_minilm_embeds_offline():
    encoder = TextEncoder()
    vectors = encoder.encode(["Axial CT of the chest.", "Axial CT of the thorax.", "H&E stained colon glands."])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]  # a real model: similar captions are closer


def test_fully_cached_run_never_loads_the_model(tmp_path, monkeypatch):
    texts = ["Axial CT of the chest.", "Sagittal T1 MRI of the brain."]
    first = embed_texts(texts, TextEncoder(), tmp_path)

    def no_model(self):
        raise AssertionError("the model was loaded although every text is cached")

    monkeypatch.setattr(TextEncoder, "model", property(no_model))
    second = embed_texts(texts, TextEncoder(), tmp_path)
    assert np.array_equal(first, second)


def test_empty_lookup_on_a_new_cache(tmp_path):
    assert EmbeddingCache(tmp_path, "enc", 3).get([]).shape == (0, 3)


def test_two_writers_sharing_a_cache_never_mix_up_rows(tmp_path):
    first, second = EmbeddingCache(tmp_path, "enc", 2), EmbeddingCache(tmp_path, "enc", 2)
    a, b, c = content_key("a"), content_key("b"), content_key("c")
    first.add([a], np.array([[1, 1]], np.float32))
    second.add([a, b], np.array([[1, 1], [2, 2]], np.float32))  # a is already there: not written again
    first.add([c, c], np.array([[3, 3], [3, 3]], np.float32))  # a key repeated in one batch is written once
    for cache in (first, second, EmbeddingCache(tmp_path, "enc", 2)):
        assert cache.get([a, b, c]).tolist() == [[1, 1], [2, 2], [3, 3]]


def test_damaged_cache_is_a_clear_error(tmp_path):
    from vital.errors import InputError

    cache = EmbeddingCache(tmp_path, "enc", 2)
    cache.add([content_key("a")], np.array([[1, 2]], np.float32))
    (cache.directory / "vectors.f32").write_bytes(b"")
    with pytest.raises(InputError, match="damaged"):
        EmbeddingCache(tmp_path, "enc", 2)


class RecordingProgress:
    """A :class:`vital.progress.Progress` that records its tasks' titles, totals and steps."""

    def __init__(self):
        self.tasks: list[dict] = []

    def task(self, title, total=None):
        from contextlib import contextmanager

        record = {"title": title, "total": total, "done": 0}
        self.tasks.append(record)

        class Task:
            def advance(self, steps=1, *, status=None):
                record["done"] += steps

            def update(self, *, title=None, total=None, status=None):
                pass

        @contextmanager
        def running():
            yield Task()

        return running()


def test_encode_cached_reports_the_misses_to_the_progress_handler(tmp_path):
    encoder = CountingEncoder()
    cache = EmbeddingCache(tmp_path, encoder.name, encoder.dim)
    texts = [f"text {i}" for i in range(600)]
    progress = RecordingProgress()
    encode_cached([content_key(t) for t in texts], texts, encoder.encode, 4, cache, batch_size=256,
                  description="embedding texts", progress=progress)
    assert progress.tasks == [{"title": "embedding texts", "total": 600, "done": 600}] and encoder.calls == 3
    again = RecordingProgress()
    encode_cached([content_key(t) for t in texts], texts, encoder.encode, 4, cache, progress=again)
    assert again.tasks == [] and encoder.calls == 3  # nothing to encode: no task at all
