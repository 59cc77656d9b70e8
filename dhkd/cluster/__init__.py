"""Ray cluster support: the offline preflight behind `dhkd cluster check`.

Ray and jsonschema are imported inside the check functions, so importing this package is cheap.
"""

from dhkd.cluster.check import check_cluster, check_config, load_cluster_yaml
from dhkd.cluster.findings import CheckReport, Finding

__all__ = ["CheckReport", "Finding", "check_cluster", "check_config", "load_cluster_yaml"]
