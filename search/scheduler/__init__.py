"""A trial's life, in one package: the scheduler, its policies, its record, its faults.

- `scheduler.py`: `TrialScheduler`, asked at every rung (continue, pause, stop) and between
  trials (run, wait, stop), after Ray Tune's TrialScheduler.
- `policies.py`: the rung policies: Optuna's pruners, successive halving that pauses, Pareto
  halving for several objectives, none.
- `lineage.py`: the one record of a trial's chain (retries, continuations, pauses, owners,
  reference trials); the only code that reads or writes those attributes.
- `recovery.py`: dead and interrupted trials, ended and retried exactly once.
- `worker.py`: the one loop every worker runs: take a trial, run it, store its end.
- `heartbeat.py`, `hosts.py`: a running trial's heartbeat; who owns a trial.

The submodules are imported where they are used (nothing here), so that reading a study's
lineage does not import the training loop.
"""
