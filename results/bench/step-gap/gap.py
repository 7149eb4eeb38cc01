"""One-off: where do 5 ms of a batch-32 fp32 step go on an AVX-512 CPU? Interleaved rounds, ms per step."""
import json, subprocess, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, "/work/main/benchmarks"); sys.path.insert(0, "/work/main")
PY = "/work/main/.venv/bin/python"
DATA = "/work/main/data"
import os
SHORT, LONG = 50, int(os.environ.get("LONG", 800))

def independent(malloc: bool) -> float:
    code = f"""
import sys; sys.path.insert(0, '/work/main/benchmarks')
from cifar_lightning.training.malloc import keep_freed_memory
if {malloc}: keep_freed_memory()
import bench
x, y = bench.training_split('{DATA}')
print(1000 * 32 / bench.independent_loop(x, y, 32, {LONG - SHORT}, 20))
"""
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, cwd="/work/main")
    assert out.returncode == 0, out.stderr[-2000:]
    return float(out.stdout.split()[-1])

def cli(steps: int, malloc: bool, *extra: str) -> float:
    with tempfile.TemporaryDirectory() as logs:
        args = ["fit", "--config=configs/model1.yaml", f"--trainer.max_steps={steps}", f"--data.data_dir={DATA}",
                "--data.download=false", f"--trainer.logger.init_args.save_dir={logs}", *extra]
        code = ("import sys\nfrom cifar_lightning.training.malloc import keep_freed_memory\n"
                f"if {malloc}: keep_freed_memory()\nfrom cifar_lightning.runs import cli\nsys.exit(cli.main({args!r}))")
        with open(Path(logs) / "out", "w") as o:
            t = time.perf_counter()
            rc = subprocess.run([PY, "-c", code], stdout=o, stderr=subprocess.STDOUT, cwd="/work/main").returncode
            t = time.perf_counter() - t
        assert rc == 0, open(Path(logs) / "out").read()[-2000:]
        return t

def cli_ms(malloc: bool, *extra: str) -> float:
    return 1000 * (cli(LONG, malloc, *extra) - cli(SHORT, malloc, *extra)) / (LONG - SHORT)

rows = {"independent loop, default malloc": lambda: independent(False),
        "independent loop, keep freed memory": lambda: independent(True),
        "command line (python -m: keeps freed memory)": lambda: cli_ms(True),
        "command line, default malloc": lambda: cli_ms(False)}
import torch
print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, batch 32 fp32, steps {SHORT}-{LONG}", flush=True)
res = {k: [] for k in rows}
for r in range(int(sys.argv[1]) if len(sys.argv) > 1 else 2):
    for k, f in rows.items():
        res[k].append(f()); print(f"round {r}: {k}: {res[k][-1]:.2f} ms/step", flush=True)
for k, v in res.items():
    print(f"| {k} | {min(v):.2f} | {', '.join(f'{t:.2f}' for t in v)} |")
