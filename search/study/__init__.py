"""Running a study: prepare (check inputs), run (create or resume, optimize to the target),
workers, recovery of interrupted and dead trials, queries of existing studies, progress."""
