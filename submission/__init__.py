"""Submission tooling behind ``submit.sh``: repository checks, the preflight and the push.

- :mod:`submission.gitops`: repository state, tagging and pushing (plain ``git`` calls).
- :mod:`submission.checks`: static preflight checks (files, aicrowd.json, model artifacts, import).
- :mod:`submission.smoke`: one generated song through the predictor under the round-2 budget.
- :mod:`submission.aicrowd_cli`: ``aicrowd submission create`` and its failure messages.
- :mod:`submission.cli`: the command (``python -m submission VERSION [--cli] [--check]``).
"""
