"""The experiments: a spec in, a run directory out.

Runners never import `audit`; `audit` reaches them through `runners.registry`.
Importing this package (or `runners.specs`, `runners.rundir`, `runners.registry`)
does not import torch.
"""
