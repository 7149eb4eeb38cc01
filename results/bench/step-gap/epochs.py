import sys, numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
for d in sys.argv[1:]:
    ea = EventAccumulator(d, size_guidance={"scalars": 0}); ea.Reload()
    tl = ea.Scalars("train/loss"); va = ea.Scalars("val/acc")
    steps = {e.step: e.wall_time for e in tl}
    # step time within epochs: consecutive logged steps 100 apart, same epoch
    per = [(steps[s + 100] - steps[s]) / 100 for s in steps if s + 100 in steps]
    step = np.median(per)
    ends = [e.wall_time for e in va]
    ep = np.diff(ends)
    spe = va[1].step - va[0].step
    print(f"{d}: {spe} steps/epoch, median step {1000*step:.2f} ms, median epoch {np.median(ep):.2f} s, "
          f"epoch minus steps {np.median(ep) - spe*step:.2f} s = {1000*(np.median(ep) - spe*step)/spe:.2f} ms/step")
