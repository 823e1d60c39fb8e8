"""Engine pieces that need no model: request validation of the API schemas."""

import pytest

from kale_ray.serving.openai_api import ApiError, CompletionRequest, parse_body, validate


def test_request_validation_errors_are_400_with_the_field_named():
    with pytest.raises(ApiError) as err:
        validate(CompletionRequest, {"model": "m", "prompt": "x", "max_tokens": "5"})
    assert err.value.status == 400 and err.value.param == "max_tokens"
    with pytest.raises(ApiError):
        parse_body(b"{nope")
    ok = validate(CompletionRequest, {"model": "m", "prompt": [[1, 2], [3]], "echo": True, "user": "extra"})
    assert ok.prompt == [[1, 2], [3]] and ok.echo is True


def test_serve_options_from_config():
    from kale_ray.config import ConfigError, load_config
    from kale_ray.serving.app import deployment_options, served_models

    cfg = load_config(None, ["serve.replicas=2", "serve.max_replicas=4", "serve.max_queued=5",
                             "serve.replica_gpus=1"])
    opts = deployment_options(cfg, "m")
    assert opts["autoscaling_config"] == {"min_replicas": 2, "max_replicas": 4, "target_ongoing_requests": 2.0}
    assert "num_replicas" not in opts and opts["max_queued_requests"] == 5
    assert opts["ray_actor_options"] == {"num_cpus": 1.0, "num_gpus": 1.0}
    assert deployment_options(load_config(None, ["serve.replicas=3"]), "m")["num_replicas"] == 3
    assert served_models(load_config()) == [
        {"name": "smollm2-135m-instruct", "path": "smollm2-135m-instruct", "adapters": {}}]
    dup = load_config(None, ['serve.models=[{name: a, path: p, adapters: {a: x}}]'])
    with pytest.raises(ConfigError, match="unique"):
        served_models(dup)


def test_scoring_requests_carry_whole_items_up_to_the_limit():
    from kale_ray.eval.scorers import pack_items

    pairs = [("q1", f" {o}") for o in "abcd"] + [("q2", " x"), ("q2", " y")] + [("q3", f" {o}") for o in "abcde"] \
        + [("q4", " z")]
    packed = pack_items(pairs, 6)
    assert [len(r) for r in packed] == [6, 6]  # q1+q2 | q3+q4: q3 does not fit beside q1+q2
    assert [p for r in packed for p in r] == pairs  # order kept, nothing lost or repeated
    assert [len(r) for r in pack_items(pairs, 3)] == [3, 3, 3, 3]  # an item over the limit is cut: q1 3+1, ...
    assert [len(r) for r in pack_items([("p", f" s{i}") for i in range(150)], 64)] == [64, 64, 22]
    assert [len(r) for r in pack_items(pairs, 100)] == [12]
