"""Entry points for `ray job submit --working-dir . -- python -m jobs.<name> --config ...`.

Each job is a few lines over a kale_ray library function, runs the same way locally
(`python -m jobs.<name>`), on a cluster, and as a function call in tests (`jobs.<name>.main([...])`).
"""
