#!/usr/bin/env bash
# Regenerate the committed example report, reports/example/ (see reports/README.md).
#
# Inputs, all real:
#   - the seed reproduction study's 36 reproduced Table 1 values (COMP6248, Figure 3; one run
#     per cell), taken from the `comp6248` reference source of claims.yaml and written as a
#     results CSV (reports/example/inputs/seed-study.csv);
#   - with --quick STORE: the run directories of a real `audit run --profile quick --store
#     STORE` (Fashion-MNIST MLPs and the kernels experiment), reported next to them.
#
# Usage: bash scripts/make-example-report.sh [--quick STORE]
set -euo pipefail
cd "$(dirname "$0")/.."

store_args=()
if [[ "${1:-}" == "--quick" ]]; then
    store_args=(--store "$2" --profile quick)
fi

mkdir -p reports/example/inputs
.venv/bin/python - <<'PY'
"""Write the seed study's reproduced values (claims.yaml, reference `comp6248`) as a CSV.

Where the numbers come from goes into `reason`, not `deviations`: the seed study ran the
authors' code with their protocol, so its numbers are not proxies (a deviation would make
the report count every one of them as a proxy, neither reproduced nor refuted)."""
import csv
from pathlib import Path

from audit.claims import load_claims

claims = load_claims("claims.yaml")
by_id = claims.by_id()
source = next(s for s in claims.reference_sources if s.id == "comp6248")
path = Path("reports/example/inputs/seed-study.csv")
with path.open("w", newline="", encoding="utf-8") as handle:
    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow(["run_id", "dataset", "arch", "norm", "epochs", "seed", "test_top1", "reason"])
    for claim_id, value in source.values.items():
        exp = by_id[claim_id].experiment
        run_id = f"comp6248-{exp['arch']}-{exp['norm']}-{exp['dataset']}-e{exp['epochs']}"
        note = "imported: COMP6248 seed study, Figure 3 (authors' code on a V100, runs per cell not stated: taken as 1)"
        writer.writerow([run_id, exp["dataset"], exp["arch"], exp["norm"], exp["epochs"], 0, value.text, note])
print(f"wrote {path} ({len(source.values)} values)")
PY

.venv/bin/audit report \
    --claims claims.yaml \
    --results-csv reports/example/inputs/seed-study.csv \
    "${store_args[@]}" \
    --name example --out reports \
    --title "Example audit report: the COMP6248 seed study numbers judged against the claims"
