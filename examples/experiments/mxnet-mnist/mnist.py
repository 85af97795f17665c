"""Local stand-in for Katib's mxnet-mnist trial image (/opt/mxnet-mnist/mnist.py): no MXNet, no data.

Takes the same options and logs exactly as the real script does through MXNet's `Module.fit` and
`Speedometer`, with the real script's logging format (`%(asctime)s %(levelname)-8s %(message)s`,
UTC `%Y-%m-%dT%H:%M:%SZ`), on standard error:

    2026-01-05T10:00:01Z INFO     Epoch[0] Batch [0-100]	Speed: 51234.56 samples/sec	accuracy=0.812500
    2026-01-05T10:00:02Z INFO     Epoch[0] Train-accuracy=0.912345
    2026-01-05T10:00:02Z INFO     Epoch[0] Time cost=1.234
    2026-01-05T10:00:02Z INFO     Epoch[0] Validation-accuracy=0.945670

The accuracies are a deterministic function of the options (no training happens), so trials differ.
"""

from __future__ import annotations

import argparse
import logging
import math
import time

log = logging.getLogger()


def _options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="train mnist (stand-in)")
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--num-examples", type=int, default=60000)
    parser.add_argument("--network", default="mlp")
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--num-epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--optimizer", default="sgd")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--disp-batches", type=int, default=100)
    options, _ = parser.parse_known_args()  # the real script takes many more options; ignore them
    return options


def _accuracy(epoch: int, options: argparse.Namespace, validation: bool) -> float:
    speed = {"sgd": 1.0, "adam": 1.3, "ftrl": 0.6}.get(options.optimizer, 0.8)
    rate = min(options.lr, 0.1) * 60.0 * speed / (1.0 + 0.1 * abs(options.num_layers - 3))
    ceiling = 0.985 - 0.004 * abs(options.num_layers - 3) - (0.01 if validation else 0.0)
    return 0.1 + (ceiling - 0.1) * (1.0 - math.exp(-rate * (epoch + 1)))


def main() -> None:
    logging.Formatter.converter = time.gmtime  # the image runs in UTC; the `Z` in the format says so
    logging.basicConfig(format="%(asctime)s %(levelname)-8s %(message)s", datefmt="%Y-%m-%dT%H:%M:%SZ",
                        level=logging.DEBUG)
    options = _options()
    log.info("start with arguments %s", options)
    batches = math.ceil(options.num_examples / options.batch_size)
    for epoch in range(options.num_epochs):
        train = _accuracy(epoch, options, validation=False)
        for start in range(0, batches - options.disp_batches, options.disp_batches):
            partial = train * (0.9 + 0.1 * start / batches)
            log.info("Epoch[%d] Batch [%d-%d]\tSpeed: %.2f samples/sec\taccuracy=%f", epoch, start,
                     start + options.disp_batches, 51234.56 - 7.0 * start, partial)
        log.info("Epoch[%d] Train-accuracy=%f", epoch, train)
        log.info("Epoch[%d] Time cost=%.3f", epoch, 1.234)
        log.info("Epoch[%d] Validation-accuracy=%f", epoch, _accuracy(epoch, options, validation=True))


if __name__ == "__main__":
    main()
