"""What a study is: the typed spec, its search space, its smoke-test variant, its units.

Modules: spec (a study file -> StudySpec), space (search-space parameters -> Optuna
suggestions), smoke (`--smoke-test`: the same study made tiny), units ((category, seed) units
and a trial's metrics over more of them).
"""
