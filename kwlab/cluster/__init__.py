"""Running sweeps on clusters through their batch schedulers (Slurm)."""
