"""Fleet operations at the hub: a new store PC enrolls itself with a one-time code (enroll.py, its tables in
enroll_schema.py), and each store's devices.yaml is kept versioned and sent to it as desired configuration
(desired.py, its tables in desired_schema.py); release bundles (releases.py) go out in staged rollouts
(rollout.py plans them, rollout_engine.py moves them on inside `edge-hub run`, rollout_status.py reads them; their
tables in rollout_schema.py)."""
