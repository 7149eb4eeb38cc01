"""benchmarks/lr_schedule.py: the module's warm-up + cosine is torch's LinearLR then CosineAnnealingLR in value."""

import lr_schedule


def test_the_modules_schedule_matches_torchs_chained_schedulers(capsys):
    lr_schedule.main(steps=2000, warmup_fraction=0.1, lr=0.1)
    steps, identical, worst = (cell.strip() for cell in capsys.readouterr().out.strip().strip("|").split("|"))
    assert int(steps) == 2000 and 0 < int(identical) <= 2000
    assert float(worst) < 1e-9  # a wrong warm-up length or cosine end would differ by far more
