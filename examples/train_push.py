"""The example training in push mode: it reports its metrics itself (`katib_metrics.report_metrics`), printing none.

    katib-metrics run --trial push-demo -m accuracy -m loss --objective-type maximize -- python3 examples/train_push.py

Written as for Katib's `Push` collector: only the import differs from `kubeflow.katib.report_metrics`. Per-step
values go through a `MetricsReporter` (queued, stored in the background); each epoch's through `report_metrics`
(stored when it returns). Same curves as `train.py`.
"""

from __future__ import annotations

import argparse
import random
import time

from train import curves  # examples/train.py, beside this file

from katib_metrics import MetricsReporter, report_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10, help="how many epochs (default 10)")
    parser.add_argument("--seconds", type=float, default=3.0, help="total run time in seconds (default 3)")
    parser.add_argument("--lr", type=float, default=0.1, help="learning rate: changes the curves (0.1)")
    options = parser.parse_args()
    rng = random.Random(0)
    with MetricsReporter() as steps:
        for epoch in range(1, options.epochs + 1):
            for step in range(100):  # a training loop's per-step values: report() never waits for the network
                time.sleep(options.seconds / max(options.epochs, 1) / 100)
                steps.report({"step-loss": curves(epoch - 1 + step / 100, options.lr, rng)[0]})
            loss, accuracy = curves(epoch, options.lr, rng)
            report_metrics({"accuracy": round(accuracy, 4), "loss": round(loss, 4)})
            print(f"epoch {epoch}: reported accuracy and loss", flush=True)


if __name__ == "__main__":
    main()
