"""One-off: the issue's method (fit --config configs/model1.yaml, one epoch against a fifth, wall clock of each
process), with last.ckpt every 500 steps (the default) against only at epoch ends (--resume_checkpoint.every_n_train_steps=0)."""
import subprocess, tempfile, time
PY, DATA = "/work/main/.venv/bin/python", "/work/main/data"
def run(*extra):
    with tempfile.TemporaryDirectory(dir="/work/main") as logs:  # on the disk the runs write to
        cmd = [PY, "-m", "cifar_lightning", "fit", "--config=configs/model1.yaml", f"--data.data_dir={DATA}",
               "--data.download=false", f"--trainer.logger.init_args.save_dir={logs}", *extra]
        with open(f"{logs}/out", "w") as o:
            t = time.perf_counter(); rc = subprocess.run(cmd, stdout=o, stderr=subprocess.STDOUT, cwd="/work/main").returncode
            t = time.perf_counter() - t
        assert rc == 0, open(f"{logs}/out").read()[-2000:]
        return t
if __name__ == "__main__":
    for r in range(2):
        for label, extra in (("last.ckpt every 500 steps", ()), ("last.ckpt at epoch ends", ("--resume_checkpoint.every_n_train_steps=0",))):
            e = run("--trainer.max_epochs=1", *extra); f = run("--trainer.max_steps=306", *extra)
            print(f"round {r}, {label}: one epoch {e:.1f} s, a fifth {f:.1f} s: {1000*(e-f)/1226:.2f} ms/step", flush=True)
