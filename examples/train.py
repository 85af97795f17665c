"""A small, dependency-free stand-in for a training script: prints `epoch=N loss=... accuracy=...` lines.

    katib-metrics run -m accuracy -m loss -- python examples/train.py
    python examples/train.py --epochs 20 --seconds 1 --lr 0.05

The curves are deterministic for a given --seed and --lr: loss falls and accuracy rises towards a
plateau that depends on the learning rate, with a little noise, as a real training's would.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time


def _options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10, help="how many epochs (default 10)")
    parser.add_argument("--seconds", type=float, default=3.0, help="total run time in seconds (default 3)")
    parser.add_argument("--lr", type=float, default=0.1, help="learning rate: changes the curves (0.1)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    parser.add_argument("--fail-at", type=int, default=0, help="exit with status 1 after this epoch (test aid)")
    return parser.parse_args(argv)


def curves(epoch: int, lr: float, rng: random.Random) -> tuple[float, float]:
    """(loss, accuracy) after `epoch` epochs: faster progress with a larger lr, a lower ceiling if too large."""
    ceiling = 0.97 - 0.5 * max(lr - 0.3, 0.0)
    progress = 1.0 - math.exp(-epoch * min(lr, 1.0) * 3.0)
    accuracy = min(0.999, max(0.0, 0.1 + (ceiling - 0.1) * progress + rng.gauss(0.0, 0.005)))
    loss = max(0.001, 2.3 * (1.0 - progress) + 0.05 + rng.gauss(0.0, 0.01))
    return loss, accuracy


def main(argv: list[str] | None = None) -> int:
    options = _options(argv)
    rng = random.Random(options.seed)
    pause = options.seconds / max(options.epochs, 1)
    print(f"training for {options.epochs} epochs with lr={options.lr}", flush=True)
    for epoch in range(1, options.epochs + 1):
        time.sleep(pause)
        loss, accuracy = curves(epoch, options.lr, rng)
        print(f"epoch={epoch} loss={loss:.4f} accuracy={accuracy:.4f}", flush=True)
        if epoch == options.fail_at:
            print(f"simulated failure after epoch {epoch}", file=sys.stderr, flush=True)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
