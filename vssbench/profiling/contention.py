"""Did a timed process get the CPU it asked for? The contention fields of every FPS record.

The rule and the measurements behind its thresholds: docs/efficiency.md#contention.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import torch

# --- contention: did the timed process get the CPU it asked for? --------------------------------------

#: A timing in which the process's threads got less than this share of the CPU time they asked for
#: is contended. Measured on 2 cores (docs/efficiency.md#contention): idle 0.97-1.00 at every size
#: and thread count; 0.37-0.69 beside busy loops; 0.71-0.84 beside two processes busy 30-50% of
#: the time, which already cost 17-50% of the FPS.
CONTENTION_SHARE = 0.9
#: Load readings before and after a timing: this many samples of :func:`runnable_others`, this far apart.
LOAD_SAMPLES, LOAD_SPACING_S = 5, 0.01

#: How ``cpu_share`` was computed (recorded as ``cpu_share_source``).
SHARE_SCHEDSTAT = "schedstat: on-CPU / (on-CPU + waiting on a run queue), summed over the process's threads"
SHARE_PROCESS_TIME = "process_time / (wall time x torch threads)"


def _sched_times() -> dict[str, tuple[int, int]] | None:
    """{thread id: (ns on a CPU, ns runnable but waiting for a CPU)} of this process's threads.

    Read from ``/proc/self/task/<tid>/schedstat`` (Linux with scheduler statistics). ``None``
    where unreadable or switched off (the kernel then writes ``0 0 0``).
    """
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return None
    times: dict[str, tuple[int, int]] = {}
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/schedstat", "rb") as f:
                fields = f.read().split()
            times[tid] = (int(fields[0]), int(fields[1]))
        except (OSError, ValueError, IndexError):  # the thread ended meanwhile, or no such file
            continue
    if not times or not any(run for run, _ in times.values()):
        return None
    return times


def running_threads(pid: int | str = "self") -> int:
    """Threads of process ``pid`` (default: this one) in state R (running or runnable) now, from
    ``/proc/<pid>/task/*/stat``; 0 where unreadable."""
    count = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # the state follows the command name, which is in parentheses and may hold spaces
        if stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] == b"R":
            count += 1
    return count


def runnable_others() -> int | None:
    """Tasks runnable on the machine at this instant besides this process's own threads.

    ``procs_running`` of ``/proc/stat`` (tasks running or waiting for a CPU, machine-wide, an
    instantaneous count) minus this process's threads in state R; ``None`` off Linux. Chosen over
    the load average, whose 1-minute figure trails a change by tens of seconds.
    """
    try:
        with open("/proc/stat", "rb") as f:
            running = next((int(line.split()[1]) for line in f if line.startswith(b"procs_running")), None)
    except (OSError, ValueError, IndexError):
        return None
    if running is None:
        return None
    return max(0, running - running_threads())


def load_reading(samples: int = LOAD_SAMPLES, spacing_s: float = LOAD_SPACING_S) -> float | None:
    """Mean of ``samples`` readings of :func:`runnable_others`, ``spacing_s`` apart (None off Linux)."""
    values = []
    for i in range(samples):
        if i:
            time.sleep(spacing_s)
        value = runnable_others()
        if value is None:
            return None
        values.append(value)
    return sum(values) / len(values)


def cpu_cores() -> tuple[int, bool]:
    """(cores this process may run on, whether they are all of the machine's online cores).

    Machine-wide load readings describe our cores only when the second is true (a container
    pinned to 2 of 64 cores sees the whole host's runnable tasks).
    """
    online = os.cpu_count() or 1
    try:
        allowed = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        allowed = online
    return allowed, allowed >= online


def gpu_other_processes(device: str | torch.device) -> int | None:
    """Processes on the CUDA ``device`` other than this one, where the driver tells (else ``None``).

    From ``torch.cuda.list_gpu_processes`` (needs ``pynvml``), falling back to ``nvidia-smi``. In a
    container the driver lists host pids, so this process is recognized by its pid or, when no
    listed pid is ours, assumed to be one of them (it holds a context on the device).
    """
    pids: list[int] | None = None
    try:
        text = torch.cuda.list_gpu_processes(device)
        if "no processes are running" in text:
            pids = []
        elif "process" in text and "uses" in text:
            pids = [int(line.split()[1]) for line in text.splitlines() if line.strip().startswith("process")]
    except Exception:  # noqa: BLE001 - an optional reading: whatever fails, there is none
        pids = None
    if pids is None:
        pids = _nvidia_smi_pids(device)
    if pids is None:
        return None
    # ours is among them: by its pid, or (a container's pid namespace) as one of the unknown ones
    return max(0, len(pids) - 1)


def _nvidia_smi_pids(device: str | torch.device) -> list[int] | None:
    """pids of the compute processes on ``device`` by ``nvidia-smi`` (by the device's UUID), or None."""
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return None
    try:
        uuid = str(torch.cuda.get_device_properties(torch.device(device)).uuid)
        uuid = uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"
        out = subprocess.run(
            [executable, "--query-compute-apps=pid", "--format=csv,noheader", "-i", uuid],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        return [int(line) for line in out.split() if line.strip().isdigit()]
    except Exception:  # noqa: BLE001 - an optional reading: whatever fails, there is none
        return None


def assess_contention(
    cpu_share: float | None, gpu_others: int | None = None, share_threshold: float = CONTENTION_SHARE
) -> tuple[bool, str | None]:
    """(contended, why): was a timing contended? Pure; the rule of docs/efficiency.md#contention.

    Contended when the process's threads got less than ``share_threshold`` of the CPU they asked
    for (``cpu_share``), or when ``gpu_others`` > 0 processes share the GPU. ``why`` names each
    reason met (None when not contended). The runnable-task counts (:func:`runnable_others`) are
    recorded beside it but do not decide: read at a timed interval's edges they count our own
    threads that are going to sleep (on a run queue, not in state R) as other tasks.
    """
    reasons = []
    if cpu_share is not None and cpu_share < share_threshold:
        reasons.append(f"its threads waited for a CPU: cpu_share below {share_threshold:.2f}")
    if gpu_others:
        reasons.append(f"{gpu_others} other process(es) on the GPU")
    return bool(reasons), "; ".join(reasons) or None


class CpuMeter:
    """What this process got of the CPU over timed intervals (:meth:`start`/:meth:`stop` around each).

    Sums wall time, process CPU time (``time.process_time``: every thread of the process) and,
    where Linux scheduler statistics exist, each thread's time on a CPU and time spent runnable but
    waiting for one; samples :func:`runnable_others` at every start and stop.
    """

    def __init__(self) -> None:
        self.wall_s = 0.0
        self.cpu_s = 0.0
        self.run_s = 0.0
        self.wait_s = 0.0
        self.schedstat = True
        self.samples: list[int] = []
        self._start: tuple[float, float, dict[str, tuple[int, int]] | None] | None = None

    def _sample(self) -> None:
        value = runnable_others()
        if value is not None:
            self.samples.append(value)

    def start(self) -> None:
        """Begin a timed interval (call right before its timer starts)."""
        self._sample()
        self._start = (time.perf_counter(), time.process_time(), _sched_times())

    def stop(self) -> None:
        """End the timed interval begun by :meth:`start` (call right after its timer stops)."""
        wall, cpu, sched = time.perf_counter(), time.process_time(), _sched_times()
        if self._start is None:
            raise RuntimeError("CpuMeter.stop() without start()")
        wall0, cpu0, sched0 = self._start
        self._start = None
        self.wall_s += wall - wall0
        self.cpu_s += cpu - cpu0
        if sched is None or sched0 is None:
            self.schedstat = False
        else:
            # per thread: a thread born in the interval counts from 0, one that ended is dropped
            for tid, (run, wait) in sched.items():
                run0, wait0 = sched0.get(tid, (0, 0))
                self.run_s += (run - run0) / 1e9
                self.wait_s += (wait - wait0) / 1e9
        self._sample()

    def share(self, threads: int) -> tuple[float | None, str, float | None]:
        """(cpu_share, its source, cpu_utilization) over the intervals so far.

        ``cpu_share`` is on-CPU / (on-CPU + run-queue wait) from the scheduler's statistics: the
        share of the CPU time our threads asked for that they got, whatever the number of threads
        the work kept busy. Without them: ``cpu_utilization`` = process CPU time / (wall x
        ``threads``), capped at 1, which also drops on an idle machine when small ops leave
        threads idle (and spin-waiting OpenMP threads count as busy).
        """
        utilization = self.cpu_s / (self.wall_s * threads) if self.wall_s > 0 and threads > 0 else None
        if self.schedstat and self.run_s + self.wait_s > 0:
            return self.run_s / (self.run_s + self.wait_s), SHARE_SCHEDSTAT, utilization
        share = None if utilization is None else min(1.0, utilization)
        return share, SHARE_PROCESS_TIME, utilization
