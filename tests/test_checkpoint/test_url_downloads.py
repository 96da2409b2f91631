"""A checkpoint named by URL that cannot be fetched ends, from every entry
point, in one DownloadError naming the URL, the key and the fix, within the
timeout set by MMDET_CONDDETR_DOWNLOAD_TIMEOUT, and leaves nothing in the
download cache. Servers are local: one that accepts and never answers (a
silent proxy), a port that refuses, and an HTTP server that cuts its body
short or answers 404."""
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers.reliability import (DEMO_CONFIG, REPO_ROOT, build_runner,
                                 make_shapes, tool_env, write_tiny_config)
from mmengine.runner.checkpoint import CheckpointLoader

from mmdet_conddetr.errors import DownloadError

TIMEOUT = 1  # seconds, through the environment variable


@pytest.fixture(scope='module')
def silent_port():
    server = socket.socket()
    server.bind(('127.0.0.1', 0))
    server.listen(16)
    held = []  # accepted, never answered

    def accept():
        try:
            while True:
                held.append(server.accept())
        except OSError:  # closed at teardown
            pass

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1]
    server.close()
    for conn, _ in held:
        conn.close()


@pytest.fixture(scope='module')
def refused_port():
    with socket.socket() as sock:  # bound, never listening: refused
        sock.bind(('127.0.0.1', 0))
        yield sock.getsockname()[1]


class _Handler(BaseHTTPRequestHandler):

    def do_GET(self):
        if self.path.endswith('/missing.pth'):
            self.send_error(404)
            return
        self.send_response(200)  # announces 1000 bytes, sends 10, closes
        self.send_header('Content-Length', '1000')
        self.end_headers()
        self.wfile.write(b'0123456789')
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture(scope='module')
def http_port():
    server = ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    monkeypatch.setenv('MMDET_CONDDETR_DOWNLOAD_TIMEOUT', str(TIMEOUT))
    for name in ('HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy'):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / 'torch_home' / 'hub' / 'checkpoints'


def _cache_is_empty(cache):
    return not cache.exists() or os.listdir(cache) == []


# A fresh interpreter that never imports mmdet_conddetr itself: reading our
# config must be enough to get the timeout and the message.
_INFER = """
import json, sys, time, traceback
from mmdet.apis import DetInferencer
for config in sys.argv[2:]:
    start = time.monotonic()
    try:
        DetInferencer(model=config, weights=sys.argv[1], device='cpu')
    except Exception as error:
        print(json.dumps(dict(
            type=type(error).__module__ + '.' + type(error).__name__,
            seconds=time.monotonic() - start,
            traceback=''.join(traceback.format_exception(error)))))
"""


def test_det_inferencer_with_a_silent_server(silent_port, env):
    url = f'http://127.0.0.1:{silent_port}/w.pth'
    configs = [DEMO_CONFIG, os.path.join(REPO_ROOT, 'configs',
                                         'conditional_detr', 'r50_50ep.py')]
    # a hang (the fault) ends in subprocess.TimeoutExpired
    proc = subprocess.run([sys.executable, '-c', _INFER, url, *configs],
                          env=tool_env(), capture_output=True, text=True,
                          timeout=150)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(line) for line in proc.stdout.splitlines()
               if line.startswith('{')]
    assert len(results) == len(configs), proc.stdout + proc.stderr[-3000:]
    for result in results:
        assert result['type'] == 'mmdet_conddetr.errors.DownloadError'
        last = result['traceback'].strip().splitlines()[-1]
        assert f'cannot download {url} (weights)' in last
        assert f'no answer within {TIMEOUT} s, a timeout' in last
        assert 'MMDET_CONDDETR_DOWNLOAD_TIMEOUT' in last
        assert "DetInferencer(weights='/path/to/w.pth')" in last
        assert f'copy it to {env / "w.pth"}' in last
        assert 'HTTPS_PROXY' in last
        # no raw urllib traceback chained in front of it
        assert 'URLError' not in result['traceback']
        # the first call also imports the package; none waits much longer
        # than the timeout
        assert result['seconds'] < TIMEOUT + 30
    assert _cache_is_empty(env)


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp('shapes'), num_train=2,
                       num_val=1)


@pytest.mark.parametrize('where', ['load_from', 'init_cfg'])
@pytest.mark.parametrize('server', ['silent', 'refused'])
def test_runner_from_cfg(where, server, shapes, silent_port, refused_port,
                         env, tmp_path):
    port = silent_port if server == 'silent' else refused_port
    url = f'http://127.0.0.1:{port}/w.pth'
    extra = ''
    key = 'load_from'
    if where == 'init_cfg':
        key = 'model.backbone.init_cfg.checkpoint'
        extra = ("model = dict(backbone=dict(init_cfg=dict(_delete_=True, "
                 "type='Pretrained'"
                 f", checkpoint={url!r})))")
    config = write_tiny_config(tmp_path / 'cfg.py', shapes, max_iters=1,
                               interval=1, extra=extra)
    overrides = {'load_from': url} if where == 'load_from' else {}
    runner = build_runner(config, tmp_path / 'wd', **overrides)
    start = time.monotonic()
    with pytest.raises(DownloadError) as info:
        runner.train()
    assert time.monotonic() - start < 10 * TIMEOUT + 10
    message = str(info.value)
    assert info.value.url == url and info.value.key == key
    assert f'cannot download {url} ({key})' in message
    assert (f'no answer within {TIMEOUT} s, a timeout' if server == 'silent'
            else 'Connection refused') in message
    assert f"set {key}='/path/to/w.pth' in the config" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert _cache_is_empty(env)
    assert not any(n.endswith('.pth') for _, _, files in
                   os.walk(tmp_path / 'wd') for n in files)


def test_a_body_cut_short_is_not_cached(http_port, env):
    url = f'http://127.0.0.1:{http_port}/short.pth'
    with pytest.raises(DownloadError) as info:
        CheckpointLoader.load_checkpoint(url, map_location='cpu')
    message = str(info.value)
    assert f'cannot download {url}: ' in message  # no key outside a run
    assert 'closed after 10 of 1000 bytes' in message
    assert 'transfer broke off' in message
    assert _cache_is_empty(env)


def test_a_wrong_url_says_so(http_port, env):
    url = f'http://127.0.0.1:{http_port}/missing.pth'
    with pytest.raises(DownloadError) as info:
        CheckpointLoader.load_checkpoint(url, map_location='cpu')
    assert 'HTTP 404' in str(info.value)
    assert 'check the URL' in str(info.value)
    assert _cache_is_empty(env)


@pytest.mark.parametrize('value', ['soon', '0', '-3'])
def test_a_bad_timeout_value_is_named(value, http_port, env, monkeypatch):
    monkeypatch.setenv('MMDET_CONDDETR_DOWNLOAD_TIMEOUT', value)
    with pytest.raises(Exception) as info:
        CheckpointLoader.load_checkpoint(
            f'http://127.0.0.1:{http_port}/short.pth', map_location='cpu')
    assert f'MMDET_CONDDETR_DOWNLOAD_TIMEOUT={value!r}' in str(info.value)
    assert _cache_is_empty(env)
