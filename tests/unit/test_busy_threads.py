"""A stopped service does not wait forever for work in threads (`leave_busy_threads`).

A SIGTERM that landed while the embedding model was still loading kept Session-Buddy alive for
as long as the load took: the interpreter joins worker threads at exit, and a thread cannot be
cancelled. CI saw a stopped server killed after 20 s."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _run(body: str) -> subprocess.CompletedProcess[str]:
    program = "import asyncio, threading, time\nfrom mahavishnu.platform.server import leave_busy_threads\n"
    return subprocess.run(
        [sys.executable, "-c", program + textwrap.dedent(body)],
        capture_output=True,
        text=True,
        timeout=60,  # without the bound, these programs would run for 600 s
        check=False,
    )


def test_work_still_running_in_an_executor_thread_is_left_behind() -> None:
    done = _run(
        """
        async def main():
            work = asyncio.create_task(asyncio.to_thread(time.sleep, 600))  # a model that loads long
            await asyncio.sleep(0.2)
            work.cancel()

        loop = asyncio.new_event_loop()  # as the server runs its loop: the executor is not awaited
        loop.run_until_complete(main())
        loop.close()
        leave_busy_threads(0.5)
        print("not reached")
        """
    )
    assert done.returncode == 0, done.stderr
    assert "threads_abandoned" in done.stdout
    assert "asyncio_0" in done.stdout, "names the thread it left"
    assert "not reached" not in done.stdout


def test_a_thread_that_ends_within_the_grace_is_waited_for() -> None:
    done = _run(
        """
        finished = []
        threading.Thread(target=lambda: (time.sleep(0.3), finished.append(True))).start()
        leave_busy_threads(30)
        print("returned", finished)
        """
    )
    assert (done.returncode, done.stdout.strip()) == (0, "returned [True]"), done.stderr


def test_daemon_threads_are_not_waited_for() -> None:
    done = _run(
        """
        threading.Thread(target=time.sleep, args=(600,), daemon=True).start()
        leave_busy_threads(30)
        print("returned")
        """
    )
    assert (done.returncode, done.stdout.strip()) == (0, "returned"), done.stderr
