"""Entry points for `ray job submit --working-dir . -- python -m jobs.<name> ...`.

Not an installed package: jobs run from the repository (or the uploaded working directory) and are
thin scripts over `kale_ray.cli.run_job`, so a job and `kale-ray <stage>` take the same arguments.
"""
