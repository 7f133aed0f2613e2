"""The cluster core: a running cluster as one object (`Cluster`: up, down, start, stop, weights), its etcd
access (etcd_access), its HA state read from outside (hastate), the events log writer (events), `plan
--diff` against what runs (plan_diff) and the checks before `up` (preflight).
May import services/, hosts/, plan/, model/; never ops/, observe/, proving/, dashboard/ or cli/."""
