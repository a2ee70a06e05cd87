"""Training throughput and time to 99%: the tutorial DataLoader loop against lenet_course.training.fit.

Both train the modern LeNet-5 on the same data, with the same thread count, in this one process:

* baseline: a per-sample ``Dataset`` (pad and scale each digit in ``__getitem__``), a
  ``DataLoader`` with batch 64 and shuffling, Adam at 1e-3 - the loop most tutorials show;
* project: :func:`lenet_course.training.fit` - the whole set as one channels-last tensor, batch
  256, fused AdamW with a one-cycle schedule.

It prints training images per second for each and their ratio, and the training time each needs
until the test accuracy first reaches 99% (evaluated after every pass, evaluation time excluded).

    python benchmarks/train_throughput.py --data-dir /path/to/mnist   # full MNIST (the real benchmark)
    python benchmarks/train_throughput.py --data sample --epochs 2    # a quick smoke run

glibc's allocator maps and unmaps the multi-MB buffers of every step. ``--malloc-tuning``
re-executes the script with MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_ raised (they only
act when set before the process starts); both loops then run in that environment.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

MALLOC = {"MALLOC_MMAP_THRESHOLD_": "1073741824", "MALLOC_TRIM_THRESHOLD_": "1073741824"}


def _baseline(data, epochs: int, target: float, seed: int):
    import numpy as np
    import torch
    from torch.utils.data import DataLoader, Dataset

    from lenet_course.data import pad_to_32, paper_scale
    from lenet_course.models import lenet5
    from lenet_course.training import evaluate, prepare

    class Digits(Dataset):
        def __init__(self, images, labels):
            self.images, self.labels = images, labels

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, i):
            x = torch.from_numpy(paper_scale(pad_to_32(self.images[i])))[None]  # (1, 32, 32)
            return x, int(self.labels[i])

    torch.manual_seed(seed)
    model = lenet5("modern")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(Digits(data.train_images, data.train_labels), batch_size=64, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    test = prepare(data.test_images, data.test_labels)
    seconds, reached, accuracies = 0.0, None, []
    for _ in range(epochs):
        model.train()
        start = time.perf_counter()
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        seconds += time.perf_counter() - start
        accuracies.append(1 - evaluate(model, *test)["error"])
        if reached is None and accuracies[-1] >= target:
            reached = seconds
    return len(data.train_labels) * epochs / seconds, reached, np.array(accuracies)


def _project(data, epochs: int, target: float, seed: int):
    import numpy as np
    import torch

    from lenet_course.models import lenet5
    from lenet_course.training import TrainConfig, fit, prepare

    torch.manual_seed(seed)
    model = lenet5("modern").to(memory_format=torch.channels_last)
    history = fit(model, prepare(data.train_images, data.train_labels),
                  TrainConfig(epochs=epochs, seed=seed, device="cpu"),
                  test_data=prepare(data.test_images, data.test_labels), progress=False)
    cumulative = np.cumsum(history.seconds)
    accuracies = 1 - np.array(history.test_error)
    hits = np.flatnonzero(accuracies >= target)
    reached = float(cumulative[hits[0]]) if len(hits) else None
    return len(data.train_labels) * epochs / history.train_seconds, reached, accuracies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=("auto", "sample", "mnist"), default="auto")
    parser.add_argument("--data-dir", help="folder with the four MNIST files")
    parser.add_argument("--epochs", type=int, default=None,
                        help="passes for the project's one-cycle run (default 4; the baseline gets 3x as many)")
    parser.add_argument("--target", type=float, default=0.99, help="test accuracy to reach (default 0.99)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--malloc-tuning", action="store_true",
                        help="re-execute with glibc's mmap and trim thresholds raised (affects both loops)")
    args = parser.parse_args()

    if args.malloc_tuning and any(os.environ.get(k) != v for k, v in MALLOC.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **MALLOC})

    import torch

    from lenet_course.data import load_mnist
    data = load_mnist(args.data, args.data_dir)
    epochs = args.epochs or 4
    print(f"data: {data.source}, {len(data.train_labels):,} training / {len(data.test_labels):,} test digits; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    rows = {"baseline (Dataset + DataLoader, batch 64)": _baseline(data, 3 * epochs, args.target, args.seed),
            "project (fit: in-memory, batch 256)": _project(data, epochs, args.target, args.seed)}
    for name, (speed, reached, acc) in rows.items():
        when = f"{reached:.1f} s" if reached is not None else f"not reached (best {acc.max():.2%})"
        print(f"{name:<44} {speed:>9,.0f} img/s   time to {args.target:.0%}: {when}   "
              f"accuracy per pass: {' '.join(f'{a:.2%}' for a in acc)}")
    (base_speed, base_time, _), (ours_speed, ours_time, _) = rows.values()
    print(f"throughput ratio (project / baseline): {ours_speed / base_speed:.2f}x")
    if base_time is not None and ours_time is not None:
        print(f"time-to-{args.target:.0%} ratio (baseline / project): {base_time / ours_time:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
