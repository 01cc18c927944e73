"""A grid and its scale-out: experiments, planning, claims, the work loop, local workers, Slurm and status."""
