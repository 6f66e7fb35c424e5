"""Several ranks, or several nodes sharing one file system, doing the same thing at once:
downloading an image, checking the data. Simulated in one process (threads, rank variables)
where a real multi-node launch cannot run in a test."""

from __future__ import annotations

import io
import os
import threading

PNG_BYTES = b"\x89PNG\r\n\x1a\n" + b"x" * 4096


class _Response(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_ranks_fetching_one_url_at_once_each_write_their_own_file(tmp_path, monkeypatch):
    """Both ranks have written their download before either renames it (a barrier in
    os.replace): with one shared temp name the second rename finds nothing, or renames the
    other rank's half-written file."""
    from vlexp.data import images

    monkeypatch.setattr(images.urllib.request, "urlopen", lambda *a, **k: _Response(PNG_BYTES))
    both_written = threading.Barrier(2, timeout=10)
    real_replace = os.replace

    def replace_when_both_wrote(source, target):
        both_written.wait()
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace_when_both_wrote)
    url = "https://example.org/cat.png"
    results: dict[int, object] = {}

    def rank(number: int) -> None:
        try:
            results[number] = images.fetch(url, tmp_path / "remote-images")
        except Exception as err:  # handed to the test's thread
            results[number] = err

    threads = [threading.Thread(target=rank, args=(n,)) for n in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(isinstance(r, Exception) for r in results.values()), results
    assert results[0] == results[1] and results[0].read_bytes() == PNG_BYTES
    assert sorted(p.name for p in (tmp_path / "remote-images").iterdir()) == [results[0].name]
