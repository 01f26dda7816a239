"""The run machinery behind train.py, the scripts, the job engine and the report, layered so that
no two modules import each other (each imports only modules above it in this list):

    results   what a log says (final accuracies, end-of-run signals)
    methods   the method registry: ``METHODS``, ``Method`` (key, label, trainer, configs, group, sweeps)
    layout    where every run of a protocol writes (``Layout``, ``Run``)
    records   the files a run folder holds (run.json, config.yaml) and the one "last epoch" rule
    children  child processes that die with their parent
    cli       train.py's parser and config setup
    identity  the settings a run is made with; whether a folder is done / todo / stale
    steps     a protocol step's train.py runs with the caller's options (``runs_of``,
              ``command_runs``), and running them: ``python -m runs.steps`` (the method scripts)
    plans     the job lists of the reproduce commands (read by the report too)
    jobs      the job engine: ``python -m runs.jobs`` (scripts/reproduce/*.sh)
"""
