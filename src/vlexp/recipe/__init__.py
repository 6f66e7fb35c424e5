"""The training recipe (`run`) and the services it uses: faults, resume, tracking, the run
dir, multi-process launch, sharding reports, redaction, sweeps, plots and the memory planner."""
