"""The rule engine: rules in order, each layer keyed by its inputs and its parent, built on a miss.

Public: `rules` (rule_list), `plan` (make_plan: keys and what to rebuild), `build` (build,
parse_dags, run_tests, run_dag, plan_only, write_lock, BuildOptions), `gate` (check_dags: the
validation gate of a build), `stamp` (the no-op answer), `state` (the last build's per-layer
state, to explain rebuilds).
"""
