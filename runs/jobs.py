#!/usr/bin/env python
"""The job engine behind ``scripts/reproduce/*.sh``: every run of a table, in order, on many GPUs.

    python -m runs.jobs table1 --gpus 0,1,2,3          # run locally, one job per GPU
    python -m runs.jobs table1 --gpus "" --jobs 2      # CPU only, two jobs at a time
    python -m runs.jobs xd --emit-slurm xd.sbatch      # write a Slurm array script instead
    python -m runs.jobs table3 --dry-run               # print the job list

A *job* is one invocation of a method script (``scripts/<method>/*.sh``) with its arguments and
environment; a job that needs another one's output (an evaluation needs its training run) lists it
as a dependency and starts only after it succeeded. Tables:

    table1  base-to-new: zero-shot CLIP on base and new classes; train → test per method/dataset/seed
    xd      cross-dataset: train on ImageNet per method/seed → evaluate on the 10 targets
    table2  domain generalisation: the same ImageNet runs → ImageNet-V2 / -Sketch / -A / -R
    table3  GOPro loss ablation (scripts/gopro/ablation.sh ROW DATASET SEED)
    fig2    GOPro prompt length sweep (scripts/gopro/nctx.sh M DATASET SEED)
    fig3    base-to-new training on EuroSAT → t-SNE plot (scripts/gopro/tsne.sh SEED DATASET)
    fewshot CoOp's few-shot protocol: per method/dataset/shot count/seed, train then test on all classes
    msdg    multi-source DG on PACS, VLCS, OfficeHome, DomainNet: per held-out domain, train on the others then test it

Environment (command-line flags win): ``METHODS``, ``DATASETS``, ``SEEDS`` (space or comma
separated), ``ROWS`` (table3), ``NCTX`` (fig2), ``SHOTS_LIST`` (fewshot); ``DATA``, ``OUTPUT``, ``SHOTS``, ``EPOCHS``,
``BACKBONE``, ``XD_SOURCE``, ``EXTRA_OPTS`` and ``PYTHON`` pass through to the scripts (see
``scripts/common.sh``). ``CFG`` does not: each method's config comes from the registry
(``runs/methods.py``), so that the report finds every run. A method without scripts of
its own runs through ``scripts/run.sh KEY STEP ...``.

A run whose folder holds its final result, made with the settings asked now, is skipped (the
scripts skip it too). The settings asked are those of the scripts' train.py runs (``runs/steps.py``)
and train.py's config, built in this process (``runs/identity.py``). A folder made with other
settings is *stale*: ``--dry-run`` shows ``[stale: OPTIM.MAX_EPOCH 2 ≠ 50]``, and nothing runs
until ``--rerun-stale`` (the scripts move such folders aside to ``<folder>.stale-<time>``) or
another ``OUTPUT``. Folders from before ``run.json`` are read from the config in their log.
SIGINT / SIGTERM stop the running jobs (their whole process groups) before the runner exits; on
Linux the jobs also die with a runner killed outright (SIGKILL: ``runs/children.py``).
A method whose scripts are not in this checkout is reported and skipped. With ``--emit-slurm FILE`` nothing
runs: FILE is an array script with one task per chain of dependent jobs (a training run and its
evaluations) and ``FILE.jobs`` lists the chains; ``sbatch FILE`` submits them.
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from runs.children import die_with_parent
from runs.identity import FolderState
from runs.plans import PASS_THROUGH, TABLES, Job, Plan, build_selection, split_list
from runs.steps import command_runs

REPO = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------------------------
# What the output folders hold
# --------------------------------------------------------------------------------------------
States = Dict[str, FolderState]


def combined_state(job: Job, folders: Sequence[Tuple[Path, FolderState]]) -> FolderState:
    """A job's state: finished as its own run's folder, stale when any of its folders is (a sweep
    script trains and evaluates in one job)."""
    own = next((state for folder, state in folders if folder == job.run.log.parent), None)
    if own is None:
        raise RuntimeError(f"{job.script} {' '.join(job.args)} does not write {job.run.log.parent}: "
                           "the scripts must write where runs/layout.py says")
    diffs = tuple(dict.fromkeys(d for _, state in folders for d in state.differences))
    return FolderState(own.finished, own.known, diffs)


def job_states(jobs: Sequence[Job], env: Mapping[str, str]) -> States:
    """Each job's state against the settings asked now (see the module docstring).

    Jobs with a folder on disk get their script's train.py runs (``runs.steps``); train.py's config
    is then built in this process, once per folder that records settings (the first one imports
    every trainer).
    """
    checked = [j for j in jobs if j.run is not None and any(r.log.parent.is_dir() for r in (j.run, *j.also))]
    listed = [command_runs(j.command(), {**env, **dict(j.env)}) for j in checked]
    states: States = {j.id: FolderState(j.done(), known=j.run is None) for j in jobs}
    for job, runs in zip(checked, listed):
        states[job.id] = combined_state(job, [(run.folder, run.state()) for run in runs])
    return states


def done_by(states: States) -> Callable[[Job], bool]:
    return lambda job: states[job.id].done


# --------------------------------------------------------------------------------------------
# Running locally
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Slot:
    """Where one job runs at a time: a GPU (``CUDA_VISIBLE_DEVICES``) or a CPU worker."""

    name: str
    env: Tuple[Tuple[str, str], ...]


def make_slots(gpus: Sequence[str], jobs: int = 1, hide_gpus: bool = False) -> List[Slot]:
    """One slot per GPU; without GPUs, ``jobs`` CPU slots (``hide_gpus``: CUDA_VISIBLE_DEVICES="")."""
    if gpus:
        return [Slot(f"GPU {g}", (("CUDA_VISIBLE_DEVICES", g),)) for g in gpus]
    hide = (("CUDA_VISIBLE_DEVICES", ""),) if hide_gpus else ()
    return [Slot(f"CPU worker {i}", hide) for i in range(max(jobs, 1))]


def detect_gpus() -> List[str]:
    """GPU ids from CUDA_VISIBLE_DEVICES if set, else from ``nvidia-smi -L``; [] without GPUs."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip()]
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(l for l in listing.splitlines() if l.startswith("GPU "))]


@dataclass
class Outcome:
    finished_before: List[str] = field(default_factory=list)
    ok: List[str] = field(default_factory=list)
    failed: Dict[str, Path] = field(default_factory=dict)   # job id -> its output log
    blocked: List[str] = field(default_factory=list)        # a dependency failed
    stopped_by: Optional[int] = None                        # the signal that stopped the runner

    @property
    def success(self) -> bool:
        return not self.failed and not self.blocked and self.stopped_by is None


class StopRequest:
    """Set by SIGINT / SIGTERM (``listen``); ``run_local`` checks it between polls."""

    def __init__(self):
        self.signum: Optional[int] = None

    def listen(self, signums: Sequence[int] = (signal.SIGINT, signal.SIGTERM)) -> "StopRequest":
        for signum in signums:
            signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.signum = signum


def signal_group(proc: subprocess.Popen, signum: int) -> None:
    """Signal the job's whole process group (bash and the train.py it started)."""
    try:
        os.killpg(proc.pid, signum)
    except ProcessLookupError:
        pass


def stop_jobs(procs: Sequence[subprocess.Popen], signum: int, grace_seconds: float = 60.0) -> None:
    """Pass ``signum`` on to every job, wait for them, and SIGKILL what outlives the grace period."""
    for proc in procs:
        signal_group(proc, signum)
    deadline = time.monotonic() + grace_seconds
    for proc in procs:
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            pass
        # What outlived the grace period, and any grandchild that ignored the signal, must not outlive its job.
        signal_group(proc, signal.SIGKILL)
        proc.wait()


def job_log(log_dir: Path, job: Job) -> Path:
    return log_dir / (re.sub(r"[^A-Za-z0-9_.-]+", "__", job.id) + ".log")


def start(job: Job, slot: Slot, env: Mapping[str, str], log_dir: Path) -> Tuple[subprocess.Popen, Path]:
    log = job_log(log_dir, job)
    log.parent.mkdir(parents=True, exist_ok=True)
    handle = log.open("w")
    handle.write(f"# {job.shell(dict(slot.env))}\n")
    handle.flush()
    # Its own process group, so that a signal reaches the script and the train.py it started; and
    # it dies with the runner, even one killed with SIGKILL (runs/children.py).
    proc = subprocess.Popen(job.command(), cwd=REPO, stdout=handle, stderr=subprocess.STDOUT,
                            env={**env, **dict(job.env), **dict(slot.env)}, start_new_session=True,
                            preexec_fn=die_with_parent())
    handle.close()  # the child holds its own descriptor
    return proc, log


def run_local(jobs: Sequence[Job], slots: Sequence[Slot], env: Mapping[str, str], log_dir: Path,
              poll_seconds: float = 0.2, say: Callable[[str], None] = print,
              done: Callable[[Job], bool] = Job.done, stop: Optional[StopRequest] = None) -> Outcome:
    """Run the jobs in list order, as many at a time as there are slots, each after its dependencies.

    ``done`` tells which jobs are finished already; once ``stop`` holds a signal, the running jobs
    get it and are waited for, and nothing new starts.
    """
    outcome = Outcome()
    state: Dict[str, str] = {}
    pending = []
    for job in jobs:
        if done(job):
            outcome.finished_before.append(job.id)
            state[job.id] = "ok"
        else:
            pending.append(job)
    if outcome.finished_before:
        say(f"{len(outcome.finished_before)} finished run(s) skipped")
    running: Dict[int, Tuple[Job, subprocess.Popen, Path, float]] = {}
    total, started = len(pending), 0
    while pending or running:
        if stop is not None and stop.signum is not None:
            say(f"Stopping: signal {stop.signum} passed on to {len(running)} running job(s)")
            stop_jobs([r[1] for r in running.values()], stop.signum)
            outcome.stopped_by = stop.signum
            break
        for job in [j for j in pending if any(state.get(d) in ("failed", "blocked") for d in j.deps)]:
            pending.remove(job)
            state[job.id] = "blocked"
            outcome.blocked.append(job.id)
            say(f"[blocked] {job.id}: a job it depends on failed")
        for index, slot in enumerate(slots):
            if index in running:
                continue
            job = next((j for j in pending if all(state.get(d) == "ok" for d in j.deps)), None)
            if job is None:
                break
            pending.remove(job)
            proc, log = start(job, slot, env, log_dir)
            running[index] = (job, proc, log, time.time())
            started += 1
            say(f"[{started}/{total}] start {job.id} on {slot.name}")
        if not running:  # nothing can start: dependencies outside the list (a bug in a table)
            for job in pending:
                state[job.id] = "blocked"
                outcome.blocked.append(job.id)
                say(f"[blocked] {job.id}: its dependencies {list(job.deps)} never ran")
            break
        finished = [(i, r) for i, r in running.items() if r[1].poll() is not None]
        if not finished:
            time.sleep(poll_seconds)
            continue
        for index, (job, proc, log, began) in finished:
            del running[index]
            seconds = time.time() - began
            # A zero exit without the final result (e.g. the script skipped a half-written log) is a failure.
            problem = f"rc={proc.returncode}" if proc.returncode else ""
            if not problem and job.checkable and not job.done():
                problem = "no final result"
            if problem:
                state[job.id] = "failed"
                outcome.failed[job.id] = log
                say(f"[FAILED {problem} {seconds:.0f}s] {job.id} (log: {log})")
            else:
                state[job.id] = "ok"
                outcome.ok.append(job.id)
                say(f"[ok {seconds:.0f}s] {job.id}")
    return outcome


# --------------------------------------------------------------------------------------------
# Slurm
# --------------------------------------------------------------------------------------------
@dataclass
class Chain:
    """Jobs one array task runs in order; stage > 0 waits for earlier stages (several dependencies)."""

    stage: int
    jobs: List[Job] = field(default_factory=list)


def chains(jobs: Sequence[Job]) -> List[Chain]:
    """Group the unfinished jobs into independent chains.

    A job with no unfinished dependency starts a chain; a job whose unfinished dependencies all sit
    in one chain joins it (an evaluation follows its training run); a job that needs several chains
    starts a chain one stage after the latest of them (the t-SNE plot after all its trainings).
    """
    out: List[Chain] = []
    chain_of: Dict[str, int] = {}
    unfinished = {j.id for j in jobs}
    for job in jobs:
        owners = sorted({chain_of[d] for d in job.deps if d in unfinished})
        if len(owners) == 1:
            index = owners[0]
            out[index].jobs.append(job)
        else:
            stage = 1 + max(out[i].stage for i in owners) if owners else 0
            out.append(Chain(stage, [job]))
            index = len(out) - 1
        chain_of[job.id] = index
    return out


def slurm_script(table: str, list_file: Path, log_dir: Path, count: int, stages: int, sbatch: Sequence[str],
                 max_parallel: int) -> str:
    limit = f"%{max_parallel}" if max_parallel else ""
    header = [f"#SBATCH --job-name=gopro-{table}", f"#SBATCH --array=0-{count - 1}{limit}",
              f"#SBATCH --output={log_dir}/%x_%A_%a.out", *(f"#SBATCH {opt}" for opt in sbatch)]
    later = [f"#   stage {s}: sbatch --array=0-N --dependency=afterok:<job id of stage {s - 1}> {{this file}} {s}"
             for s in range(1, stages)]
    lines = [
        "#!/usr/bin/env bash", *header,
        f"# Generated by runs/jobs.py {table}. One array task per chain of dependent runs (a training",
        f"# run, then its evaluations), listed in {list_file} (columns: stage, job ids, command).",
        "# Submit: sbatch <this file>. Finished runs are skipped, so resubmitting retries only what failed.",
        *(["# Later stages need earlier ones (N + 1 = their chain count in the list):", *later] if later else []),
        "set -euo pipefail",
        'stage=${1:-0}',
        f"list={shlex.quote(str(list_file))}",
        'task=${SLURM_ARRAY_TASK_ID:?submit this script with sbatch (it is a job array)}',
        "command=$(awk -F '\\t' -v stage=\"$stage\" -v task=\"$task\" "
        "'$1 == stage && n++ == task { print $3; exit }' \"$list\")",
        'if [ -z "$command" ]; then echo "No chain $task in stage $stage of $list" >&2; exit 1; fi',
        f"cd {shlex.quote(str(REPO))}",
        'echo "$command"',
        'bash -c "$command"',
    ]
    return "\n".join(lines) + "\n"


def emit_slurm(plan: Plan, path: Path, env: Mapping[str, str], log_dir: Path, sbatch: Sequence[str],
               max_parallel: int = 0, done: Callable[[Job], bool] = Job.done) -> List[Chain]:
    """Write the array script ``path`` and its job list ``path.jobs``; return the chains."""
    todo = [j for j in plan.jobs if not done(j)]
    groups = chains(todo)
    list_file = Path(f"{path}.jobs").resolve()
    lines = []
    for stage in sorted({c.stage for c in groups}):
        for chain in (c for c in groups if c.stage == stage):
            command = " && ".join(job.shell(env) for job in chain.jobs)
            if "\t" in command or "\n" in command:
                raise ValueError(f"A tab or newline in the command of {chain.jobs[0].id}: remove it from the environment")
            lines.append(f"{stage}\t{','.join(j.id for j in chain.jobs)}\t{command}")
    path.parent.mkdir(parents=True, exist_ok=True)
    list_file.write_text("".join(f"{line}\n" for line in lines))
    stage0 = sum(1 for c in groups if c.stage == 0)
    stages = 1 + max((c.stage for c in groups), default=0)
    if stage0:
        log_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(slurm_script(plan.table, list_file, log_dir.resolve(), stage0, stages, sbatch, max_parallel))
        path.chmod(0o755)
    return groups


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
def script_environment(environ: Mapping[str, str]) -> Dict[str, str]:
    """The callers' environment for the scripts: absolute DATA/OUTPUT, this interpreter, no CFG."""
    env = dict(environ)
    if env.pop("CFG", None):
        print("Note: CFG is ignored here (each method's config comes from runs/methods.py).", file=sys.stderr)
    env["OUTPUT"] = str(Path(env.get("OUTPUT") or REPO / "output").resolve())
    env["DATA"] = str(Path(env.get("DATA") or REPO / "DATA").resolve())
    env.setdefault("PYTHON", sys.executable)
    return env


def print_plan(plan: Plan, states: States) -> None:
    for job in plan.jobs:
        status = states[job.id].label
        after = f"  (after {', '.join(job.deps)})" if job.deps else ""
        print(f"[{status}] {job.id}{after}\n    {job.shell({})}")


def refuse_stale(stale: Sequence[Job], states: States) -> None:
    for job in stale:
        print(f"[{states[job.id].label}] {job.id}", file=sys.stderr)
    print(f"Stop: {len(stale)} job(s) hold runs made with other settings than asked (above); nothing ran. "
          "Pass --rerun-stale to move those folders aside and run them again, or choose another OUTPUT.",
          file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("table", choices=list(TABLES))
    parser.add_argument("--gpus", help='GPU ids, e.g. "0,1,2,3" (one job per GPU); "" for none '
                                       "(default: CUDA_VISIBLE_DEVICES, else every GPU nvidia-smi lists)")
    parser.add_argument("--jobs", type=int, default=1, help="parallel jobs without GPUs (default: 1)")
    parser.add_argument("--methods", nargs="+", help="override METHODS")
    parser.add_argument("--datasets", nargs="+", help="override DATASETS")
    parser.add_argument("--seeds", nargs="+", help="override SEEDS")
    parser.add_argument("--dry-run", action="store_true", help="print the jobs and their state, run nothing")
    parser.add_argument("--rerun-stale", action="store_true",
                        help="run again the jobs whose folders hold runs made with other settings (the scripts "
                             "move those folders aside to <folder>.stale-<time>); without it, nothing runs")
    parser.add_argument("--emit-slurm", type=Path, metavar="FILE", help="write a Slurm array script, run nothing")
    parser.add_argument("--sbatch", action="append", metavar="OPTION",
                        help="#SBATCH option for --emit-slurm, with or without its dashes: --sbatch partition=gpu "
                             "or --sbatch=--partition=gpu (repeatable; default: gres=gpu:1 cpus-per-task=8)")
    parser.add_argument("--max-parallel", type=int, default=0, help="Slurm array concurrency limit (0: none)")
    parser.add_argument("--log-dir", type=Path, help="job output logs (default: OUTPUT/jobs/<table>)")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    env = script_environment(os.environ)
    try:
        sel = build_selection(args.table, args, env)
    except (KeyError, ValueError) as exc:
        print(f"Error: {exc.args[0]}", file=sys.stderr)
        return 2
    plan = TABLES[args.table].build(sel)
    plan.check()
    for note in plan.skipped:
        print(note)
    log_dir = args.log_dir or Path(env["OUTPUT"]) / "jobs" / args.table
    try:
        states = job_states(plan.jobs, env)
    except (RuntimeError, ValueError) as exc:  # a script refused its arguments or a config does not build
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        print_plan(plan, states)
        return 0
    stale = [job for job in plan.jobs if states[job.id].stale]
    if stale and not args.rerun_stale:
        refuse_stale(stale, states)
        return 3
    if stale:
        env["RERUN_STALE"] = "1"  # the scripts move the stale folders aside, then run
    unknown = sum(1 for job in plan.jobs if states[job.id].done and not states[job.id].known)
    if unknown:
        print(f"Note: {unknown} finished run(s) record no settings (they predate run.json) and count as finished.")
    done = done_by(states)
    if args.emit_slurm:
        passed = {k: env[k] for k in PASS_THROUGH if env.get(k)}
        sbatch = [opt if opt.startswith("-") else f"--{opt}" for opt in args.sbatch or ["gres=gpu:1", "cpus-per-task=8"]]
        groups = emit_slurm(plan, args.emit_slurm, passed, log_dir, sbatch, args.max_parallel, done)
        if not groups:
            print("Every run is finished: no Slurm script written.")
            return 0
        stage0 = sum(1 for c in groups if c.stage == 0)
        print(f"{sum(len(c.jobs) for c in groups)} job(s) in {len(groups)} chain(s) ({stage0} in stage 0) "
              f"listed in {args.emit_slurm}.jobs\nSubmit with: sbatch {args.emit_slurm}")
        for stage in sorted({c.stage for c in groups} - {0}):
            count = sum(1 for c in groups if c.stage == stage)
            print(f"Then stage {stage}: sbatch --array=0-{count - 1} --dependency=afterok:<job id of stage {stage - 1}> "
                  f"{args.emit_slurm} {stage}")
        return 0
    gpus = detect_gpus() if args.gpus is None else split_list(args.gpus)
    if gpus and args.jobs > 1:
        print("Note: --jobs applies without GPUs; with GPUs one job runs per GPU.", file=sys.stderr)
    # An explicit --gpus "" hides the GPUs from the jobs; an auto-detected "none" leaves the env alone.
    slots = make_slots(gpus, args.jobs, hide_gpus=args.gpus is not None)
    outcome = run_local(plan.jobs, slots, env, log_dir, done=done, stop=StopRequest().listen())
    if outcome.stopped_by is not None:
        print(f"\n{args.table}: stopped by signal {outcome.stopped_by}; the running jobs were stopped too")
        return 128 + outcome.stopped_by
    print(f"\n{args.table}: {len(outcome.ok)} run(s) done, {len(outcome.finished_before)} already finished, "
          f"{len(outcome.failed)} failed, {len(outcome.blocked)} not started (dependency failed), "
          f"{len(plan.skipped)} method(s) skipped")
    for job_id, log in outcome.failed.items():
        print(f"  failed: {job_id}: {log}")
    return 0 if outcome.success else 1


if __name__ == "__main__":
    sys.exit(main())
