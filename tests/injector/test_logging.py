"""`injector serve` logs through a writer thread: every record written, in order, none lost at shutdown."""

from __future__ import annotations

import io
import logging
import queue
import threading

from katib_metrics.injector.cli import _DeferredQueueHandler, _LogWriter


def test_records_from_many_threads_are_all_written_formatted_at_stop() -> None:
    out = io.StringIO()
    stream = logging.StreamHandler(out)
    stream.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    writer = _LogWriter(records, stream, period=3600)  # only stop() drains: nothing may depend on the period
    writer.start()
    logger = logging.getLogger("test.injector.logwriter")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(_DeferredQueueHandler(records))

    def emit(thread: int) -> None:
        for index in range(250):
            logger.info("pod %d-%d: %s", thread, index, {"args": ["a b"]})

    threads = [threading.Thread(target=emit, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("admission failed")
    writer.stop()
    lines = out.getvalue().splitlines()
    assert sum(1 for line in lines if line.startswith("INFO test.injector.logwriter: pod ")) == 2000
    for number in range(8):
        mine = [line for line in lines if f"pod {number}-" in line]
        assert mine == [f"INFO test.injector.logwriter: pod {number}-{i}: {{'args': ['a b']}}" for i in range(250)]
    assert "ERROR test.injector.logwriter: admission failed" in lines
    assert "ValueError: boom" in lines
