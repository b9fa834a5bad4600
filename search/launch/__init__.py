"""Launching a study's workers on a cluster's scheduler: today Slurm (`tunelab launch slurm`).

- `options.py`: `SlurmOptions`, every option of a launch, declared once (help, bounds, flag).
- `script.py`: the sbatch script of a job array of workers, and the file only its user reads
  that carries the storage and tracking URLs to the tasks.
- `placement.py`: where the workers may run: the rule for jobs that can span nodes.
- `slurm.py`: the launch itself (create the study, submit, record the job on the study), and
  a study's jobs: their tasks' states beside the study's counts, their cancellation.
- `environment.py`: the batch job a process runs in, from its environment (MLflow tags, the
  trial's owner record); imported by the worker, so it imports nothing else.

The submodules are imported where they are used (nothing here).
"""
