"""The claims file: load `claims.yaml`, validate it, and expand it into one `Claim` per number.

The file is written to be proofread against the printed paper (docs/claims.md): a table
block states once what its columns mean and where it was transcribed from, and each row is
one flow sequence, as printed. Loading expands the blocks into `Claim` objects.

The YAML is read as a node tree (libyaml when available), not with `yaml.safe_load`,
because the tree keeps what a plain loader throws away and a proofreader needs:
- the text of every number as written ("16.10" stays "16.10"; a float loader gives 16.1);
- the line of every value, so each error names file:line;
- duplicate keys, which `safe_load` silently resolves to the last one.

Every problem raises `AuditError("file:line: what is wrong; how to fix it")`.
This module never imports torch.

The package, along the pipeline: `model` (Claim, ClaimSet, Tolerance, the names a claim
may use), `reader` (bounded YAML -> values with lines), `fields` (typed access and field
checks), `tables` and `relations` (the blocks), `validate` (`load_claims`). Every name is
imported here, so `from audit.claims import X` keeps working.
"""

from __future__ import annotations

from audit.claims.fields import (
    CLAIM_FIELDS,
    LINKS,
    OVERRIDE_FIELDS,
    REFERENCE_FIELDS,
    RELATION_FIELDS,
    REQUIRED_FIELDS,
    ROW_FIELDS,
    TABLE_FIELDS,
    TOP_FIELDS,
    Block,
    as_number,
    as_str,
    check_id,
    check_link,
    check_range,
    claim_type,
    experiment_value,
    final_tolerance,
    free_mapping,
    group_tolerances,
    list_of,
    merge_tolerances,
    parse_experiment,
    parse_metric,
    parse_tolerance,
    plain,
    require_fields,
    seq,
    table_decimals,
    tolerance_of,
)
from audit.claims.model import (
    CLAIM_TYPES,
    DIRECTIONS,
    ID_RE,
    KINDS,
    NAME_CHOICES,
    RELATION_OPS,
    SCHEMA_VERSION,
    Claim,
    ClaimSet,
    ReferenceSource,
    ReferenceValue,
    Term,
    Tolerance,
    experiment_key,
)
from audit.claims.reader import (
    Reader,
    Y,
)
from audit.claims.relations import (
    parse_relation,
)
from audit.claims.tables import (
    Table,
    parse_table,
)
from audit.claims.validate import (
    load_claims,
)
from runners.catalogue import ARCHS, DATASETS, METRICS, NORMS  # the names a claim may use

__all__ = [
    "ARCHS",
    "CLAIM_FIELDS",
    "CLAIM_TYPES",
    "DATASETS",
    "DIRECTIONS",
    "ID_RE",
    "KINDS",
    "LINKS",
    "METRICS",
    "NAME_CHOICES",
    "NORMS",
    "OVERRIDE_FIELDS",
    "REFERENCE_FIELDS",
    "RELATION_FIELDS",
    "RELATION_OPS",
    "REQUIRED_FIELDS",
    "ROW_FIELDS",
    "SCHEMA_VERSION",
    "TABLE_FIELDS",
    "TOP_FIELDS",
    "Block",
    "Claim",
    "ClaimSet",
    "Reader",
    "ReferenceSource",
    "ReferenceValue",
    "Table",
    "Term",
    "Tolerance",
    "Y",
    "as_number",
    "as_str",
    "check_id",
    "check_link",
    "check_range",
    "claim_type",
    "experiment_key",
    "experiment_value",
    "final_tolerance",
    "free_mapping",
    "group_tolerances",
    "list_of",
    "load_claims",
    "merge_tolerances",
    "parse_experiment",
    "parse_metric",
    "parse_relation",
    "parse_table",
    "parse_tolerance",
    "plain",
    "require_fields",
    "seq",
    "table_decimals",
    "tolerance_of",
]
