"""Local stand-in for Katib's pytorch-mnist trial image (/opt/pytorch-mnist/mnist.py): no torch, no data.

Takes the same options and logs exactly as the real script does (`%(asctime)s %(levelname)-8s
%(message)s`, UTC `%Y-%m-%dT%H:%M:%SZ`, on standard error, or into `--log-path`):

    2026-01-05T10:00:01Z INFO     Train Epoch: 1 [0/60000 (0%)]	loss=2.3012
    2026-01-05T10:00:09Z INFO     {metricName: accuracy, metricValue: 0.7812};{metricName: loss, metricValue: 0.5432}

The values are a deterministic function of the options (no training happens), so trials differ.
"""

from __future__ import annotations

import argparse
import logging
import math
import time

EXAMPLES = 60000
TEST_EXAMPLES = 10000


def _options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="PyTorch MNIST Example (stand-in)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--test-batch-size", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--momentum", type=float, default=0.5)
    parser.add_argument("--log-interval", type=int, default=10)
    parser.add_argument("--log-path", default="")
    parser.add_argument("--logger", choices=["standard", "hypertune"], default="standard")
    options, _ = parser.parse_known_args()
    return options


def _loss(step: float, options: argparse.Namespace) -> float:
    rate = options.lr * (1.0 + options.momentum) * 0.02
    return 0.25 + 2.05 * math.exp(-rate * step)


def main() -> None:
    options = _options()
    logging.Formatter.converter = time.gmtime
    logging.basicConfig(format="%(asctime)s %(levelname)-8s %(message)s", datefmt="%Y-%m-%dT%H:%M:%SZ",
                        level=logging.DEBUG, filename=options.log_path or None)
    batches = math.ceil(EXAMPLES / options.batch_size)
    for epoch in range(1, options.epochs + 1):
        for batch in range(0, batches, options.log_interval):
            step = (epoch - 1) * batches + batch
            logging.info("Train Epoch: %d [%d/%d (%.0f%%)]\tloss=%.4f", epoch, batch * options.batch_size,
                         EXAMPLES, 100.0 * batch / batches, _loss(step, options))
        test_loss = _loss(epoch * batches, options) * 1.05
        accuracy = min(0.99, 1.0 - test_loss / 2.6)
        logging.info("{metricName: accuracy, metricValue: %.4f};{metricName: loss, metricValue: %.4f}\n",
                     accuracy, test_loss)


if __name__ == "__main__":
    main()
