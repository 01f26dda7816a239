"""The run machinery behind train.py and the scripts, layered so that no two modules import each other:

    results   what a log says (final accuracies, end-of-run signals)
    methods   the method registry (Method: trainer, configs, protocol groups, sweeps)
    layout    where every run of a protocol writes (Layout, Run)
    records   the files a run folder holds (run.json, config.yaml) and the "last epoch" rule
    cli       train.py's parser and config setup
    identity  the settings a run is made with; whether a folder is done / todo / stale
    steps     the train.py runs of one protocol step, with the caller's options; runs them (scripts)
    jobs      the job engine of scripts/reproduce/*.sh (a scheduler; only it imports steps' runner)
"""
