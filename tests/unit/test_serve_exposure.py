"""Point 6 of the serving issue: a non-loopback bind needs an API key unless the config says so
explicitly, and replicas read the key themselves (file or environment), never from Ray."""

from __future__ import annotations

import pytest

from kale_ray.config import ConfigError, load_config
from kale_ray.serving.app import build_app, check_exposure, is_loopback, run_server, settings
from kale_ray.serving.deployments import read_api_key

SECRET = "s3cret-never-logged"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_loopback_hosts_need_no_key(host):
    assert is_loopback(host)
    check_exposure(load_config(None, [f"serve.host='{host}'"]))


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "my-host.example"])
def test_a_non_loopback_host_without_a_key_is_refused(host):
    assert not is_loopback(host)
    with pytest.raises(ConfigError, match="allow_unauthenticated"):
        check_exposure(load_config(None, [f"serve.host='{host}'"]))


@pytest.mark.parametrize("override", ["serve.api_key_file=/run/secrets/kale", "serve.api_key_env=KALE_KEY",
                                      "serve.allow_unauthenticated=true"])
def test_a_key_or_an_explicit_opt_out_allows_exposure(override):
    check_exposure(load_config(None, ["serve.host=0.0.0.0", override]))


def test_run_server_and_build_app_refuse_before_anything_starts():
    import ray

    cfg = load_config(None, ["serve.host=0.0.0.0"])
    running = ray.is_initialized()  # (a test session may hold a cluster already)
    with pytest.raises(ConfigError, match="without an API key"):
        run_server(cfg, blocking=False)
    with pytest.raises(ConfigError, match="without an API key"):
        build_app(cfg)
    assert ray.is_initialized() == running  # refused before Ray (and so any port) was started


def test_replicas_read_the_key_from_a_file_or_their_environment(tmp_path, monkeypatch):
    key_file = tmp_path / "key"
    key_file.write_text(SECRET + "\n")
    cfg = load_config(None, [f"serve.api_key_file={key_file}"])
    assert read_api_key(settings(cfg)) == SECRET
    assert SECRET not in repr(settings(cfg))  # what travels to the replicas names the file only
    monkeypatch.setenv("KALE_TEST_KEY", SECRET)
    assert read_api_key(settings(load_config(None, ["serve.api_key_env=KALE_TEST_KEY"]))) == SECRET
    assert read_api_key(settings(load_config(None, []))) is None


def test_a_missing_key_stops_the_replica_with_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("KALE_TEST_NO_KEY", raising=False)
    with pytest.raises(RuntimeError, match="empty in the replica's environment"):
        read_api_key(settings(load_config(None, ["serve.api_key_env=KALE_TEST_NO_KEY"])))
    with pytest.raises(RuntimeError, match="cannot be read"):
        read_api_key(settings(load_config(None, [f"serve.api_key_file={tmp_path / 'absent'}"])))
    (tmp_path / "blank").write_text("\n")
    with pytest.raises(RuntimeError, match="is empty"):
        read_api_key(settings(load_config(None, [f"serve.api_key_file={tmp_path / 'blank'}"])))
