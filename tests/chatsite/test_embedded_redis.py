from __future__ import annotations

import redis

from chatsite.embedded_redis import EmbeddedRedis


def test_embedded_redis_serves_on_its_socket_and_stops_cleanly(tmp_path):
    server = EmbeddedRedis(tmp_path / "r").start()
    try:
        client = redis.Redis.from_url(server.url)
        client.set("k", "v")
        assert client.get("k") == b"v"
        client.close()
    finally:
        server.stop()
    assert not server.socket.exists()
    assert server.process is None


def test_a_long_directory_gets_a_short_socket_path(tmp_path):
    deep = tmp_path / ("d" * 120)
    server = EmbeddedRedis(deep)
    assert len(str(server.socket)) < 100
