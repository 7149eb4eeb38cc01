"""One-off: the issue's own method. fit --config configs/model1.yaml for one epoch (1532 steps) against a fifth
(306 steps) as `python -m cifar_lightning` runs, wall clock of each process; and the independent loop, default malloc."""
import subprocess, sys, tempfile, time
sys.path.insert(0, "/tmp/gap")
from gap import independent, PY, DATA
import gap
def run(*extra):
    with tempfile.TemporaryDirectory() as logs:
        cmd = [PY, "-m", "cifar_lightning", "fit", "--config=configs/model1.yaml", f"--data.data_dir={DATA}",
               "--data.download=false", f"--trainer.logger.init_args.save_dir={logs}", *extra]
        with open(f"{logs}/out", "w") as o:
            t = time.perf_counter(); rc = subprocess.run(cmd, stdout=o, stderr=subprocess.STDOUT, cwd="/work/main").returncode
            t = time.perf_counter() - t
        assert rc == 0, open(f"{logs}/out").read()[-2000:]
        return t
gap.SHORT, gap.LONG = 0, 1226
for r in range(2):
    e = run("--trainer.max_epochs=1"); f = run("--trainer.max_steps=306")
    print(f"round {r}: one epoch {e:.1f} s, a fifth {f:.1f} s: {1000*(e-f)/1226:.2f} ms/step", flush=True)
    ev = run("--trainer.max_epochs=1", "--trainer.limit_val_batches=0"); 
    print(f"round {r}: one epoch without validation {ev:.1f} s: {1000*(ev-f)/1226:.2f} ms/step", flush=True)
    print(f"round {r}: independent loop, default malloc: {independent(False):.2f} ms/step", flush=True)
