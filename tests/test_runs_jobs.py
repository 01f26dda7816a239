"""runs/jobs.py and scripts/reproduce/*.sh: job lists, dependency order, GPU slots, skipping,
Slurm emission; scripts/gopro/{ablation,nctx}.sh options and trees.

The real scripts run with ``PYTHON`` pointing at a fake interpreter that records its arguments and
CUDA_VISIBLE_DEVICES and writes a log.txt in the result format instead of training.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, script_env

from runs import jobs, plans
from tools.experiments import report
from runs.layout import Layout, Run, ablation_layout, nctx_layout
from runs.methods import METHODS
from runs.results import TRAIN_END_SIGNALS, harmonic_mean
from test_report import row_of

FAKE_PYTHON = f"""#!{sys.executable}
# Stands in for `python train.py ...` / `python -m tools.experiments.tsne ...` in the scripts.
import json, os, sys, time
args = sys.argv[1:]
if args[:2] == ["-m", "runs.steps"]:  # the scripts ask which runs to make: the real one answers
    os.execv(sys.executable, [sys.executable, *args])
if args[:2] == ["train.py", "--check-finished"]:  # no run.json here: finished = the log has its result
    log = os.path.join(args[args.index("--output-dir") + 1], "log.txt")
    sys.exit(0 if os.path.isfile(log) and "* accuracy" in open(log).read() else 1)
record = {{"argv": args, "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": time.time(), "pid": os.getpid(),
           "parent": os.getppid()}}
if os.environ.get("FAKE_PIDS"):  # where a test learns the process tree of a running job
    with open(os.environ["FAKE_PIDS"], "a") as f:
        f.write(json.dumps(record) + "\\n")
time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))

def rendezvous(folder, count):
    # The first `count` calls wait for each other (each leaves a marker): they only meet when they
    # run side by side. Later calls pass. A long timeout, so a slow machine cannot fail the test.
    os.makedirs(folder, exist_ok=True)
    for index in range(1000):
        try:
            os.close(os.open(os.path.join(folder, f"arrival-{{index}}"), os.O_CREAT | os.O_EXCL))
            break
        except FileExistsError:
            continue
    if index >= count:
        return True
    deadline = time.time() + 120
    while len(os.listdir(folder)) < count and time.time() < deadline:
        time.sleep(0.05)
    return len(os.listdir(folder)) >= count

if os.environ.get("FAKE_RENDEZVOUS"):
    folder, count = os.environ["FAKE_RENDEZVOUS"].rsplit(":", 1)
    record["met"] = rendezvous(folder, int(count))

def save(**extra):
    with open(os.environ["FAKE_RECORD"], "a") as f:
        f.write(json.dumps(dict(record, end=time.time(), **extra)) + "\\n")

if args[0] == "train.py":
    out = args[args.index("--output-dir") + 1]
    if os.environ.get("FAKE_FAIL") and os.environ["FAKE_FAIL"] in out:
        save(failed=True)
        sys.exit(3)
    seed = int(args[args.index("--seed") + 1]) if "--seed" in args else 0
    evaluation = "--eval-only" in args
    accuracy = (70.0 if evaluation else 80.0) + seed
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "log.txt"), "w") as f:
        f.write(("" if evaluation else "Finish training\\n") + f"=> result\\n* accuracy: {{accuracy:.1f}}%\\n")
elif args[:2] == ["-m", "tools.experiments.tsne"]:  # the tool's default --out, under the scripts' OUTPUT
    dataset, seed = args[args.index("--dataset") + 1], args[args.index("--seed") + 1]
    out = os.path.join(os.environ["OUTPUT"], "figures", f"tsne_{{dataset}}_seed{{seed}}.png")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    open(out, "wb").write(b"png")
save()
"""


@pytest.fixture
def fake(tmp_path):
    """Environment for the real scripts with the fake interpreter; ``records()`` reads its calls."""
    python = tmp_path / "fake-python"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    record = tmp_path / "calls.jsonl"

    class Fake:
        output = tmp_path / "output"
        env = {"PYTHON": str(python), "FAKE_RECORD": str(record), "OUTPUT": str(tmp_path / "output"),
               "DATA": str(tmp_path / "DATA")}

        @staticmethod
        def records():
            return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []

    return Fake


def run_jobs(*args, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    """``python -m runs.jobs ...``: the engine itself runs on this interpreter, the scripts on the fake."""
    proc = subprocess.run([sys.executable, "-m", "runs.jobs", *args], cwd=REPO, capture_output=True,
                          text=True, env=script_env(**env), timeout=300)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def selection(table: str, environ: dict, **flags):
    args = jobs.build_parser().parse_args([table, *[x for k, v in flags.items() for x in (f"--{k}", *v)]])
    return plans.build_selection(table, args, jobs.script_environment({"OUTPUT": "/tmp/out", **environ}))


# --------------------------------------------------------------------------------------------
# Job lists
# --------------------------------------------------------------------------------------------
def test_table1_lists_zero_shot_runs_and_train_then_test_chains():
    sel = selection("table1", {"METHODS": "zsclip coop gopro", "DATASETS": "dtd,imagenet", "SEEDS": "1 2"})
    plan = plans.TABLES["table1"].build(sel)
    plan.check()
    ids = [j.id for j in plan.jobs]
    assert len(ids) == 2 * 2 + 2 * (2 * 2 * 2)  # zero-shot: datasets × {base, new}; others: train + test
    assert ids[:4] == ["zsclip/base/dtd", "zsclip/new/dtd", "zsclip/base/imagenet", "zsclip/new/imagenet"]
    by_id = {j.id: j for j in plan.jobs}
    test = by_id["gopro/b2n_test/imagenet/seed2"]
    assert test.deps == ("gopro/b2n_train/imagenet/seed2",) and ids.index(test.deps[0]) < ids.index(test.id)
    assert test.command() == ["bash", "scripts/gopro/base2new_test.sh", "imagenet", "2"]
    assert test.run.log == Path("/tmp/out/base2new/test_new/imagenet/shots_16/GOPro/vit_b16/seed2/log.txt")
    # CoOp's ImageNet runs use the 50-epoch config (its own OPTIM.MAX_EPOCH; the caller's EPOCHS still wins).
    assert dict(by_id["coop/b2n_train/imagenet/seed1"].env) == {"CFG": "vit_b16_ep50_ctxv1"}
    assert dict(by_id["coop/b2n_train/dtd/seed1"].env) == {"CFG": "vit_b16_ctxv1"}
    sel = selection("table1", {"METHODS": "coop", "DATASETS": "imagenet", "SEEDS": "1", "EPOCHS": "1"})
    assert dict(plans.table1(sel).jobs[0].env) == {"CFG": "vit_b16_ep50_ctxv1"}


def test_flags_override_the_environment_and_bad_names_are_refused():
    sel = selection("table1", {"METHODS": "coop", "SEEDS": "1"}, methods=["GOPro"], seeds=["4", "5"])
    assert [m.key for m in sel.methods] == ["gopro"] and sel.seeds == (4, 5) and len(sel.datasets) == 11
    with pytest.raises(KeyError, match="choose from"):
        selection("table1", {"METHODS": "coop clipper"})
    with pytest.raises(ValueError, match="Unknown dataset"):
        selection("table1", {"DATASETS": "mnist"})
    with pytest.raises(ValueError, match="SEEDS must be integers"):
        selection("table1", {"SEEDS": "one"})
    with pytest.raises(KeyError, match="ablation row"):
        selection("table3", {"ROWS": "ce nonsense"})


def test_transfer_tables_train_once_per_seed_and_evaluate_every_target():
    xd = plans.TABLES["xd"].build(selection("xd", {"METHODS": "zsclip maple", "SEEDS": "1"}))
    ids = [j.id for j in xd.jobs]
    assert ids[0] == "zsclip/all/imagenet" and len([i for i in ids if i.startswith("zsclip/")]) == 11
    tests = [j for j in xd.jobs if j.id.startswith("maple/xd_test/")]
    assert len(tests) == 10 and all(j.deps == ("maple/xd_train/seed1",) for j in tests)
    assert dict(tests[0].env) == {"CFG": "vit_b16_c2_ep5_batch4_2ctx_cross_datasets"}
    dg = plans.TABLES["table2"].build(selection("table2", {"METHODS": "gopro", "SEEDS": "1 2"}))
    assert [j.args for j in dg.jobs if j.id.startswith("gopro/xd_test")][:4] == \
        [("imagenetv2", "1"), ("imagenet_sketch", "1"), ("imagenet_a", "1"), ("imagenet_r", "1")]


def test_sweeps_and_figure3_jobs():
    sel = selection("table3", {"DATASETS": "dtd", "SEEDS": "1"})
    ablation = plans.table3(sel)
    assert [j.args for j in ablation.jobs] == [(row, "dtd", "1") for row in
                                               ("ce", "ce_con", "ce_sem_x1", "ce_sem_x2", "ce_sem_x1x2", "all")]
    assert ablation.jobs[0].run.log == ablation_layout(sel.layout, "ce").b2n_run(METHODS["gopro"], "new", "dtd", 1).log
    assert ablation.jobs[-1].run.log == sel.layout.b2n_run(METHODS["gopro"], "new", "dtd", 1).log  # = Table 1's run
    sweep = plans.fig2(selection("fig2", {"DATASETS": "dtd", "SEEDS": "1", "NCTX": "1 init"}))
    assert [j.args[0] for j in sweep.jobs] == ["1", "init"]
    fig3 = plans.fig3(selection("fig3", {"METHODS": "zsclip cocoop gopro"}))
    tsne = fig3.jobs[-1]
    assert [j.id for j in fig3.jobs[:-1]] == ["cocoop/b2n_train/eurosat/seed1", "gopro/b2n_train/eurosat/seed1"]
    assert tsne.deps == tuple(j.id for j in fig3.jobs[:-1]) and tsne.args == ("1", "eurosat")
    assert dict(tsne.env) == {"METHODS": "zsclip cocoop gopro"}


def test_methods_without_scripts_are_reported_and_skipped(tmp_path, monkeypatch):
    for name in ("base2new_train", "base2new_test"):
        (tmp_path / "scripts" / "gopro").mkdir(parents=True, exist_ok=True)
        (tmp_path / "scripts" / "gopro" / f"{name}.sh").write_text("")
    monkeypatch.setattr(plans, "REPO", tmp_path)  # a checkout with GOPro's scripts only
    plan = plans.table1(selection("table1", {"METHODS": "zsclip stylip gopro", "DATASETS": "dtd", "SEEDS": "1"}))
    assert [j.id for j in plan.jobs] == ["gopro/b2n_train/dtd/seed1", "gopro/b2n_test/dtd/seed1"]
    assert plan.skipped == ["zsclip: skipped, scripts/zsclip/zeroshot.sh not found (method not in this checkout)",
                            "stylip: skipped, scripts/stylip/base2new_train.sh, scripts/stylip/base2new_test.sh "
                            "not found (method not in this checkout)"]


def test_chains_group_dependent_jobs_and_put_joins_in_a_later_stage():
    def job(name, *deps):
        return plans.Job(name, "s.sh", (), deps=deps)

    groups = jobs.chains([job("a"), job("a1", "a"), job("a2", "a"), job("b"), job("b1", "b"), job("c"),
                          job("join", "a", "b"), job("after", "join")])
    assert [(c.stage, [j.id for j in c.jobs]) for c in groups] == [
        (0, ["a", "a1", "a2"]), (0, ["b", "b1"]), (0, ["c"]), (1, ["join", "after"])]
    # A finished dependency is not waited for: the job starts its own chain.
    assert [[j.id for j in c.jobs] for c in jobs.chains([job("a1", "a")])] == [["a1"]]


# --------------------------------------------------------------------------------------------
# Running locally
# --------------------------------------------------------------------------------------------
def test_local_run_uses_one_job_per_gpu_orders_tests_after_training_and_skips_finished(fake):
    env = {**fake.env, "METHODS": "zsclip coop gopro", "DATASETS": "oxford_pets", "SEEDS": "1 2", "FAKE_SLEEP": "0.3"}
    proc = run_jobs("table1", "--gpus", "0,1", env=env)
    calls = fake.records()
    assert len(calls) == 2 + 4 + 4 and "10 run(s) done" in proc.stdout
    assert {c["cuda"] for c in calls} == {"0", "1"}
    for gpu in ("0", "1"):  # never two jobs on one GPU at a time
        spans = sorted((c["start"], c["end"]) for c in calls if c["cuda"] == gpu)
        assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:]))
    for c in calls:  # every evaluation started after its own training run ended
        if "--model-dir" in c["argv"]:
            model_dir = c["argv"][c["argv"].index("--model-dir") + 1]
            train = next(t for t in calls if t["argv"][t["argv"].index("--output-dir") + 1] == model_dir)
            assert c["start"] >= train["end"]
    # The report reads the tree the scripts wrote: base = 80 + seed, new = 70 + seed.
    text = report.to_markdown([report.table1(report.Request(
        Layout(fake.output), report.Paper.load(), (METHODS["gopro"],), (1, 2), ("oxford_pets",)))], "")
    row = row_of(text, "OxfordPets", "GOPro")
    assert row[1:3] == ["81.50 ± 0.50", "96.36"] and row[4] == "71.50 ± 0.50"
    assert row[7] == f"{harmonic_mean(81.5, 71.5):.2f}"
    again = run_jobs("table1", "--gpus", "0,1", env=env)
    assert "10 finished run(s) skipped" in again.stdout and len(fake.records()) == 10


def test_cpu_workers_hide_gpus_and_failures_block_dependents(fake, tmp_path):
    # The first two calls (the two training runs) wait for each other: they only meet side by side.
    env = {**fake.env, "METHODS": "gopro", "DATASETS": "oxford_pets dtd", "SEEDS": "1",
           "FAKE_RENDEZVOUS": f"{tmp_path / 'rendezvous'}:2", "FAKE_FAIL": "train_base/dtd"}
    proc = run_jobs("table1", "--gpus", "", "--jobs", "2", env=env, check=False)
    assert proc.returncode == 1
    assert "[FAILED rc=3" in proc.stdout and "[blocked] gopro/b2n_test/dtd/seed1" in proc.stdout
    assert "2 run(s) done" in proc.stdout and "1 failed, 1 not started" in proc.stdout
    calls = fake.records()
    assert len(calls) == 3 and {c["cuda"] for c in calls} == {""}
    assert all(c["met"] for c in calls)  # the two training runs ran side by side
    log = fake.output / "jobs" / "table1" / "gopro__b2n_train__dtd__seed1.log"
    assert log.read_text().startswith("# env CUDA_VISIBLE_DEVICES='' CFG=vit_b16 bash scripts/gopro/base2new_train.sh dtd 1")


def wait_until(condition, timeout: float = 120.0, what: str = "") -> None:
    """Poll ``condition`` (process state, files) until it holds; fail after a generous timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie (an exited child nobody reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_runner_stops_every_job_and_its_children(fake, tmp_path, signum):
    pids = tmp_path / "pids.jsonl"
    env = {**fake.env, "METHODS": "gopro", "DATASETS": "dtd oxford_pets", "SEEDS": "1", "FAKE_SLEEP": "600",
           "FAKE_PIDS": str(pids)}
    runner = subprocess.Popen([sys.executable, "-m", "runs.jobs", "table1", "--gpus", "", "--jobs", "2"],
                              cwd=REPO, env=script_env(**env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        wait_until(lambda: pids.exists() and len(pids.read_text().splitlines()) == 2, what="both jobs to start")
        started = [json.loads(line) for line in pids.read_text().splitlines()]
        tree = {p for call in started for p in (call["pid"], call["parent"])}  # train.py and its bash
        assert all(alive(p) for p in tree)
        runner.send_signal(signum)
        output, _ = runner.communicate(timeout=120)
    finally:
        if runner.poll() is None:
            runner.kill()
    try:
        assert runner.returncode == 128 + signum, output
        assert f"stopped by signal {signum}" in output
        wait_until(lambda: not any(alive(p) for p in tree), what=f"the jobs' processes {sorted(tree)} to end")
    finally:  # on failure, leave no sleeping fake behind
        for pid in filter(alive, tree):
            os.kill(pid, signal.SIGKILL)


def test_the_jobs_die_with_a_runner_killed_outright(fake, tmp_path):
    """SIGKILL gives the runner no chance to stop its jobs (each in its own session): the kernel's
    parent-death signal does, for the job's script and the train.py it started."""
    pids = tmp_path / "pids.jsonl"
    env = {**fake.env, "METHODS": "gopro", "DATASETS": "dtd", "SEEDS": "1", "FAKE_SLEEP": "600", "FAKE_PIDS": str(pids)}
    runner = subprocess.Popen([sys.executable, "-m", "runs.jobs", "table1", "--gpus", ""], cwd=REPO,
                              env=script_env(**env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tree = set()
    try:
        wait_until(lambda: pids.exists() and pids.read_text().strip(), what="the job to start")
        call = json.loads(pids.read_text().splitlines()[0])
        tree = {call["pid"], call["parent"]}  # train.py and the step that started it
        assert all(alive(p) for p in tree)
        runner.kill()
        runner.wait(timeout=60)
        wait_until(lambda: not any(alive(p) for p in tree), what=f"the job's processes {sorted(tree)} to end")
    finally:  # on failure, leave no sleeping fake behind
        if runner.poll() is None:
            runner.kill()
        for pid in filter(alive, tree):
            os.kill(pid, signal.SIGKILL)


def test_a_zero_exit_without_the_final_result_counts_as_a_failure(tmp_path):
    script = tmp_path / "half.sh"
    script.write_text(f"mkdir -p {tmp_path}/run && echo 'epoch [1/50]' > {tmp_path}/run/log.txt\n")
    half = plans.Job("half", str(script), (), run=Run(tmp_path / "run" / "log.txt", TRAIN_END_SIGNALS))
    after = plans.Job("after", str(script), (), deps=("half",))
    plain = plans.Job("plain", str(script), ())  # nothing to check: its exit status decides
    messages = []
    outcome = jobs.run_local([half, after, plain], jobs.make_slots([], 1), dict(os.environ), tmp_path / "logs",
                             poll_seconds=0.01, say=messages.append)
    assert outcome.failed == {"half": tmp_path / "logs" / "half.log"} and outcome.blocked == ["after"]
    assert outcome.ok == ["plain"] and any("[FAILED no final result" in m for m in messages)


@pytest.mark.slow
def test_table1_end_to_end_with_real_training_on_the_kit_then_the_report(kit, tmp_path):
    """The issue's "done when": scripts/reproduce/table1.sh with the kit's environment runs real
    train.py jobs (zero-shot CLIP, MaPLe at the paper config's depth fitted by the kit, GOPro), and
    tools/experiments/report.py prints Table 1 with our numbers beside the paper's."""
    env = {"DATA": str(kit.data), "OUTPUT": str(tmp_path), "EPOCHS": "1", "SEEDS": "1", "PYTHON": sys.executable,
           "METHODS": "zsclip maple gopro", "DATASETS": "oxford_pets", "EXTRA_OPTS": " ".join(kit.opts())}
    proc = subprocess.run(["bash", str(REPO / "scripts" / "reproduce" / "table1.sh"), "--gpus", "", "--jobs", "2"],
                          cwd=REPO, capture_output=True, text=True, env=script_env(**env), timeout=900)
    assert proc.returncode == 0 and "6 run(s) done" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = subprocess.run([sys.executable, "-m", "tools.experiments.report", str(tmp_path), "--tables", "table1",
                           "--methods", "zsclip", "maple", "gopro", "--seeds", "1", "--datasets", "oxford_pets"],
                          cwd=REPO, capture_output=True, text=True, check=True).stdout
    for label, paper_base in (("CLIP", "91.17"), ("MaPLe", "95.43"), ("GOPro", "96.36")):
        row = row_of(text, "OxfordPets", label)
        assert row[2] == paper_base and float(row[1].split()[0]) >= 0 and "n/a" not in " ".join(row), row


def test_reproduce_scripts_forward_to_the_engine(fake):
    env = {**fake.env, "DATASETS": "dtd", "SEEDS": "3", "PYTHON": sys.executable}
    for name, first in (("table1", "zsclip/base/dtd"), ("xd", "zsclip/all/imagenet"), ("table2", "zsclip/all/imagenet"),
                        ("table3", "gopro/ablation/ce/dtd/seed3"), ("fig2", "gopro/nctx/1/dtd/seed3"),
                        ("fig3", "slip/b2n_train/dtd/seed3")):
        proc = subprocess.run(["bash", str(REPO / "scripts" / "reproduce" / f"{name}.sh"), "--dry-run"], cwd=REPO,
                              capture_output=True, text=True, env=script_env(**env))
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines()[0].startswith(f"[todo] {first}"), (name, proc.stdout[:300])


# --------------------------------------------------------------------------------------------
# Slurm
# --------------------------------------------------------------------------------------------
def test_emit_slurm_writes_an_array_over_chains_that_runs(fake, tmp_path):
    env = {**fake.env, "METHODS": "zsclip gopro", "DATASETS": "dtd", "SEEDS": "1 2", "EPOCHS": "3"}
    script = tmp_path / "slurm" / "table1.sbatch"
    proc = run_jobs("table1", "--emit-slurm", str(script), "--sbatch", "partition=gpu", "--sbatch=--time=4:00:00", "--max-parallel", "8", env=env)
    assert "6 job(s) in 4 chain(s)" in proc.stdout and fake.records() == []  # nothing ran
    text = script.read_text()
    assert "#SBATCH --array=0-3%8" in text and "#SBATCH --partition=gpu\n#SBATCH --time=4:00:00" in text and "#SBATCH --gres" not in text
    lines = Path(f"{script}.jobs").read_text().splitlines()
    assert [line.split("\t")[:2] for line in lines] == [
        ["0", "zsclip/base/dtd"], ["0", "zsclip/new/dtd"],
        ["0", "gopro/b2n_train/dtd/seed1,gopro/b2n_test/dtd/seed1"],
        ["0", "gopro/b2n_train/dtd/seed2,gopro/b2n_test/dtd/seed2"]]
    command = lines[2].split("\t")[2]
    assert command.count(" && ") == 1 and "EPOCHS=3" in command and f"PYTHON={fake.env['PYTHON']}" in command
    # Run array task 2 as Slurm would: the chain trains, then evaluates.
    task = subprocess.run(["bash", str(script)], env=script_env(SLURM_ARRAY_TASK_ID="2", FAKE_RECORD=fake.env["FAKE_RECORD"]),
                          capture_output=True, text=True, timeout=120)
    assert task.returncode == 0, task.stderr
    assert [("--eval-only" in c["argv"]) for c in fake.records()] == [False, True]
    # Re-emitting leaves the finished chain out.
    proc = run_jobs("table1", "--emit-slurm", str(script), env=env)
    assert "4 job(s) in 3 chain(s)" in proc.stdout and "#SBATCH --gres=gpu:1" in script.read_text()


def test_emit_slurm_puts_joins_in_stage_one(fake, tmp_path):
    env = {**fake.env, "METHODS": "gopro coop"}
    script = tmp_path / "fig3.sbatch"
    proc = run_jobs("fig3", "--emit-slurm", str(script), env=env)
    assert "sbatch --array=0-0 --dependency=afterok:" in proc.stdout
    lines = Path(f"{script}.jobs").read_text().splitlines()
    assert [line.split("\t")[:2] for line in lines][-1] == ["1", "tsne/eurosat/seed1"]
    assert "#SBATCH --array=0-1" in script.read_text()


# --------------------------------------------------------------------------------------------
# scripts/gopro/ablation.sh and nctx.sh
# --------------------------------------------------------------------------------------------
def script_calls(fake, script: str, *args: str, env: dict = None):
    proc = subprocess.run(["bash", str(REPO / "scripts" / "gopro" / script), *args], cwd=REPO, capture_output=True,
                          text=True, env=script_env(**{**fake.env, **(env or {})}))
    return proc, fake.records()


def trailing_opts(argv):
    """The KEY VALUE pairs after DATASET.SUBSAMPLE_CLASSES <sub>."""
    rest = argv[argv.index("DATASET.SUBSAMPLE_CLASSES") + 2:]
    return dict(zip(rest[::2], rest[1::2]))


@pytest.mark.parametrize("row,expected", [
    ("ce", {"W_CE": "1.0", "W_CON": "0.0", "W_SEM": "0.0"}),
    ("ce_con", {"W_CE": "1.0", "W_CON": "1.0", "W_SEM": "0.0"}),
    ("ce_sem_x1", {"W_CE": "1.0", "W_CON": "0.0", "W_SEM": "1.0", "SEM_VIEWS": "['moco']"}),
    ("ce_sem_x2", {"W_CE": "1.0", "W_CON": "0.0", "W_SEM": "1.0", "SEM_VIEWS": "['augmix']"}),
    ("ce_sem_x1x2", {"W_CE": "1.0", "W_CON": "0.0", "W_SEM": "1.0", "SEM_VIEWS": "['moco', 'augmix']"}),
    ("all", {"W_CE": "1.0", "W_CON": "1.0", "W_SEM": "1.0", "SEM_VIEWS": "['moco', 'augmix']"}),
])
def test_ablation_rows_pass_their_switches_and_write_their_own_tree(fake, row, expected):
    proc, calls = script_calls(fake, "ablation.sh", row, "dtd", "2")
    assert proc.returncode == 0, proc.stderr
    train, test = calls
    wanted = {f"TRAINER.GOPRO.{k}": v for k, v in expected.items()}
    assert trailing_opts(train["argv"]) == trailing_opts(test["argv"]) == wanted
    layout = ablation_layout(Layout(fake.output), row)
    assert layout.b2n_run(METHODS["gopro"], "base", "dtd", 2).result() == 82.0
    assert layout.b2n_run(METHODS["gopro"], "new", "dtd", 2).result() == 72.0


def test_nctx_points_and_bad_arguments(fake):
    proc, calls = script_calls(fake, "nctx.sh", "8", "dtd", "1")
    assert proc.returncode == 0, proc.stderr
    assert trailing_opts(calls[0]["argv"]) == {"TRAINER.GOPRO.N_CTX": "8", "TRAINER.GOPRO.CTX_INIT": ""}
    assert nctx_layout(Layout(fake.output), "8").b2n_run(METHODS["gopro"], "new", "dtd", 1).done
    proc, calls = script_calls(fake, "nctx.sh", "init", "dtd", "1")
    assert trailing_opts(calls[2]["argv"]) == {"TRAINER.GOPRO.N_CTX": "4", "TRAINER.GOPRO.CTX_INIT": "a photo of a"}
    assert Layout(fake.output).b2n_run(METHODS["gopro"], "new", "dtd", 1).done  # the Table 1 tree
    for script, args, message in (("nctx.sh", ("0", "dtd", "1"), "Bad prompt length"),
                                  ("ablation.sh", ("ce_sem", "dtd", "1"), "Unknown ablation row"),
                                  ("ablation.sh", ("ce",), "Usage")):
        proc, _ = script_calls(fake, script, *args)
        assert proc.returncode == 2 and message in proc.stderr


def test_tsne_script_passes_methods_and_the_common_options(fake):
    from tools.experiments import tsne

    env = {**fake.env, "EPOCHS": "2", "EXTRA_OPTS": "INPUT.SIZE (32,32)", "METHODS": "zsclip gopro"}
    proc = subprocess.run(["bash", str(REPO / "scripts" / "gopro" / "tsne.sh"), "3"], cwd=REPO, capture_output=True,
                          text=True, env=script_env(**env))
    assert proc.returncode == 0, proc.stderr
    argv = fake.records()[0]["argv"]
    assert argv[:2] == ["-m", "tools.experiments.tsne"]
    args = tsne.build_parser().parse_args(argv[2:])
    assert args.methods == ["zsclip", "gopro"] and args.dataset == "eurosat" and args.seed == 3
    tsne.take_scripts_environment(args, script_env(**env))  # what the tool does with the scripts' options
    assert args.opts == ["OPTIM.MAX_EPOCH", "2", "INPUT.SIZE", "(32,32)"] and args.output_root == fake.output


def test_extra_opts_keep_quoted_values_and_bad_quoting_is_refused(fake):
    quoted = "TRAINER.GOPRO.CTX_INIT 'a photo of a' INPUT.SIZE (32,32) TRAINER.GOPRO.PREC \"fp32\""
    proc, calls = script_calls(fake, "base2new_train.sh", "dtd", "1", env={"EXTRA_OPTS": quoted, "EPOCHS": "2"})
    assert proc.returncode == 0, proc.stderr
    assert trailing_opts(calls[0]["argv"]) == {"OPTIM.MAX_EPOCH": "2", "TRAINER.GOPRO.CTX_INIT": "a photo of a",
                                               "INPUT.SIZE": "(32,32)", "TRAINER.GOPRO.PREC": "fp32"}
    for extra, message in (("TRAINER.GOPRO.CTX_INIT 'a photo", "unmatched quote"),
                           ("TRAINER.GOPRO.CTX_INIT a photo", "must be KEY VALUE pairs, got 3 words")):
        proc, after = script_calls(fake, "base2new_train.sh", "dtd", "1", env={"EXTRA_OPTS": extra})
        assert proc.returncode == 2 and message in proc.stderr and len(after) == 1  # train.py never ran
