"""Reading a store from a URL through fsspec, against a real HTTP server on localhost."""

from __future__ import annotations

import functools
import io
import os
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from eossl.data.datamodule import EODataModule
from eossl.data.store import SampleStore
from eossl.errors import StoreError


class _RangeHandler(SimpleHTTPRequestHandler):
    """Python's static file server plus byte ranges (``bytes=a-b``, ``bytes=-n``), as object stores serve
    them: zarr reads a shard's index from its end and its chunks by range."""

    def send_head(self):
        header = self.headers.get("Range")
        path = self.translate_path(self.path)
        if not header or not os.path.isfile(path):
            return super().send_head()
        size = os.path.getsize(path)
        start, _, end = header.removeprefix("bytes=").partition("-")
        first, last = (size - int(end), size - 1) if start == "" else (int(start), int(end or size - 1))
        first, last = max(first, 0), min(last, size - 1)
        with open(path, "rb") as f:
            f.seek(first)
            body = f.read(last - first + 1)
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return io.BytesIO(body)

    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture()
def served(small_store):
    """An HTTP server on localhost serving the folder that holds the small synthetic store."""
    handler = functools.partial(_RangeHandler, directory=str(small_store.parent))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_store_over_http_reads_the_same_arrays_table_and_declarations(small_store, served):
    local, remote = SampleStore(small_store), SampleStore(f"{served}/{small_store.name}")
    assert remote.url == f"{served}/{small_store.name}" and len(remote) == len(local)
    assert remote.modalities == local.modalities and remote.targets == local.targets
    assert remote.stats == local.stats
    rows = np.array([5, 0, 17, 5])
    np.testing.assert_array_equal(remote.read("s2", rows), local.read("s2", rows))
    batch = next(iter(EODataModule(remote.url, ["s2"], batch_size=8, in_memory=False).val_dataloader()))
    assert batch["s2"].shape[1:] == (12, 32, 32)


def test_file_url_is_the_local_folder(small_store):
    assert len(SampleStore(f"file://{small_store}")) == len(SampleStore(small_store))


def test_missing_remote_store_is_a_clear_error(served):
    with pytest.raises(StoreError, match="not an eossl sample store"):
        SampleStore(f"{served}/no-such-store")
