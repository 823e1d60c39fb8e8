"""The eval stage through Ray Serve (`eval.engine=serve`, the default): the base once with a trained
LoRA adapter on it and a fully fine-tuned model in its own deployment, scored over HTTP, equal item by
item to in-process scoring, and the app taken down after."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kale_ray.config import ConfigError, load_config
from kale_ray.data.benchmarks import load_benchmark
from kale_ray.eval.run import run_eval
from kale_ray.eval.served import BASE_NAME, served_layout
from tests.ray.serve_helpers import make_lora_adapter

pytestmark = pytest.mark.ray


def _preds(out: Path, method: str) -> list[dict]:
    return [json.loads(x) for x in (out / method / "arc-easy" / "predictions.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def models(tmp_path_factory, smollm2_path, tiny_llama_path) -> dict[str, str]:
    """A pipeline-shaped train dir: `<run>/adapter` beside `<run>/final` for LoRA; a full fine-tune."""
    from kale_ray.engines.loading import load_causal_lm, load_tokenizer

    runs = tmp_path_factory.mktemp("train")
    adapter = make_lora_adapter(smollm2_path, runs / "ka" / "adapter")
    merged = load_causal_lm(smollm2_path, adapters={"default": str(adapter)}).merge_and_unload()
    merged.save_pretrained(runs / "ka" / "final")  # what the trainer's export writes
    load_tokenizer(smollm2_path).save_pretrained(runs / "ka" / "final")
    return {"Vanilla": str(smollm2_path), "KALE": str(runs / "ka" / "final"), "Full": str(tiny_llama_path)}


def test_layout_puts_adapters_on_the_base_and_full_fine_tunes_apart(models, smollm2_path) -> None:
    entries, names = served_layout(str(smollm2_path), {**models, "Remote": "http://10.0.0.1:8000/v1#x"})
    assert names == {"Vanilla": BASE_NAME, "KALE": "KALE", "Full": "full-Full"}
    assert entries[0]["name"] == BASE_NAME and entries[0]["adapters"] == {
        "KALE": str(Path(models["KALE"]).parent / "adapter")}
    assert entries[1] == {"name": "full-Full", "path": models["Full"], "adapters": {}}
    only_full, _ = served_layout(str(smollm2_path), {"Full": models["Full"]})
    assert [e["name"] for e in only_full] == ["full-Full"]  # no idle base deployment


def test_served_eval_equals_in_process_item_by_item(ray_local, models, smollm2_path, data_root, tmp_path,
                                                    capsys) -> None:
    from ray import serve

    from tests.known_support import kg_dir, search_paths

    rows = load_benchmark("arc-easy", data_root, "test").slice(0, 6)
    # known&incorrect's key facts from the real WordNet paths of these rows (some have none): each a
    # question of its own with four options, scored through the same scorer as the items
    wordnet = kg_dir("wordnet", data_root)
    probes = search_paths(rows.to_pylist(), wordnet)
    common = [f"model.name_or_path={smollm2_path}", "eval.concurrency=4", "eval.prompts_per_request=4",
              "serve.replica_cpus=0.5", "serve.ingress_cpus=0.05", f"eval.kg={wordnet}"]
    served_out = run_eval(load_config(None, common), models, tmp_path / "served", rows=rows, probes=probes)
    log = capsys.readouterr().out
    assert "deploying 2 model(s) with 1 adapter(s) on Ray Serve" in log
    assert not serve.status().applications or all("-eval-" not in n for n in serve.status().applications)
    local_out = run_eval(load_config(None, [*common, "eval.engine=local"]), models, tmp_path / "local", rows=rows,
                         probes=probes)
    for method in models:
        served, local = _preds(served_out, method), _preds(local_out, method)
        assert [p["id"] for p in served] == [p["id"] for p in local]
        for s, loc in zip(served, local, strict=True):
            assert s["lls"] == pytest.approx(loc["lls"], abs=1e-4)
            assert s["pred"] == loc["pred"]
            assert s["known"] == loc["known"] and ("fact" in s) == ("fact" in loc)
            if "fact" in s:
                assert s["fact"]["lls"] == pytest.approx(loc["fact"]["lls"], abs=1e-4)
        assert sum("fact" in p for p in served) >= 2 and any(p["known"] is None for p in served)
    # the adapter is really applied: its scores differ from the base's
    assert _preds(served_out, "KALE")[0]["lls"] != pytest.approx(_preds(served_out, "Vanilla")[0]["lls"], abs=1e-3)


def test_known_from_probe_needs_local_scoring(models, tmp_path, data_root) -> None:
    rows = load_benchmark("arc-easy", data_root, "test").slice(0, 2)
    cfg = load_config(None, ["eval.known_from=probe", f"probe.out={tmp_path}"])
    with pytest.raises(ConfigError, match="eval.engine=local"):
        run_eval(cfg, {"Vanilla": models["Vanilla"]}, tmp_path / "out", rows=rows)


@pytest.mark.slow  # 50 s
def test_a_replica_killed_mid_evaluation_changes_no_result(ray_local, smollm2_path, data_root, tmp_path) -> None:
    """SIGKILL the replica's process once it has answered a few items: Serve starts a new one, the
    ingress answers the requests it lost with a retryable 503, the scorer waits them out, and every
    item's scores equal in-process scoring."""
    import os
    import signal
    import threading
    import time

    import requests
    from ray import serve
    from ray.serve.context import _get_global_client

    rows = load_benchmark("arc-easy", data_root, "test").slice(0, 16)
    common = [f"model.name_or_path={smollm2_path}", "eval.known_incorrect=false", "eval.concurrency=2",
              "serve.replica_cpus=0.5", "serve.ingress_cpus=0.05"]
    killed: list[int] = []
    stop = threading.Event()

    def kill_when_busy() -> None:
        while not stop.is_set():
            try:  # Serve is not up yet until the stage starts it
                apps = [name for name in serve.status().applications if "-eval-" in name]
                port = _get_global_client().http_config.port  # the stage's Serve picks a free port
                info = requests.get(f"http://127.0.0.1:{port}/{apps[0]}/ready", timeout=5).json() if apps else {}
            except Exception:  # noqa: BLE001 - keep polling
                info = {}
            replica = info.get("models", {}).get(BASE_NAME, {})
            if replica.get("served", 0) >= 3:
                os.kill(replica["pid"], signal.SIGKILL)
                killed.append(replica["served"])
                return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_when_busy, daemon=True)
    killer.start()
    try:
        served = run_eval(load_config(None, common), {"Vanilla": str(smollm2_path)}, tmp_path / "served", rows=rows)
    finally:
        stop.set()
        killer.join(10)
    assert killed and killed[0] < len(rows), "the replica was not killed mid-evaluation"
    local = run_eval(load_config(None, [*common, "eval.engine=local"]), {"Vanilla": str(smollm2_path)},
                     tmp_path / "local", rows=rows)
    got, want = _preds(served, "Vanilla"), _preds(local, "Vanilla")
    assert [p["id"] for p in got] == [p["id"] for p in want]
    for s, loc in zip(got, want, strict=True):
        assert s["lls"] == pytest.approx(loc["lls"], abs=1e-4)


def test_replicas_that_cannot_fit_the_local_cluster_are_refused_up_front(ray_local, models, smollm2_path, data_root,
                                                                          tmp_path) -> None:
    """Three one-CPU replicas on the 2-CPU test cluster would leave `serve.run` waiting forever."""
    rows = load_benchmark("arc-easy", data_root, "test").slice(0, 2)
    cfg = load_config(None, [f"model.name_or_path={smollm2_path}", "eval.known_incorrect=false",
                             "serve.replicas=3", "serve.replica_cpus=1"])
    with pytest.raises(ConfigError, match=r"need 3\.1 CPUs \(the cluster has 2\).*lower serve\.replicas"):
        run_eval(cfg, {"Vanilla": models["Vanilla"]}, tmp_path / "out", rows=rows)
